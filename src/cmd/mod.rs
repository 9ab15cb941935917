//! One module per subcommand: its arguments (whose doc comments are the help) and `run`.

pub mod agent;
pub mod approve;
pub mod audit;
pub mod bump;
pub mod cli;
pub mod close;
pub mod completions;
pub mod diff;
pub mod dora;
pub mod history;
pub mod hook;
pub mod init;
pub mod man;
pub mod merge;
pub mod migrate;
pub mod promote;
pub mod protect;
pub mod publish;
pub mod quickstart;
pub mod requests;
pub mod schema;
pub mod serve;
pub mod shared;
pub mod show;
pub mod status;
pub mod validate;

use crate::error::{Outcome, Result};
use crate::output::Output;
use cli::Command;

pub fn run(command: Command, out: Output) -> Result<Outcome> {
    match command {
        Command::Validate(args) => validate::run(args, out),
        Command::Schema(args) => schema::run(args, out),
        Command::Init(args) => init::run(args, out),
        Command::Bump(args) => bump::run(args, out),
        Command::Show(args) => show::run(args, out),
        Command::Publish(args) => publish::run(args, out),
        Command::Diff(args) => diff::run(args, out),
        Command::History(args) => history::run(args, out),
        Command::Promote(args) => promote::run(args, out),
        Command::Agent(args) => agent::run(args, out),
        Command::Audit(args) => audit::run(args, out),
        Command::Dora(args) => dora::run(args, out),
        Command::Hook(args) => hook::run(args, out),
        Command::Protect(args) => protect::run(args, out),
        Command::Requests(args) => requests::run(args, out),
        Command::Approve(args) => approve::run(args, out),
        Command::Merge(args) => merge::run(args, out),
        Command::Migrate(args) => migrate::run(args, out),
        Command::Close(args) => close::run(args, out),
        Command::Status(args) => status::run(args, out),
        Command::Serve(args) => serve::run(args, out),
        Command::Quickstart(args) => quickstart::run(args, out),
        Command::Completions(args) => completions::run(args, out),
        Command::Man(args) => man::run(args, out),
    }
}
