//! The command line: global flags and one subcommand per capability.

use clap::{Args, Parser, Subcommand};

use crate::cmd;
use crate::output::Format;

/// Branch-per-environment GitOps promotion.
///
/// A deployment repository holds the desired state of every environment, one git branch per
/// environment (dev → staging → prod): `manifest.json` pins the version, URL and sha256 of
/// each application, and `environments/<name>.json` describes each environment.
#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Output format of the command's data on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// More logging on stderr (-v info, -vv debug, -vvv trace); `FERRY_LOG` takes a filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Quickstart(cmd::quickstart::QuickstartArgs),
    Validate(cmd::validate::ValidateArgs),
    Schema(cmd::schema::SchemaArgs),
    Init(cmd::init::InitArgs),
    Bump(cmd::bump::BumpArgs),
    Show(cmd::show::ShowArgs),
    Diff(cmd::diff::DiffArgs),
    History(cmd::history::HistoryArgs),
    Audit(cmd::audit::AuditArgs),
    Promote(cmd::promote::PromoteArgs),
    Protect(cmd::protect::ProtectArgs),
    Requests(cmd::requests::RequestsArgs),
    Approve(cmd::approve::ApproveArgs),
    Merge(cmd::merge::MergeArgs),
    Close(cmd::close::CloseArgs),
    Status(cmd::status::StatusArgs),
    Publish(cmd::publish::PublishArgs),
    Agent(cmd::agent::AgentArgs),
    Hook(cmd::hook::HookArgs),
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
