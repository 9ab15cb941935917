//! One module per subcommand: its arguments (whose doc comments are the help) and `run`.

pub mod schema;
pub mod validate;

use crate::cli::Command;
use crate::error::{Outcome, Result};
use crate::output::Output;

pub fn run(command: Command, out: Output) -> Result<Outcome> {
    match command {
        Command::Validate(args) => validate::run(args, out),
        Command::Schema(args) => schema::run(args, out),
    }
}
