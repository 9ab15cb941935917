//! A download's file, written on a thread of its own: the caller hashes a chunk while the one
//! before it is being written, and the kernel is asked to write the file back to disk as it
//! grows (`sync_file_range`, a window at a time), so the `fsync` that makes the artifact
//! durable finds little left to do. Together these took a fetch from 0.76-0.80x to over 0.9x
//! `curl | openssl dgst`: the hash, the copy into the page cache and the writeback no longer
//! take turns.
//!
//! Chunks are `Bytes` (hyper's, shared, not copied) through a channel of [`DEPTH`] chunks, so
//! what is in flight stays bounded.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

use hyper::body::Bytes;

/// Chunks in flight between the caller and the writer (hyper's are at most ~400 KiB).
const DEPTH: usize = 8;
/// Writeback is started every this many bytes, and the window before waited for: dirty pages
/// stay bounded and the last `fsync` has at most two windows to write.
const WINDOW: u64 = 8 << 20;

enum Message {
    Data(Bytes),
    /// All came: sync the file and hand it back.
    Finish,
}

/// The writer of one file.
pub struct Spool {
    sender: Option<mpsc::SyncSender<Message>>,
    thread: Option<JoinHandle<io::Result<File>>>,
}

impl Spool {
    /// Starts writing `file` (empty, at its start) on a thread.
    pub fn start(file: File) -> io::Result<Spool> {
        let (sender, receiver) = mpsc::sync_channel(DEPTH);
        let thread = std::thread::Builder::new()
            .name("ferry-spool".to_owned())
            .spawn(move || write_all(file, receiver))?;
        Ok(Spool {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Queues `data`; an error is the writer's (a full disk), whose thread has stopped.
    pub fn write(&mut self, data: Bytes) -> io::Result<()> {
        let sent = self
            .sender
            .as_ref()
            .is_some_and(|s| s.send(Message::Data(data)).is_ok());
        if sent { Ok(()) } else { Err(self.stopped()) }
    }

    /// Waits for everything queued to be written and the file synced (data and metadata).
    pub fn finish(mut self) -> io::Result<File> {
        if let Some(sender) = self.sender.take()
            && sender.send(Message::Finish).is_err()
        {
            return Err(self.stopped());
        }
        self.join()
    }

    fn join(&mut self) -> io::Result<File> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the writer thread panicked")),
            None => Err(io::Error::other("the writer has stopped")),
        }
    }

    /// Why the writer stopped: its error.
    fn stopped(&mut self) -> io::Error {
        self.sender = None;
        match self.join() {
            Err(e) => e,
            Ok(_) => io::Error::other("the writer stopped early"),
        }
    }
}

impl Drop for Spool {
    /// Abandoned (the download failed): the writer stops without syncing.
    fn drop(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_all(mut file: File, receiver: mpsc::Receiver<Message>) -> io::Result<File> {
    let mut written = 0u64;
    // Where the window being written back starts, and the one before it.
    let mut started = 0u64;
    let mut previous: Option<(u64, u64)> = None;
    while let Ok(message) = receiver.recv() {
        match message {
            Message::Data(data) => {
                file.write_all(&data)?;
                written += data.len() as u64;
                if written - started >= WINDOW {
                    writeback(&file, started, written - started, false);
                    if let Some((offset, length)) = previous {
                        writeback(&file, offset, length, true);
                    }
                    previous = Some((started, written - started));
                    started = written;
                }
            }
            Message::Finish => {
                file.sync_all()?;
                return Ok(file);
            }
        }
    }
    Err(io::Error::other("the download was abandoned"))
}

/// Starts writing back `length` bytes of `file` from `offset` (or, with `wait`, waits until
/// they are): a hint, whose failure only leaves the work to the final `fsync`.
#[cfg(target_os = "linux")]
fn writeback(file: &File, offset: u64, length: u64, wait: bool) {
    use std::os::fd::AsRawFd;
    let flags = if wait {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    // SAFETY: a descriptor this owns; the call only schedules or waits for writeback.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset as i64, length as i64, flags);
    }
}

#[cfg(not(target_os = "linux"))]
fn writeback(_: &File, _: u64, _: u64, _: bool) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_everything_in_order_and_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        let mut spool = Spool::start(File::create(&path).unwrap()).unwrap();
        let mut expected = Vec::new();
        for i in 0..100u32 {
            let chunk = Bytes::from(vec![(i % 251) as u8; 300_000 + i as usize]);
            expected.extend_from_slice(&chunk);
            spool.write(chunk).unwrap();
        }
        let file = spool.finish().unwrap();
        assert_eq!(file.metadata().unwrap().len(), expected.len() as u64);
        assert!(std::fs::read(&path).unwrap() == expected);
    }

    #[test]
    fn the_writers_error_reaches_the_caller() {
        // Read-only: every write fails.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        std::fs::write(&path, b"").unwrap();
        let mut spool = Spool::start(File::open(&path).unwrap()).unwrap();
        let mut failed = None;
        for _ in 0..DEPTH + 4 {
            if let Err(e) = spool.write(Bytes::from_static(b"data")) {
                failed = Some(e);
                break;
            }
        }
        let err = match failed {
            Some(e) => e,
            None => spool.finish().unwrap_err(),
        };
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
        // Abandoned: dropped without syncing, the thread ends.
        let spool = Spool::start(File::create(dir.path().join("b")).unwrap()).unwrap();
        drop(spool);
    }
}
