//! `sluice tokens …`: the token is printed once, at creation.

use super::http::{v1_path as path, AdminClient};
use super::output::Output;
use super::output::{format_ms, print_fields, Table};
use sluice_admin::tokens::{CreateToken, CreatedToken, TokenList};

/// What `tokens list` cannot show.
const BOOTSTRAP_NOTE: &str =
    "Not listed: the bootstrap token `sluice init` (or `sluice dev`) made. \
     It lives in the node configs (`[admin] token_sha256`, as a hash) and in the admin-token file \
     beside them; it stops working when its hash is removed from every node's config.";

#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokensCommand {
    /// Create an admin token and print it (shown only this once).
    Create {
        /// A label for the token, e.g. who or what uses it.
        #[arg(long)]
        name: String,
    },
    /// List the admin tokens made with `tokens create` (the bootstrap
    /// token from `sluice init` lives in the node configs, not here).
    List,
    /// Delete an admin token.
    Delete {
        /// The token's id (`tok_…`, from `sluice tokens list`).
        id: String,
    },
}
pub(super) async fn run(
    client: &AdminClient,
    out: Output,
    command: TokensCommand,
) -> anyhow::Result<()> {
    match command {
        TokensCommand::Create { name } => {
            let value = client
                .post(&path(&["tokens"]), &CreateToken { name })
                .await?;
            out.show(value, |created: CreatedToken| {
                print_fields(&[
                    ("id", created.view.id),
                    ("name", created.view.name),
                    ("created", format_ms(created.view.created_at_ms)),
                ]);
                println!();
                println!("token: {}", created.token);
                println!("(shown only this once: store it now)");
            })
        }
        TokensCommand::List => {
            let value = client.get(&path(&["tokens"])).await?;
            out.show(value, |list: TokenList| {
                let mut table = Table::new(&["ID", "NAME", "PREFIX", "CREATED"]);
                for t in list.tokens {
                    table.row(vec![t.id, t.name, t.prefix, format_ms(t.created_at_ms)]);
                }
                table.print();
                println!("{BOOTSTRAP_NOTE}");
            })
        }
        TokensCommand::Delete { id } => {
            client.delete(&path(&["tokens", &id])).await?;
            out.done(format!("deleted admin token {id}"));
            Ok(())
        }
    }
}
