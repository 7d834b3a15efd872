//! `sluice providers …`.

use super::http::{v1_path as path, AdminClient};
use super::output::Output;
use super::output::{format_ms, join_or_dash, print_fields, Table};
use super::parse;
use anyhow::Context;
use sluice_admin::providers::{
    AzureBody, BedrockBody, CreateProvider, EntraBody, ProviderKindBody, ProviderList,
    ProviderView, TimeoutsBody, UpdateProvider,
};

/// Provider kinds as the command line spells them.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    Openai,
    Anthropic,
    #[value(name = "azure_openai")]
    AzureOpenai,
    Gemini,
    Vertex,
    Bedrock,
}

impl From<KindArg> for ProviderKindBody {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Openai => ProviderKindBody::Openai,
            KindArg::Anthropic => ProviderKindBody::Anthropic,
            KindArg::AzureOpenai => ProviderKindBody::AzureOpenai,
            KindArg::Gemini => ProviderKindBody::Gemini,
            KindArg::Vertex => ProviderKindBody::Vertex,
            KindArg::Bedrock => ProviderKindBody::Bedrock,
        }
    }
}

/// The settings of one provider kind, as flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KindFlags {
    /// azure_openai: `v1`, or a dated `api-version` (default 2024-10-21).
    #[arg(long, value_name = "VERSION")]
    api_version: Option<String>,
    /// azure_openai: authenticate with Microsoft Entra ID as this tenant
    /// (the directory id); `--api-key-env` then holds the client secret.
    #[arg(long, value_name = "TENANT", requires = "entra_client_id")]
    entra_tenant_id: Option<String>,
    /// azure_openai: the app registration's application (client) id.
    #[arg(long, value_name = "CLIENT", requires = "entra_tenant_id")]
    entra_client_id: Option<String>,
    /// azure_openai: where Entra ID tokens come from (default
    /// https://login.microsoftonline.com).
    #[arg(long, value_name = "URL", requires = "entra_tenant_id")]
    entra_authority_url: Option<String>,
    /// bedrock: the AWS region its requests are signed for (and, without
    /// --base-url, whose endpoint it calls).
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
}

/// Where a provider's credential comes from (never the command line). For
/// `update`, none of them keeps the stored one.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CredentialFlags {
    /// Name of the environment variable holding the upstream API key:
    /// your account's key at the provider, not a Sluice key.
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,
    /// The upstream credential read from FILE instead (a Vertex AI
    /// service account key file; a Bedrock provider's IAM keys, JSON).
    #[arg(long, value_name = "FILE", conflicts_with = "api_key_env")]
    api_key_file: Option<std::path::PathBuf>,
    /// bedrock: read the IAM keys from the standard AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY and (temporary credentials) AWS_SESSION_TOKEN
    /// variables.
    #[arg(long, conflicts_with_all = ["api_key_env", "api_key_file"])]
    aws_keys_from_env: bool,
}

impl CredentialFlags {
    /// Whether a flag names a credential.
    fn given(&self) -> bool {
        self.api_key_env.is_some() || self.api_key_file.is_some() || self.aws_keys_from_env
    }

    /// The credential the flags name: the AWS variables' keys, a
    /// variable's value or a file's content; `None` when none does.
    fn read(self) -> anyhow::Result<Option<String>> {
        Ok(match (self.api_key_env, self.api_key_file) {
            _ if self.aws_keys_from_env => Some(aws_keys_from_env()?),
            (Some(var), _) => Some(std::env::var(&var).with_context(|| {
                format!("reading the provider API key from environment variable {var}")
            })?),
            (None, Some(file)) => Some(std::fs::read_to_string(&file).with_context(|| {
                format!("reading the provider credential from {}", file.display())
            })?),
            (None, None) => None,
        })
    }
}

/// A kind's own settings, for the API.
#[derive(Debug, Default)]
struct KindSettings {
    azure: Option<AzureBody>,
    bedrock: Option<BedrockBody>,
}

