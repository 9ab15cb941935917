//! `ferry completions SHELL`: the shell completions clap generates from the command line
//! itself, so they never drift from `--help` (as `ferry man` does for the manual pages).

use clap::CommandFactory;

use crate::error::{Outcome, Result};
use crate::output::Output;

/// Print the completion script for a shell.
///
/// Load it in the current shell, or install it where the shell looks for completions.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  source <(ferry completions bash)                                  # this bash session
  ferry completions bash > ~/.local/share/bash-completion/completions/ferry
  ferry completions zsh > \"${fpath[1]}/_ferry\"
  ferry completions fish > ~/.config/fish/completions/ferry.fish")]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn run(args: CompletionsArgs, _out: Output) -> Result<Outcome> {
    let mut command = super::cli::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "ferry", &mut script);
    crate::output::write_raw(&script);
    Ok(Outcome::Success)
}
