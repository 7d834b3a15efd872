//! `sluice tokens …`: the token is printed once, at creation.

use super::http::{v1_path as path, AdminClient};
use super::output::Output;
use super::output::{format_ms, print_fields, Table};
use sluice_admin::tokens::{CreateToken, CreatedToken, RoleBody, TokenList};

/// What `tokens list` cannot show.
const BOOTSTRAP_NOTE: &str =
    "Not listed: the bootstrap token `sluice init` (or `sluice dev`) made. \
     It lives in the node configs (`[admin] token_sha256`, as a hash) and in the admin-token file \
     beside them; it stops working when its hash is removed from every node's config.";

/// Admin token roles as the command line spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    Admin,
    Operator,
    Keys,
    Viewer,
}

impl From<RoleArg> for RoleBody {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => RoleBody::Admin,
            RoleArg::Operator => RoleBody::Operator,
            RoleArg::Keys => RoleBody::Keys,
            RoleArg::Viewer => RoleBody::Viewer,
        }
    }
}

fn role_name(role: RoleBody) -> &'static str {
    sluice_core::Role::from(role).as_str()
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokensCommand {
    /// Create an admin token and print it (shown only this once).
    Create {
        /// A label for the token, e.g. who or what uses it.
        #[arg(long)]
        name: String,
        /// What the token may do: `admin` (everything), `operator` (the
        /// cluster, membership, snapshots, reading everything), `keys`
        /// (virtual keys and their quotas; reading keys, routes, usage) or
        /// `viewer` (reading, no snapshots).
        #[arg(long, value_enum, default_value_t = RoleArg::Admin)]
        role: RoleArg,
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
        TokensCommand::Create { name, role } => {
            let role = role.into();
            let value = client
                .post(&path(&["tokens"]), &CreateToken { name, role })
                .await?;
            out.show(value, |created: CreatedToken| {
                print_fields(&[
                    ("id", created.view.id),
                    ("name", created.view.name),
                    ("role", role_name(created.view.role).to_owned()),
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
                let mut table = Table::new(&["ID", "NAME", "ROLE", "PREFIX", "CREATED"]);
                for t in list.tokens {
                    table.row(vec![
                        t.id,
                        t.name,
                        role_name(t.role).to_owned(),
                        t.prefix,
                        format_ms(t.created_at_ms),
                    ]);
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
