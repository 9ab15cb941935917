//! SIGTERM and SIGINT as a flag: the agent finishes the step in flight, then exits. The
//! handler only stores to an atomic, which is all a signal handler may safely do.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Installs the handlers (once, at the agent's start).
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler is async-signal-safe (one atomic store) and lives for the program.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
}

/// Whether a stop was asked for.
pub fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Sleeps for `duration`, waking early when a stop is asked for (`false` then) or when `wake`
/// says so (a webhook trigger).
pub fn sleep(duration: std::time::Duration, wake: &dyn Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + duration;
    loop {
        if stopping() {
            return false;
        }
        let now = std::time::Instant::now();
        if now >= deadline || wake() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50).min(deadline - now));
    }
}
