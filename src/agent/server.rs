//! A small HTTP/1.1 server on hyper that a hostile client cannot take down: the agent's
//! endpoint (`--listen`) and the quickstart's stand-in web server run on it.
//!
//! What it guards against, and how:
//! - a huge request head: hyper refuses one over [`Limits::header_bytes`] with 431, and its
//!   read buffer never grows past that;
//! - a slow client (slow-loris): the head must arrive within [`Limits::header_timeout`], and
//!   the whole exchange within [`Limits::request_timeout`];
//! - many connections: at most [`Limits::max_connections`] are served at once. When all are
//!   taken, the one that has waited longest for its request's head is closed to make room (a
//!   client that has sent a whole request is never cut off for another); when every one is
//!   inside a request, the next waits in the kernel's queue until one ends;
//! - running out of descriptors (`EMFILE`): a failed accept leaves the connection queued, so
//!   the connection waiting longest for its head is closed to give its descriptor back, or
//!   when there is none the loop pauses (10 ms, doubling to 1 s) instead of failing again at
//!   once.
//!
//! A body is never read here: a handler streams what it needs (see
//! [`crate::agent::http`]), so nothing is allocated by a declared `Content-Length`. One
//! request per connection (`Connection: close`), as health probes and webhooks make them.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// A whole response.
pub type Reply = Response<Full<Bytes>>;

/// What one server lets a client do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// The request line and headers, together.
    pub header_bytes: usize,
    /// From the connection (or the previous request) to the end of the request's head.
    pub header_timeout: Duration,
    /// From the connection to the end of its response.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            header_bytes: 64 << 10,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A response with `status`, `body` and the content type `kind`.
pub fn reply(status: StatusCode, body: impl Into<Bytes>, kind: &'static str) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(kind),
    );
    response
}

/// Answers each request `listener` accepts with `handler`, on the process's one runtime
/// ([`crate::net::runtime`]), until the process ends.
pub fn serve_on<H, F>(listener: TcpListener, limits: Limits, handler: H) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    listener.set_nonblocking(true)?;
    let runtime = crate::net::runtime();
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    runtime.spawn(accept(listener, limits, Arc::new(handler)));
    Ok(())
}

async fn accept<H, F>(listener: tokio::net::TcpListener, limits: Limits, handler: Arc<H>)
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let slots = Arc::new(Slots::new(limits.max_connections));
    let mut pause = Duration::ZERO;
    let mut warned: Option<std::time::Instant> = None;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                pause = Duration::ZERO;
                stream
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOMEM: the connection stays queued and the next accept
                // would fail at once. Out of descriptors, the connection waiting longest for
                // its head gives its own back; else a pause lets descriptors close.
                if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!("the endpoint cannot accept a connection: {e}");
                    warned = Some(std::time::Instant::now());
                }
                let descriptors = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                if descriptors && slots.evict_oldest() {
                    // The closed connection's task runs, and its descriptor is free.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                pause = (pause * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let permit = slots.admit().await;
        let (id, cancel) = slots.waiting();
        let handler = handler.clone();
        let slots = slots.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|request| {
                // The head has arrived: this connection is no longer one to close for room.
                slots.started(id);
                let answer = handler(request);
                async move { Ok::<_, std::convert::Infallible>(answer.await) }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.header_bytes.max(8 << 10))
                .max_header_size(limits.header_bytes)
                .keep_alive(false);
            let connection = http.serve_connection(TokioIo::new(stream), service);
            let connection = std::pin::pin!(connection);
            let cancelled = std::pin::pin!(cancel.notified());
            let served = futures_util::future::select(connection, cancelled);
            // A deadline passed, or the connection made room for another: dropping it closes.
            let _ = tokio::time::timeout(limits.request_timeout, served).await;
            slots.started(id);
            drop(permit);
        });
    }
}

