//! `ferry man`: the manual pages clap generates from the command line itself, so they never
//! drift from `--help`.

use std::path::PathBuf;

use clap::CommandFactory;

use crate::error::{Error, Outcome, Result};
use crate::output::Output;

/// Print ferry's manual page (roff), or write one page per command into a directory.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry man | man -l -                                   # read it now
  ferry man --out-dir ~/.local/share/man/man1            # ferry.1, ferry-bump.1, …
  sudo ferry man --out-dir /usr/local/share/man/man1")]
pub struct ManArgs {
    /// Write `ferry.1` and a `ferry-COMMAND.1` per command (and `ferry-COMMAND-SUB.1`) here.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

pub fn run(args: ManArgs, out: Output) -> Result<Outcome> {
    let mut command = super::cli::Cli::command();
    command.build();
    let Some(dir) = args.out_dir else {
        let mut page = Vec::new();
        render(&command, &mut page)?;
        crate::output::write_raw(&page);
        return Ok(Outcome::Success);
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::failure(format!("cannot create `{}`: {e}", dir.display())))?;
    let mut pages = Vec::new();
    collect(&command, "ferry", &mut pages);
    for (name, page_command) in &pages {
        let mut page = Vec::new();
        render(page_command, &mut page)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page)
            .map_err(|e| Error::failure(format!("cannot write `{}`: {e}", path.display())))?;
    }
    out.data(format!("wrote {} pages to {}", pages.len(), dir.display()));
    Ok(Outcome::Success)
}

/// `command` and every subcommand below it, each named as its page (`ferry-protect-check`).
fn collect(command: &clap::Command, name: &str, pages: &mut Vec<(String, clap::Command)>) {
    pages.push((name.to_owned(), command.clone().name(name.to_owned())));
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        collect(sub, &format!("{name}-{}", sub.get_name()), pages);
    }
}

fn render(command: &clap::Command, page: &mut Vec<u8>) -> Result<()> {
    clap_mangen::Man::new(command.clone())
        .render(page)
        .map_err(|e| Error::failure(format!("cannot render the manual page: {e}")))
}
