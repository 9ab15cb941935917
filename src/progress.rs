//! Progress bars for long transfers (artifact downloads, registry pulls): drawn on stderr
//! only when it is a terminal, and never under `--quiet` or `--log-format json`, so logs and
//! pipes see nothing of them.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// No bar from now on (`--quiet`, `--log-format json`).
pub fn disable() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// One transfer's bar: a spinner with the bytes so far until its size is known.
pub struct Transfer(ProgressBar);

impl Transfer {
    /// A transfer named `what`; hidden when stderr is not a terminal.
    pub fn start(what: &str) -> Transfer {
        if !ENABLED.load(Ordering::Relaxed) || !std::io::stderr().is_terminal() {
            return Transfer(ProgressBar::hidden());
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(style("{msg} {spinner} {bytes} {bytes_per_sec}"));
        bar.set_message(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        Transfer(bar)
    }

    /// The transfer's size, once known: the spinner becomes a bar.
    pub fn total(&self, bytes: u64) {
        if self.0.is_hidden() {
            return;
        }
        let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        self.0.set_style(style(if colour {
            "{msg} {bar:30.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} {eta}"
        } else {
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}"
        }));
        self.0.set_length(bytes);
    }

    pub fn inc(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    /// Removes the bar: what the transfer brought is told by the command itself.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}
