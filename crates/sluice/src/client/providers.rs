//! `sluice providers …`.

use super::http::{v1_path as path, AdminClient};
use super::output::Output;
use super::output::{format_ms, join_or_dash, print_fields, Table};
use super::parse;
use anyhow::Context;
use sluice_admin::providers::{
    CreateProvider, ProviderKindBody, ProviderList, ProviderView, TimeoutsBody,
};

/// Provider kinds as the command line spells them.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    Openai,
    Anthropic,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ProvidersCommand {
    /// Create a provider.
    Create {
        /// The provider's name, as routes name it in `--deployment
        /// NAME:MODEL`.
        #[arg(long)]
        name: String,
        /// The API it speaks.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// e.g. `https://api.openai.com/v1`.
        #[arg(long)]
        base_url: String,
        /// Name of the environment variable holding the upstream API key:
        /// your account's key at the provider, not a Sluice key (the key
        /// itself is never taken from the command line).
        #[arg(long, value_name = "VAR")]
        api_key_env: Option<String>,
        /// Extra upstream header, `NAME=VALUE` (repeatable; not for secrets).
        #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse::key_value)]
        headers: Vec<(String, String)>,
        /// Extra upstream header whose value is a secret, read from the
        /// environment variable VAR (repeatable): sealed, never shown.
        #[arg(long = "secret-header-env", value_name = "NAME=VAR", value_parser = parse::key_value)]
        secret_headers: Vec<(String, String)>,
    },
    /// List providers.
    List,
    /// Show one provider.
    Get {
        /// The provider's name.
        name: String,
    },
    /// Delete a provider (refused while a route uses it).
    Delete {
        /// The provider's name.
        name: String,
    },
}
pub(super) async fn run(
    client: &AdminClient,
    out: Output,
    command: ProvidersCommand,
) -> anyhow::Result<()> {
    match command {
        ProvidersCommand::Create {
            name,
            kind,
            base_url,
            api_key_env,
            headers,
            secret_headers,
        } => {
            let api_key = match api_key_env {
                Some(var) => Some(std::env::var(&var).with_context(|| {
                    format!("reading the provider API key from environment variable {var}")
                })?),
                None => None,
            };
            let secret_headers = secret_headers
                .into_iter()
                .map(|(header, var)| {
                    let value = std::env::var(&var).with_context(|| {
                        format!("reading secret header {header} from environment variable {var}")
                    })?;
                    Ok((header, value))
                })
                .collect::<anyhow::Result<_>>()?;
            let body = CreateProvider {
                name,
                kind: match kind {
                    KindArg::Openai => ProviderKindBody::Openai,
                    KindArg::Anthropic => ProviderKindBody::Anthropic,
                },
                base_url,
                api_key,
                headers: headers.into_iter().collect(),
                secret_headers,
                timeouts: TimeoutsBody::default(),
            };
            let value = client.post(&path(&["providers"]), &body).await?;
            out.show(value, print_provider)
        }
        ProvidersCommand::List => {
            let value = client.get(&path(&["providers"])).await?;
            out.show(value, |list: ProviderList| {
                let mut table = Table::new(&["NAME", "KIND", "BASE URL", "API KEY", "UPDATED"]);
                for p in list.providers {
                    table.row(vec![
                        p.name,
                        kind_name(p.kind).to_string(),
                        p.base_url,
                        if p.api_key_set { "set" } else { "-" }.to_string(),
                        format_ms(p.updated_at_ms),
                    ]);
                }
                table.print();
            })
        }
        ProvidersCommand::Get { name } => {
            let value = client.get(&path(&["providers", &name])).await?;
            out.show(value, print_provider)
        }
        ProvidersCommand::Delete { name } => {
            client.delete(&path(&["providers", &name])).await?;
            out.done(format!("deleted provider {name}"));
            Ok(())
        }
    }
}

fn kind_name(kind: ProviderKindBody) -> &'static str {
    match kind {
        ProviderKindBody::Openai => "openai",
        ProviderKindBody::Anthropic => "anthropic",
    }
}

fn print_provider(p: ProviderView) {
    let headers: Vec<String> = p.headers.iter().map(|(k, v)| format!("{k}={v}")).collect();
    print_fields(&[
        ("name", p.name),
        ("kind", kind_name(p.kind).to_string()),
        ("base url", p.base_url),
        (
            "api key",
            if p.api_key_set { "set" } else { "not set" }.to_string(),
        ),
        ("headers", join_or_dash(&headers)),
        ("secret headers", join_or_dash(&p.secret_header_names)),
        (
            "timeouts",
            format!(
                "connect {} ms, first byte {} ms, total {} ms",
                p.timeouts.connect_ms, p.timeouts.first_byte_ms, p.timeouts.total_ms
            ),
        ),
        ("created", format_ms(p.created_at_ms)),
        ("updated", format_ms(p.updated_at_ms)),
    ]);
}
