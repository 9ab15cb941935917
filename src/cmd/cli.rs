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
    max_term_width = 100,
    after_help = "Examples:
  ferry quickstart                                  # the whole loop on this machine, narrated
  ferry validate                                    # the deployment repository around you
  ferry init --remote /srv/git/deploy.git           # a new one: dev → staging → prod
  ferry bump web 1.4.0 --env dev --artifact web-1.4.0.tgz
  ferry promote dev staging                         # open the promotion request
  ferry agent --env prod --root /                   # deploy prod's pins on this host

`ferry COMMAND --help` shows a command's options and examples.

Exit codes: 0 done; 1 refused (invalid input, a policy or protection refusal, drift, a failed
deploy); 2 bad command line; 3 a service (git remote, registry, API, artifact server) could not
be reached or did not answer: the same command may succeed later."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// The heading of the options every command takes, apart from each command's own (as cargo
/// and gh group theirs).
pub const GLOBAL: &str = "Global Options";

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Output format of the command's data on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text, help_heading = GLOBAL)]
    pub format: Format,

    /// More logging on stderr (-v info, -vv debug, -vvv trace); `FERRY_LOG` takes a filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = GLOBAL)]
    pub quiet: bool,

    /// How logs on stderr are written: for people, or one JSON object per line (timestamp,
    /// level, message and fields) for log collectors.
    #[arg(long, global = true, value_enum, env = "FERRY_LOG_FORMAT", default_value_t = LogFormat::Human, help_heading = GLOBAL)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Quickstart(cmd::quickstart::QuickstartArgs),
    Validate(cmd::validate::ValidateArgs),
    Schema(cmd::schema::SchemaArgs),
    Init(cmd::init::InitArgs),
    Migrate(cmd::migrate::MigrateArgs),
    Bump(cmd::bump::BumpArgs),
    Show(cmd::show::ShowArgs),
    Diff(cmd::diff::DiffArgs),
    History(cmd::history::HistoryArgs),
    Audit(cmd::audit::AuditArgs),
    Dora(cmd::dora::DoraArgs),
    Promote(cmd::promote::PromoteArgs),
    Protect(cmd::protect::ProtectArgs),
    Requests(cmd::requests::RequestsArgs),
    Approve(cmd::approve::ApproveArgs),
    Merge(cmd::merge::MergeArgs),
    Close(cmd::close::CloseArgs),
    Status(cmd::status::StatusArgs),
    Publish(cmd::publish::PublishArgs),
    Agent(cmd::agent::AgentArgs),
    Serve(cmd::serve::ServeArgs),
    Hook(cmd::hook::HookArgs),
    Completions(cmd::completions::CompletionsArgs),
    Man(cmd::man::ManArgs),
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }

    /// Every command's `--help` ends with at least two examples, and each example that runs
    /// ferry is a command line ferry accepts (so examples cannot rot as flags change).
    #[test]
    fn every_command_ends_its_help_with_examples_that_parse() {
        fn visit(command: &clap::Command, path: &str, problems: &mut Vec<String>) {
            let subcommands: Vec<&clap::Command> = command
                .get_subcommands()
                .filter(|s| s.get_name() != "help")
                .collect();
            {
                let help = command
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                let Some(examples) = help.split_once("Examples:\n").map(|(_, e)| e) else {
                    problems.push(format!("`ferry {path} --help` has no examples"));
                    return;
                };
                let mut ran = 0;
                for line in examples.lines() {
                    let Some(words) = example_words(line) else {
                        continue;
                    };
                    ran += 1;
                    if let Err(e) = super::Cli::try_parse_from(&words) {
                        problems.push(format!(
                            "`ferry {path}`: example `{}` does not parse: {}",
                            line.trim(),
                            e.kind()
                        ));
                    }
                }
                if ran < 2 && subcommands.is_empty() {
                    problems.push(format!("`ferry {path} --help` has {ran} example(s)"));
                }
            }
            for sub in subcommands {
                let name = if path.is_empty() {
                    sub.get_name().to_owned()
                } else {
                    format!("{path} {}", sub.get_name())
                };
                visit(sub, &name, problems);
            }
        }
        let mut problems = Vec::new();
        visit(&super::Cli::command(), "", &mut problems);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// Each help lists a command's own options apart from the ones every command takes.
    #[test]
    fn global_options_have_their_own_heading() {
        let mut command = super::Cli::command();
        command.build();
        let help = command
            .find_subcommand_mut("bump")
            .expect("bump")
            .render_long_help()
            .to_string();
        let (own, global) = help
            .split_once(&format!("{}:", super::GLOBAL))
            .expect("a global heading");
        assert!(own.contains("--env"), "{own}");
        assert!(!own.contains("--log-format"), "{own}");
        assert!(
            global.contains("--log-format") && global.contains("--quiet"),
            "{global}"
        );
        // The agent's usage line says what it needs.
        let usage = super::Cli::command()
            .find_subcommand_mut("agent")
            .expect("agent")
            .render_usage()
            .to_string();
        assert!(
            usage.contains("--env <ENV>") && usage.contains("--root <DIR>"),
            "{usage}"
        );
    }

    /// The words of the ferry command in an example line: without its comment, the
    /// `VAR=value` assignments before it, a `sudo`, or what is piped or redirected.
    fn example_words(line: &str) -> Option<Vec<String>> {
        let line = line.split("  #").next()?.trim();
        let line = line.strip_prefix("source <(").unwrap_or(line);
        let line = line.split([')', '|', '>', '<']).next()?.trim();
        let mut words = shell_words(line).into_iter().peekable();
        while words
            .peek()
            .is_some_and(|w| w == "sudo" || (w.contains('=') && !w.starts_with('-')))
        {
            words.next();
        }
        let words: Vec<String> = words.collect();
        (words.first().map(String::as_str) == Some("ferry")).then_some(words)
    }

    fn shell_words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut quote = None;
        let mut started = false;
        for c in line.chars() {
            match (quote, c) {
                (None, '"' | '\'') => {
                    quote = Some(c);
                    started = true;
                }
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => {
                    if started {
                        words.push(std::mem::take(&mut word));
                        started = false;
                    }
                }
                (_, c) => {
                    word.push(c);
                    started = true;
                }
            }
        }
        if started {
            words.push(word);
        }
        words
    }
}
