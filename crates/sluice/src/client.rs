//! The admin client subcommands (`sluice keys create`, `sluice cluster
//! status`, ...): each one is a call to a node's admin API over HTTP.
//!
//! The nodes are named by `--admin-url` / `SLUICE_ADMIN_URL` (one URL, or
//! several: the flag repeated or a comma-separated list) and the client is
//! authenticated with `--admin-token` / `SLUICE_ADMIN_TOKEN` (prefer the
//! environment: argv is visible to every user of the machine). With several
//! URLs a call rides out a node's death or an election: it is sent again to
//! the next URL on a connection failure, 503 or 504, for up to 10 s, and
//! every write carries an `Idempotency-Key` so it is applied at most once.
//! Output is aligned columns for people; `--json` prints the API's JSON
//! unchanged for scripts, and errors as JSON on stderr. An error the API
//! answered with is returned as an [`ApiFailure`] carrying the server's
//! message, the field at fault and, where the fix is known, a hint
//! (where the admin token lives, which port the admin API is on).
//!
//! Secrets never travel through argv: a provider credential is read from the
//! environment variable named by `--api-key-env`.
//!
//! # Layout
//! * `cluster`, `providers`, `routes`, `keys`, `tokens`, `usage`: one file per
//!   resource: its subcommands, their calls and their human output.
//! * `snapshot`: configuration backups (`sluice cluster snapshot …`).
//! * `rotate_ca`: `sluice cluster rotate-ca`, offline on the `sluice init`
//!   directory (the work is `init::rotate`'s).
//! * `doctor`: `sluice cluster doctor`, the cluster's health checks.
//! * `http`: the HTTP client and [`ApiFailure`].
//! * `error`: errors as printed (text, or JSON with `--json`), and
//!   [`UsageError`] for a command line that cannot work (exit 2).
//! * `examples`: the EXAMPLES section of each command group's help.
//! * `output`: tables, field lists and times for people.
//! * `parse`: the compact flag forms (`provider:model[:weight]`, `K=V`, `30d`).
//! * `resolve`: a key named by its id or its unique name.

mod audit;
mod cluster;
mod doctor;
mod error;
mod examples;
mod http;
mod keys;
mod output;
mod parse;
mod providers;
mod resolve;
mod rotate_ca;
mod routes;
mod snapshot;
mod tokens;
mod usage;

pub use audit::AuditArgs;
pub use cluster::ClusterCommand;
pub use error::{clap_error_json, print_error, UsageError, EXIT_USAGE};
pub use http::ApiFailure;
pub use keys::KeysCommand;
pub use providers::{KindArg, ProvidersCommand};
pub use routes::RoutesCommand;
pub use snapshot::SnapshotCommand;
pub use tokens::TokensCommand;
pub use usage::{ByArg, UsageArgs};

use http::AdminClient;
use output::Output;

/// Flags every client subcommand takes: which nodes to call, with which
/// token, and how to print. They sit on the command groups that call the
/// admin API (`sluice keys …`, never `sluice serve`), and may come before
/// or after the subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Admin API options")]
pub struct ClientGlobal {
    /// Base URL of a node's admin API, e.g. `http://10.0.0.1:7001` (the
    /// admin port `sluice init` gives node 1). Give several (repeat the
    /// flag, or separate them with commas) to ride out a node's death: a
    /// call that finds no node or no leader is sent again to the next one,
    /// for up to 10 s, and a write is applied at most once.
    #[arg(
        long = "admin-url",
        env = "SLUICE_ADMIN_URL",
        global = true,
        value_name = "URL",
        value_delimiter = ','
    )]
    pub admin_urls: Vec<String>,
    /// Admin token (prefer the environment variable: argv is visible to
    /// others). `sluice dev` keeps one in `.sluice-dev/admin-token`;
    /// `sluice init` writes one to `admin-token` in its `--out` directory.
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN",
        hide_env_values = true,
        global = true,
        value_name = "TOKEN"
    )]
    pub admin_token: Option<String>,
    /// The cluster's CA certificate (PEM), trusted for the admin API's
    /// HTTPS: `ca.pem` in `sluice init`'s `--out` directory,
    /// `.sluice-dev/ca.pem` for `sluice dev`.
    #[arg(long, env = "SLUICE_CACERT", global = true, value_name = "FILE")]
    pub cacert: Option<std::path::PathBuf>,
    /// Print the API's JSON instead of a table, and errors as JSON on
    /// stderr (`{"error": {"type", "message", …}}`, non-zero exit).
    #[arg(long, global = true)]
    pub json: bool,
}

/// The admin client subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClientCommand {
    /// Cluster status, membership and leadership.
    #[command(after_help = examples::CLUSTER)]
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
        #[command(flatten)]
        global: ClientGlobal,
    },
    /// Upstream model providers.
    #[command(after_help = examples::PROVIDERS)]
    Providers {
        #[command(subcommand)]
        command: ProvidersCommand,
        #[command(flatten)]
        global: ClientGlobal,
    },
    /// Public model names and where their traffic goes.
    #[command(after_help = examples::ROUTES)]
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
        #[command(flatten)]
        global: ClientGlobal,
    },
    /// Virtual API keys for applications.
    #[command(after_help = examples::KEYS)]
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        #[command(flatten)]
        global: ClientGlobal,
    },
    /// Admin tokens.
    #[command(after_help = examples::TOKENS)]
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
        #[command(flatten)]
        global: ClientGlobal,
    },
    /// Usage and cost over a time range, by key, route or provider.
    #[command(after_help = examples::USAGE)]
    Usage(UsageArgs),
    /// Who changed what, when: every admin write, with the object before
    /// and after (no secrets).
    #[command(after_help = examples::AUDIT)]
    Audit(AuditArgs),
}

