//! The admin client subcommands (`sluice keys create`, `sluice cluster
//! status`, ...): each one is a call to a node's admin API over HTTP.
//!
//! The node is named by `--admin-url` / `SLUICE_ADMIN_URL` and authenticated
//! with `--admin-token` / `SLUICE_ADMIN_TOKEN` (prefer the environment: argv is
//! visible to every user of the machine). Output is aligned columns for
//! people; `--json` prints the API's JSON unchanged for scripts. An error the
//! API answered with is returned as an [`ApiFailure`] carrying the server's
//! message and the field at fault.
//!
//! Secrets never travel through argv: a provider credential is read from the
//! environment variable named by `--api-key-env`.
//!
//! # Layout
//! * `cluster`, `providers`, `routes`, `keys`, `tokens`, `usage`: one file per
//!   resource: its subcommands, their calls and their human output.
//! * `snapshot`: configuration backups (`sluice cluster snapshot …`).
//! * `doctor`: `sluice cluster doctor`, the cluster's health checks.
//! * `http`: the HTTP client and [`ApiFailure`].
//! * `output`: tables, field lists and times for people.
//! * `parse`: the compact flag forms (`provider:model[:weight]`, `K=V`, `30d`).

mod cluster;
mod doctor;
mod http;
mod keys;
mod output;
mod parse;
mod providers;
mod routes;
mod snapshot;
mod tokens;
mod usage;

pub use cluster::ClusterCommand;
pub use http::ApiFailure;
pub use keys::KeysCommand;
pub use providers::{KindArg, ProvidersCommand};
pub use routes::RoutesCommand;
pub use snapshot::SnapshotCommand;
pub use tokens::TokensCommand;
pub use usage::{ByArg, UsageArgs};

use anyhow::Context;
use http::AdminClient;
use output::Output;

/// Flags every client subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientGlobal {
    /// Base URL of any node's admin API, e.g. `http://10.0.0.1:9090`.
    #[arg(long, env = "SLUICE_ADMIN_URL", global = true, value_name = "URL")]
    pub admin_url: Option<String>,
    /// Admin token (prefer the environment variable: argv is visible to others).
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN",
        hide_env_values = true,
        global = true,
        value_name = "TOKEN"
    )]
    pub admin_token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The admin client subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClientCommand {
    /// Cluster status, membership and leadership.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Upstream model providers.
    Providers {
        #[command(subcommand)]
        command: ProvidersCommand,
    },
    /// Public model names and where their traffic goes.
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
    /// Virtual API keys for applications.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Admin tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Usage and cost over a time range, by key, route or provider.
    Usage(UsageArgs),
}
/// Runs one client subcommand against the admin API.
pub async fn run(cmd: ClientCommand, global: ClientGlobal) -> anyhow::Result<()> {
    let out = Output { json: global.json };
    // Re-sealing a backup is offline: no node is asked.
    if let ClientCommand::Cluster {
        command:
            ClusterCommand::Snapshot {
                command: command @ SnapshotCommand::Reseal { .. },
            },
    } = cmd
    {
        return snapshot::reseal(out, command);
    }
    let admin_url = global
        .admin_url
        .as_deref()
        .filter(|u| !u.is_empty())
        .context("no admin URL: set SLUICE_ADMIN_URL or pass --admin-url")?;
    let token = global
        .admin_token
        .clone()
        .filter(|t| !t.is_empty())
        .context("no admin token: set SLUICE_ADMIN_TOKEN or pass --admin-token")?;
    let client = AdminClient::new(admin_url, token.clone())?;
    match cmd {
        ClientCommand::Cluster { command } => cluster::run(&client, &token, out, command).await,
        ClientCommand::Providers { command } => providers::run(&client, out, command).await,
        ClientCommand::Routes { command } => routes::run(&client, out, command).await,
        ClientCommand::Keys { command } => keys::run(&client, out, command).await,
        ClientCommand::Tokens { command } => tokens::run(&client, out, command).await,
        ClientCommand::Usage(args) => usage::run(&client, out, args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        global: ClientGlobal,
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
            "http://127.0.0.1:9090",
        ])
        .unwrap();
        assert!(cli.global.json);
        assert_eq!(
            cli.global.admin_url.as_deref(),
            Some("http://127.0.0.1:9090")
        );
        match cli.command {
            ClientCommand::Routes {
                command:
                    RoutesCommand::Create {
                        deployments,
                        prompt_usd_per_mtok,
                        ..
                    },
            } => {
                assert_eq!(deployments.len(), 2);
                assert_eq!(deployments[0].weight, 3);
                assert_eq!(prompt_usd_per_mtok, 2.5);
            }
            other => panic!("parsed as {other:?}"),
        }
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
                }
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