/// The connections being served, and those among them still waiting for a request's head.
struct Slots {
    free: Arc<Semaphore>,
    waiting: Mutex<BTreeMap<u64, Arc<Notify>>>,
    next: AtomicU64,
}

impl Slots {
    fn new(max: usize) -> Slots {
        Slots {
            free: Arc::new(Semaphore::new(max.max(1))),
            waiting: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
        }
    }

    /// A place for a connection just accepted: a free one, else the one the oldest connection
    /// still waiting for its head leaves, else the first to end.
    async fn admit(&self) -> OwnedSemaphorePermit {
        if let Ok(permit) = self.free.clone().try_acquire_owned() {
            return permit;
        }
        self.evict_oldest();
        self.free
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Closes the connection that has waited longest for its request's head, if any.
    fn evict_oldest(&self) -> bool {
        let oldest = self.waiting.lock().expect("slots lock").pop_first();
        match oldest {
            Some((_, cancel)) => {
                cancel.notify_one();
                true
            }
            None => false,
        }
    }

    /// Records a connection waiting for its head: its number, and what closes it.
    fn waiting(&self) -> (u64, Arc<Notify>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let cancel = Arc::new(Notify::new());
        self.waiting
            .lock()
            .expect("slots lock")
            .insert(id, cancel.clone());
        (id, cancel)
    }

    /// Connection `id` has its request's head (or has ended).
    fn started(&self, id: u64) {
        self.waiting.lock().expect("slots lock").remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    use super::*;

    /// A server with `limits` answering every request `ok`.
    fn server(limits: Limits) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        serve_on(listener, limits, |_| {
            std::future::ready(reply(StatusCode::OK, "ok\n", "text/plain"))
        })
        .unwrap();
        port
    }

    fn small() -> Limits {
        Limits {
            max_connections: 2,
            header_bytes: 16 << 10,
            header_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// Sends `bytes` and reads until the server closes: what it answered, and when.
    fn exchange(port: u16, bytes: &[u8]) -> (String, Duration) {
        let started = Instant::now();
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = stream.write_all(bytes);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        (
            String::from_utf8_lossy(&answer).into_owned(),
            started.elapsed(),
        )
    }

    #[test]
    fn a_request_is_answered_and_the_connection_closed() {
        let port = server(small());
        let (answer, _) = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
    }

    #[test]
    fn a_head_that_is_too_slow_or_too_large_is_refused() {
        let port = server(small());
        // Half a head, then nothing: closed at the header deadline, unanswered.
        let (answer, took) = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n");
        assert_eq!(answer, "");
        assert!(took < Duration::from_secs(3), "{took:?}");
        let mut large = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        large.resize(32 << 10, b'a');
        let (answer, _) = exchange(port, &large);
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    }

    #[test]
    fn a_body_that_is_too_slow_is_cut_off_at_the_request_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let limits = Limits {
            request_timeout: Duration::from_millis(300),
            ..small()
        };
        serve_on(listener, limits, |request| async move {
            use http_body_util::BodyExt;
            let body = request.into_body().collect().await;
            reply(StatusCode::OK, format!("{}", body.is_ok()), "text/plain")
        })
        .unwrap();
        let (answer, took) = exchange(
            port,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n1",
        );
        assert_eq!(answer, "");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn past_the_cap_the_connection_waiting_longest_for_its_head_makes_room() {
        let port = server(Limits {
            header_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            ..small()
        });
        let mut slow: Vec<TcpStream> = (0..2)
            .map(|_| {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream.write_all(b"GET / HTTP/1.1\r\n").unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                stream
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let (answer, took) = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        // The first slow connection was closed for it, unanswered; the second still waits.
        let mut rest = Vec::new();
        assert_eq!(slow[0].read_to_end(&mut rest).unwrap(), 0);
        slow[1]
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let waiting = slow[1].read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(waiting.kind(), std::io::ErrorKind::WouldBlock, "{waiting}");
    }
}
