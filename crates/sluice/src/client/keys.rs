//! `sluice keys …`: the secret is printed once, at creation.

use super::http::{v1_path as path, AdminClient};
use super::output::Output;
use super::output::{format_ms, format_opt_ms, join_or_dash, print_fields, Table};
use super::parse;
use sluice_admin::keys::{CreateKey, CreatedKey, KeyList, KeyStatus, KeyView};
use std::collections::BTreeMap;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown only this once).
    Create {
        #[arg(long)]
        name: String,
        /// A route the key may use (repeatable; none means every route).
        #[arg(long = "route", value_name = "ROUTE")]
        routes: Vec<String>,
        /// Lifetime, e.g. `30d`, `12h`, `90m`.
        #[arg(long, value_name = "DURATION", value_parser = parse::duration_secs)]
        expires_in: Option<u64>,
        /// A label, `KEY=VALUE` (repeatable).
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse::key_value)]
        metadata: Vec<(String, String)>,
    },
    /// List keys (never their secrets).
    List,
    /// Show one key.
    Get { id: String },
    /// Revoke a key for good.
    Revoke { id: String },
    /// Disable a key (reversible).
    Disable { id: String },
    /// Enable a disabled key.
    Enable { id: String },
    /// Delete a key.
    Delete { id: String },
}
pub(super) async fn run(
    client: &AdminClient,
    out: Output,
    command: KeysCommand,
) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            name,
            routes,
            expires_in,
            metadata,
        } => {
            let body = CreateKey {
                name,
                allowed_routes: routes,
                expires_at_ms: None,
                expires_in_s: expires_in,
                metadata: metadata.into_iter().collect::<BTreeMap<_, _>>(),
            };
            let value = client.post(&path(&["keys"]), &body).await?;
            out.show(value, |created: CreatedKey| {
                print_key(created.view);
                println!();
                println!("key: {}", created.key);
                println!("(shown only this once: store it now)");
            })
        }
        KeysCommand::List => {
            let value = client.get(&path(&["keys"])).await?;
            out.show(value, |list: KeyList| {
                let mut table = Table::new(&[
                    "ID", "NAME", "PREFIX", "STATUS", "ROUTES", "EXPIRES", "CREATED",
                ]);
                for k in list.keys {
                    table.row(vec![
                        k.id,
                        k.name,
                        k.prefix,
                        status_name(k.status).to_string(),
                        routes_cell(&k.allowed_routes),
                        format_opt_ms(k.expires_at_ms),
                        format_ms(k.created_at_ms),
                    ]);
                }
                table.print();
            })
        }
        KeysCommand::Get { id } => {
            let value = client.get(&path(&["keys", &id])).await?;
            out.show(value, print_key)
        }
        KeysCommand::Revoke { id } => {
            let value = client.post_empty(&path(&["keys", &id, "revoke"])).await?;
            out.show(value, print_key)
        }
        KeysCommand::Disable { id } => {
            let value = client.post_empty(&path(&["keys", &id, "disable"])).await?;
            out.show(value, print_key)
        }
        KeysCommand::Enable { id } => {
            let value = client.post_empty(&path(&["keys", &id, "enable"])).await?;
            out.show(value, print_key)
        }
        KeysCommand::Delete { id } => {
            client.delete(&path(&["keys", &id])).await?;
            out.done(format!("deleted key {id}"));
            Ok(())
        }
    }
}

fn status_name(status: KeyStatus) -> &'static str {
    match status {
        KeyStatus::Active => "active",
        KeyStatus::Disabled => "disabled",
        KeyStatus::Expired => "expired",
        KeyStatus::Revoked => "revoked",
    }
}

fn routes_cell(routes: &[String]) -> String {
    if routes.is_empty() {
        "(all)".to_string()
    } else {
        routes.join(",")
    }
}

fn print_key(k: KeyView) {
    let metadata: Vec<String> = k
        .metadata
        .iter()
        .map(|(key, v)| format!("{key}={v}"))
        .collect();
    print_fields(&[
        ("id", k.id),
        ("name", k.name),
        ("prefix", k.prefix),
        ("status", status_name(k.status).to_string()),
        ("routes", routes_cell(&k.allowed_routes)),
        ("expires", format_opt_ms(k.expires_at_ms)),
        ("revoked", format_opt_ms(k.revoked_at_ms)),
        ("metadata", join_or_dash(&metadata)),
        ("created", format_ms(k.created_at_ms)),
    ]);
}
