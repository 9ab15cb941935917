//! The `ferry` binary: parse the command line, set up logging, run the command, and map the
//! outcome to an exit code (see [`ferry::error`]).

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use ferry::cmd::cli::{Cli, LogFormat};
use ferry::error::Outcome;
use ferry::output::Output;

/// mimalloc: validation builds large JSON trees on several threads at once, where glibc's
/// allocator spends a third of the time (see `bench/validate.sh`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // SAFETY: first thing in main, while the process has one thread.
    unsafe { ferry::store::tls::init() };
    let cli = Cli::parse();
    let level = match (cli.global.quiet, cli.global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("FERRY_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    // Colours only on a terminal, and never with NO_COLOR (https://no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let json_logs = cli.global.log_format == LogFormat::Json;
    if json_logs || cli.global.quiet {
        ferry::progress::disable();
    }
    if json_logs {
        // One object per line: what Loki, Elasticsearch and Cloud Logging ingest as is.
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(colour)
            .with_writer(std::io::stderr)
            .with_target(false)
            .without_time()
            .init();
    }

    let out = Output {
        format: cli.global.format,
        quiet: cli.global.quiet,
    };
    match ferry::cmd::run(cli.command, out) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failure) => ExitCode::from(1),
        Err(err) => {
            if json_logs {
                // A collector parses every line: the last one too.
                let hint = err.hints.join("\n");
                tracing::error!(
                    exit_code = err.exit_code(),
                    hint = hint.as_str(),
                    "{}",
                    err.message_with_details()
                );
            } else {
                eprintln!("{}", ferry::output::printable(&err.to_string()));
            }
            ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(1))
        }
    }
}
