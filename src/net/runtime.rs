//! The process's one tokio runtime, built on first use and kept until the process ends.
//!
//! Two worker threads run what the clients spawn (hyper's connection tasks, reqwest's, a
//! server's): a download's socket is read on a worker while the caller hashes and writes what
//! came, and a pooled connection stays driven between calls. Blocking code enters it through
//! [`block_on`], from any thread that is not one of its workers (the agent's loop, a command,
//! a test's threads, all at once if need be).

use std::future::Future;
use std::sync::OnceLock;

/// Worker threads: one reads the sockets while the caller's thread works on what came; more
/// would only cost memory (the agent's resident size is bounded).
const WORKERS: usize = 2;
/// Threads for blocking work (DNS lookups), kept for a while when idle.
const BLOCKING: usize = 8;

/// The runtime, built the first time it is needed.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .max_blocking_threads(BLOCKING)
            .thread_name("ferry-net")
            .enable_all()
            .build()
            .expect("tokio's runtime starts (threads and an epoll instance)")
    })
}

/// Runs `future` to completion on the shared runtime, blocking this thread meanwhile.
///
/// # Panics
///
/// Called from inside a tokio runtime (a task, or a worker of this one): blocking there would
/// stall every task it drives. Async code awaits the future instead.
pub fn block_on<F: Future>(future: F) -> F::Output {
    assert!(
        tokio::runtime::Handle::try_current().is_err(),
        "net::block_on called from async code: await the future instead"
    );
    runtime().block_on(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_runtime_serves_many_threads_at_once() {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    block_on(async move {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        i * 2
                    })
                })
            })
            .collect();
        let sum: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, 12);
        assert!(std::ptr::eq(runtime(), runtime()), "built once");
    }

    #[test]
    fn blocking_inside_async_code_is_refused() {
        let nested = std::thread::spawn(|| block_on(async { block_on(async { 1 }) })).join();
        assert!(
            nested.is_err(),
            "a nested block_on panics instead of stalling"
        );
    }
}
