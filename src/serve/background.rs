//! DORA's figures for the environment pages, computed off the store's thread: they walk a
//! branch's whole history (seconds on a long one), which would hold every other page back.
//! A thread of its own, with a store of its own, computes an environment's report when a page
//! asks for it; the page waits a moment for it ([`WAIT`]), then shows the last report it has
//! (marked as being updated) or says it is being computed, and its script reloads it once
//! nothing is being computed any more.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::dora::Report;
use crate::store::Store;

/// How long a page waits for a report before it is rendered without it.
pub const WAIT: Duration = Duration::from_millis(1500);

/// What a page can show of an environment's figures.
#[derive(Debug, Clone)]
pub enum Figures {
    /// The report at the refs the page shows (`current`), or an older one while the current
    /// one is computed.
    Ready { report: Box<Report>, current: bool },
    /// None yet: being computed.
    Computing,
    /// The computation failed, with why.
    Failed(String),
}

/// Why an environment's figures could not be computed: the error's message and details.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Failed(String);

impl From<crate::error::Error> for Failed {
    fn from(error: crate::error::Error) -> Failed {
        Failed(error.message_with_details())
    }
}

#[derive(Default)]
struct Board {
    /// By environment: the fingerprint of the refs it was computed at, and the outcome.
    done: HashMap<String, (String, Result<Box<Report>, Failed>)>,
    /// The environments being computed (or waiting for the thread).
    pending: HashSet<String>,
}

/// The reports, shared between the store's thread and the one that computes them.
#[derive(Clone)]
pub struct Reports {
    board: Arc<(Mutex<Board>, Condvar)>,
    ask: Sender<String>,
}

impl Reports {
    /// Starts the thread that computes reports with the store `open` gives (called on that
    /// thread); `fingerprint` says which refs a store sees.
    pub fn start(
        open: impl FnOnce() -> Result<Store, crate::error::Error> + Send + 'static,
        fingerprint: fn(&Store) -> Result<String, crate::store::StoreError>,
    ) -> Reports {
        let board = Arc::new((Mutex::new(Board::default()), Condvar::new()));
        let (ask, asked) = std::sync::mpsc::channel::<String>();
        let shared = board.clone();
        std::thread::Builder::new()
            .name("ferry-dora".to_owned())
            .spawn(move || {
                let store = open().map_err(Failed::from);
                for env in asked {
                    let (at, outcome) = match &store {
                        Ok(store) => {
                            store.refresh();
                            match fingerprint(store) {
                                Ok(at) => (at, compute(store, &env)),
                                Err(e) => (
                                    String::new(),
                                    Err(Failed::from(crate::error::Error::from(e))),
                                ),
                            }
                        }
                        Err(e) => (String::new(), Err(e.clone())),
                    };
                    let (lock, changed) = &*shared;
                    let mut board = lock.lock().expect("the reports' lock");
                    board.pending.remove(&env);
                    board.done.insert(env, (at, outcome));
                    changed.notify_all();
                }
            })
            .expect("a thread starts");
        Reports { board, ask }
    }

    /// The figures of `env` for a page at refs `fingerprint`: asks for them when they are
    /// not computed at those refs, and then waits up to `wait` for them.
    pub fn figures(&self, env: &str, fingerprint: &str, wait: Duration) -> Figures {
        let (lock, changed) = &*self.board;
        let mut board = lock.lock().expect("the reports' lock");
        let current = |board: &Board| board.done.get(env).is_some_and(|(at, _)| at == fingerprint);
        let mut wait = wait;
        if !current(&board) && !board.pending.contains(env) {
            board.pending.insert(env.to_owned());
            // The thread ends only with the process.
            let _ = self.ask.send(env.to_owned());
        } else {
            // Asked before: a page does not wait again for what is still being computed.
            wait = Duration::ZERO;
        }
        let deadline = Instant::now() + wait;
        while !current(&board) && board.pending.contains(env) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            board = changed
                .wait_timeout(board, left)
                .expect("the reports' lock")
                .0;
        }
        match board.done.get(env) {
            Some((at, Ok(report))) => Figures::Ready {
                report: report.clone(),
                current: at == fingerprint,
            },
            Some((at, Err(why))) if at == fingerprint || !board.pending.contains(env) => {
                Figures::Failed(why.to_string())
            }
            _ => Figures::Computing,
        }
    }

    /// How many environments' figures are being computed.
    pub fn computing(&self) -> usize {
        self.board
            .0
            .lock()
            .expect("the reports' lock")
            .pending
            .len()
    }
}

/// The report of `env` over its branch's whole history, to now.
fn compute(store: &Store, env: &str) -> Result<Box<Report>, Failed> {
    crate::view::dora::reports(store, Some(env), None, crate::identity::now())?
        .reports
        .pop()
        .map(Box::new)
        .ok_or_else(|| Failed(format!("no report of `{env}`")))
}