impl ClientCommand {
    /// The client flags given with the command.
    pub fn global(&self) -> &ClientGlobal {
        match self {
            ClientCommand::Cluster { global, .. }
            | ClientCommand::Providers { global, .. }
            | ClientCommand::Routes { global, .. }
            | ClientCommand::Keys { global, .. }
            | ClientCommand::Tokens { global, .. } => global,
            ClientCommand::Usage(args) => &args.global,
            ClientCommand::Audit(args) => &args.global,
        }
    }
}

/// Runs one client subcommand against the admin API.
pub async fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    let global = cmd.global().clone();
    let out = Output { json: global.json };
    // Re-sealing a backup is offline: no node is asked.
    if let ClientCommand::Cluster {
        command:
            ClusterCommand::Snapshot {
                command: command @ SnapshotCommand::Reseal { .. },
            },
        ..
    } = cmd
    {
        return snapshot::reseal(out, command);
    }
    // So is rotating the CA: it works on the `sluice init` directory.
    if let ClientCommand::Cluster {
        command: ClusterCommand::RotateCa { stage },
        ..
    } = cmd
    {
        return rotate_ca::run(out, stage);
    }
    if global.admin_urls.iter().all(|u| u.trim().is_empty()) {
        return Err(UsageError::new(
            "no admin URL: set SLUICE_ADMIN_URL or pass --admin-url (`sluice dev` prints an \
             `export SLUICE_ADMIN_URL=…` line; with `sluice init`'s ports node 1's is \
             http://HOST:7001)",
        )
        .into());
    }
    // The URLs first: a mistyped one is the first thing to fix.
    http::parse_bases(&global.admin_urls)?;
    let token = global
        .admin_token
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            UsageError::new(format!(
                "no admin token: set SLUICE_ADMIN_TOKEN or pass --admin-token ({})",
                http::TOKEN_WHERE
            ))
        })?;
    let client = AdminClient::new(&global.admin_urls, token.clone(), global.cacert.as_deref())?;
    match cmd {
        ClientCommand::Cluster { command, .. } => cluster::run(&client, out, command).await,
        ClientCommand::Providers { command, .. } => providers::run(&client, out, command).await,
        ClientCommand::Routes { command, .. } => routes::run(&client, out, command).await,
        ClientCommand::Keys { command, .. } => keys::run(&client, out, command).await,
        ClientCommand::Tokens { command, .. } => tokens::run(&client, out, command).await,
        ClientCommand::Usage(args) => usage::run(&client, out, args).await,
        ClientCommand::Audit(args) => audit::run(&client, out, args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ClientCommand,
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse_into_requests() {
        let cli = Cli::try_parse_from([
            "sluice",
            "routes",
            "create",
            "--name",
            "gpt-4o",
            "--deployment",
            "openai:gpt-4o:3",
            "--deployment",
            "azure:gpt-4o",
            "--prompt-usd-per-mtok",
            "2.5",
            "--json",
            "--admin-url",
            "http://127.0.0.1:7001",
        ])
        .unwrap();
        assert!(cli.command.global().json);
        assert_eq!(cli.command.global().admin_urls, ["http://127.0.0.1:7001"]);
        match cli.command {
            ClientCommand::Routes {
                command:
                    RoutesCommand::Create {
                        deployments,
                        prompt_usd_per_mtok,
                        ..
                    },
                ..
            } => {
                assert_eq!(deployments.len(), 2);
                assert_eq!(deployments[0].weight, 3);
                assert_eq!(prompt_usd_per_mtok, 2.5);
            }
            other => panic!("parsed as {other:?}"),
        }
        // Several nodes: the flag repeated, or a comma-separated list.
        let cli = Cli::try_parse_from([
            "sluice",
            "cluster",
            "status",
            "--admin-url",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            "--admin-url",
            "http://127.0.0.1:3",
        ])
        .unwrap();
        assert_eq!(
            cli.command.global().admin_urls,
            [
                "http://127.0.0.1:1",
                "http://127.0.0.1:2",
                "http://127.0.0.1:3"
            ]
        );
        let cli = Cli::try_parse_from([
            "sluice",
            "keys",
            "create",
            "--name",
            "ci",
            "--expires-in",
            "30d",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            ClientCommand::Keys {
                command: KeysCommand::Create {
                    expires_in: Some(2_592_000),
                    ..
                },
                ..
            }
        ));
        let cli = Cli::try_parse_from([
            "sluice", "usage", "--by", "route", "--since", "1h", "--key", "key_1", "--csv",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            ClientCommand::Usage(UsageArgs {
                by: ByArg::Route,
                csv: true,
                ..
            })
        ));
        assert!(Cli::try_parse_from(["sluice", "usage", "--csv", "--json"]).is_err());
        assert!(Cli::try_parse_from(["sluice", "usage", "--by", "model"]).is_err());
        assert!(Cli::try_parse_from(["sluice", "routes", "create", "--name", "x"]).is_err());
        assert!(Cli::try_parse_from([
            "sluice",
            "providers",
            "create",
            "--name",
            "x",
            "--kind",
            "azure",
            "--base-url",
            "http://x"
        ])
        .is_err());
    }
}