impl KindFlags {
    /// The kind's settings for the API, or which flag does not belong or
    /// is missing.
    fn settings(self, kind: KindArg, credential: &CredentialFlags) -> anyhow::Result<KindSettings> {
        let KindFlags {
            api_version,
            entra_tenant_id,
            entra_client_id,
            entra_authority_url,
            region,
        } = self;
        let has_key = credential.given();
        if !matches!(kind, KindArg::Bedrock) {
            let given = [
                ("--region", region.is_some()),
                ("--aws-keys-from-env", credential.aws_keys_from_env),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
                anyhow::bail!("{flag} is a setting of --kind bedrock providers only");
            }
        }
        match kind {
            KindArg::Gemini if !has_key => anyhow::bail!(
                "a gemini provider needs --api-key-env VAR: the variable holding the Gemini API key"
            ),
            KindArg::Vertex if !has_key => anyhow::bail!(
                "a vertex provider needs --api-key-file FILE: the service account key file (JSON)"
            ),
            KindArg::Bedrock => {
                let Some(region) = region else {
                    anyhow::bail!(
                        "a bedrock provider needs --region REGION: the AWS region its requests \
                         are signed for, e.g. us-east-1"
                    )
                };
                if !has_key {
                    anyhow::bail!(
                        "a bedrock provider needs its IAM keys: --aws-keys-from-env (reads \
                         AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), or \
                         --api-key-file FILE holding {{\"access_key_id\", \"secret_access_key\"}}"
                    )
                }
                return Ok(KindSettings {
                    bedrock: Some(BedrockBody { region }),
                    ..KindSettings::default()
                });
            }
            _ => {}
        }
        if !matches!(kind, KindArg::AzureOpenai) {
            let given = [
                ("--api-version", api_version.is_some()),
                ("--entra-tenant-id", entra_tenant_id.is_some()),
                ("--entra-client-id", entra_client_id.is_some()),
                ("--entra-authority-url", entra_authority_url.is_some()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
                anyhow::bail!("{flag} is a setting of --kind azure_openai providers only");
            }
            return Ok(KindSettings::default());
        }
        let mut azure = AzureBody::default();
        if let Some(version) = api_version {
            azure.api_version = version;
        }
        if let (Some(tenant_id), Some(client_id)) = (entra_tenant_id, entra_client_id) {
            let mut entra = EntraBody {
                tenant_id,
                client_id,
                authority_url: sluice_core::provider::ENTRA_DEFAULT_AUTHORITY.to_owned(),
                scope: sluice_core::provider::ENTRA_DEFAULT_SCOPE.to_owned(),
            };
            if let Some(url) = entra_authority_url {
                entra.authority_url = url;
            }
            azure.entra = Some(entra);
        }
        if !has_key {
            let what = if azure.entra.is_some() {
                "the app registration's client secret"
            } else {
                "the resource's key"
            };
            anyhow::bail!(
                "an azure_openai provider needs --api-key-env VAR: the variable holding {what}"
            );
        }
        Ok(KindSettings {
            azure: Some(azure),
            ..KindSettings::default()
        })
    }
}

/// The IAM keys in AWS's standard environment variables, as a bedrock
/// provider's credential.
fn aws_keys_from_env() -> anyhow::Result<String> {
    let var = |name: &str| {
        std::env::var(name).with_context(|| format!("reading the AWS keys: {name} is not set"))
    };
    let mut keys = serde_json::json!({
        "access_key_id": var("AWS_ACCESS_KEY_ID")?,
        "secret_access_key": var("AWS_SECRET_ACCESS_KEY")?,
    });
    if let Ok(token) = std::env::var("AWS_SESSION_TOKEN") {
        keys["session_token"] = token.into();
    }
    Ok(keys.to_string())
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
        /// e.g. `https://api.openai.com/v1` (a bedrock provider's defaults
        /// to its region's endpoint).
        #[arg(long)]
        base_url: Option<String>,
        #[command(flatten)]
        credential: CredentialFlags,
        /// Extra upstream header, `NAME=VALUE` (repeatable; not for secrets).
        #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse::key_value)]
        headers: Vec<(String, String)>,
        /// Extra upstream header whose value is a secret, read from the
        /// environment variable VAR (repeatable): sealed, never shown.
        #[arg(long = "secret-header-env", value_name = "NAME=VAR", value_parser = parse::key_value)]
        secret_headers: Vec<(String, String)>,
        #[command(flatten)]
        settings: Box<KindFlags>,
    },
    /// Change a provider: a new credential (rotated keys, a renewed AWS
    /// session token), base URL, headers or region; what is not given is
    /// kept as it is.
    Update {
        /// The provider's name.
        name: String,
        #[arg(long)]
        base_url: Option<String>,
        /// A new credential; none keeps the stored one.
        #[command(flatten)]
        credential: CredentialFlags,
        /// bedrock: a new region.
        #[arg(long, value_name = "REGION")]
        region: Option<String>,
        /// azure_openai: a new `api-version`.
        #[arg(long, value_name = "VERSION")]
        api_version: Option<String>,
        /// Replace the clear extra headers with these (repeatable).
        #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse::key_value)]
        headers: Vec<(String, String)>,
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
            credential,
            headers,
            secret_headers,
            settings,
        } => {
            let settings = settings.settings(kind, &credential)?;
            let base_url = match (base_url, &settings.bedrock) {
                (Some(url), _) => url,
                (None, Some(bedrock)) => sluice_core::provider::bedrock_endpoint(&bedrock.region),
                (None, None) => anyhow::bail!("--base-url is required for this --kind"),
            };
            let api_key = credential.read()?;
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
                kind: kind.into(),
                base_url,
                api_key,
                headers: headers.into_iter().collect(),
                secret_headers,
                timeouts: TimeoutsBody::default(),
                azure: settings.azure,
                bedrock: settings.bedrock,
            };
            let value = client.post(&path(&["providers"]), &body).await?;
            out.show(value, print_provider)
        }
        ProvidersCommand::Update {
            name,
            base_url,
            credential,
            region,
            api_version,
            headers,
        } => {
            let current: ProviderView =
                serde_json::from_value(client.get(&path(&["providers", &name])).await?)
                    .context("reading the provider")?;
            if region.is_some() && current.kind != ProviderKindBody::Bedrock {
                anyhow::bail!("--region is a setting of bedrock providers; {name} is not one");
            }
            if credential.aws_keys_from_env && current.kind != ProviderKindBody::Bedrock {
                anyhow::bail!(
                    "--aws-keys-from-env is a setting of bedrock providers; {name} is not one"
                );
            }
            if api_version.is_some() && current.kind != ProviderKindBody::AzureOpenai {
                anyhow::bail!(
                    "--api-version is a setting of azure_openai providers; {name} is not one"
                );
            }
            let api_key = credential.read()?;
            let body = UpdateProvider {
                kind: current.kind,
                base_url: base_url.unwrap_or(current.base_url),
                // Left out: the stored credential is kept.
                api_key: api_key.map(Some),
                headers: if headers.is_empty() {
                    current.headers
                } else {
                    headers.into_iter().collect()
                },
                secret_headers: None,
                timeouts: current.timeouts,
                azure: current.azure.map(|mut azure| {
                    if let Some(version) = api_version {
                        azure.api_version = version;
                    }
                    azure
                }),
                bedrock: match (current.bedrock, region) {
                    (_, Some(region)) => Some(BedrockBody { region }),
                    (bedrock, None) => bedrock,
                },
            };
            let value = client
                .call(
                    reqwest::Method::PUT,
                    &path(&["providers", &name]),
                    Some(&body),
                )
                .await?;
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
        ProviderKindBody::AzureOpenai => "azure_openai",
        ProviderKindBody::Gemini => "gemini",
        ProviderKindBody::Vertex => "vertex",
        ProviderKindBody::Bedrock => "bedrock",
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
            "azure",
            match &p.azure {
                None => "-".to_owned(),
                Some(azure) => match &azure.entra {
                    None => format!("api-version {}, api-key", azure.api_version),
                    Some(entra) => format!(
                        "api-version {}, Entra ID tenant {} client {} ({})",
                        azure.api_version, entra.tenant_id, entra.client_id, entra.authority_url
                    ),
                },
            },
        ),
        (
            "bedrock",
            p.bedrock
                .as_ref()
                .map_or_else(|| "-".to_owned(), |b| format!("region {}, SigV4", b.region)),
        ),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A credential named by a variable.
    fn key() -> CredentialFlags {
        CredentialFlags {
            api_key_env: Some("UPSTREAM_KEY".into()),
            ..CredentialFlags::default()
        }
    }

    #[test]
    fn kind_flags_belong_to_their_kind() {
        let flags = KindFlags {
            api_version: Some("v1".into()),
            ..KindFlags::default()
        };
        let err = flags.clone().settings(KindArg::Openai, &key()).unwrap_err();
        assert!(err.to_string().contains("--api-version"), "{err}");
        let azure = flags
            .settings(KindArg::AzureOpenai, &key())
            .unwrap()
            .azure
            .unwrap();
        assert_eq!(azure.api_version, "v1");
        let none = KindFlags::default()
            .settings(KindArg::Anthropic, &CredentialFlags::default())
            .unwrap();
        assert!(none.azure.is_none() && none.bedrock.is_none());
        let region = KindFlags {
            region: Some("us-east-1".into()),
            ..KindFlags::default()
        };
        let err = region.settings(KindArg::Openai, &key()).unwrap_err();
        assert!(err.to_string().contains("--region"), "{err}");
    }

    #[test]
    fn a_bedrock_provider_needs_a_region_and_its_keys() {
        let err = KindFlags::default()
            .settings(KindArg::Bedrock, &key())
            .unwrap_err();
        assert!(err.to_string().contains("--region"), "{err}");
        let flags = KindFlags {
            region: Some("eu-west-1".into()),
            ..KindFlags::default()
        };
        let err = flags
            .clone()
            .settings(KindArg::Bedrock, &CredentialFlags::default())
            .unwrap_err();
        assert!(err.to_string().contains("--aws-keys-from-env"), "{err}");
        let from_env = CredentialFlags {
            aws_keys_from_env: true,
            ..CredentialFlags::default()
        };
        let bedrock = flags.settings(KindArg::Bedrock, &from_env).unwrap();
        assert_eq!(bedrock.bedrock.unwrap().region, "eu-west-1");
        assert!(bedrock.azure.is_none());
    }

    #[test]
    fn an_azure_provider_without_a_credential_is_refused_before_sending() {
        let err = KindFlags::default()
            .settings(KindArg::AzureOpenai, &CredentialFlags::default())
            .unwrap_err();
        assert!(err.to_string().contains("--api-key-env"), "{err}");
        let entra = KindFlags {
            entra_tenant_id: Some("t".into()),
            entra_client_id: Some("c".into()),
            ..KindFlags::default()
        };
        let err = entra
            .clone()
            .settings(KindArg::AzureOpenai, &CredentialFlags::default())
            .unwrap_err();
        assert!(err.to_string().contains("client secret"), "{err}");
        let azure = entra
            .settings(KindArg::AzureOpenai, &key())
            .unwrap()
            .azure
            .unwrap();
        assert_eq!(azure.api_version, "2024-10-21");
        assert_eq!(
            azure.entra.unwrap().authority_url,
            "https://login.microsoftonline.com"
        );
    }
}
