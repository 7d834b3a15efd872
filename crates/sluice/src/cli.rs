//! The command line: argument parsing (clap), logging setup and dispatch to
//! `serve`, `init`, `dev` and the admin client subcommands.
//!
//! Exit codes: 0 success; 1 runtime error (the `anyhow` chain is printed);
//! 2 invalid configuration (every problem is printed) or invalid arguments.

use crate::config::{self, ConfigErrors};
use crate::{dev, init, serve, telemetry};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// Exit code for a configuration that does not validate.
pub const EXIT_CONFIG: u8 = 2;

/// Sluice: a clustered gateway for AI model APIs.
#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about,
    propagate_version = true,
    after_help = TOP_EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The first steps, at the end of `sluice --help`.
const TOP_EXAMPLES: &str = "Examples:
  sluice dev                                   # a 3-node cluster on 127.0.0.1, with a demo
  sluice init --out ./cluster --nodes 3        # configs, certificates and a token for one machine
  sluice init --out ./cluster --nodes 3 --hosts 10.0.0.1,10.0.0.2,10.0.0.3
  sluice serve --config ./cluster/node-1/sluice.toml
  sluice keys --help                           # the admin commands: cluster, providers, routes, keys, tokens, usage";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Generate a cluster: CA, node certificates, data key, admin token and
    /// one config per node. Never overwrites; rerun to add nodes.
    Init(InitArgs),
    /// Run a local cluster of `sluice serve` processes in the foreground.
    Dev(dev::DevArgs),
    /// Run the mock model provider (OpenAI and Anthropic APIs) for tests and demos.
    MockLlm(MockLlmArgs),
    #[command(flatten)]
    Client(crate::client::ClientCommand),
}

/// `sluice serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The node's configuration file.
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Only validate the configuration: print OK or every problem, exit 0 or 2.
    #[arg(long)]
    pub check: bool,
}

/// `sluice init`.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Directory to write into (created if missing; existing files are kept).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Nodes 1..=N exist afterwards; existing ones are left untouched.
    /// Without --hosts they all run on one machine (--host).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub nodes: u64,
    /// IP address every node listens on and advertises (one machine).
    #[arg(long, default_value = "127.0.0.1", conflicts_with = "hosts")]
    pub host: IpAddr,
    /// One IP address per node, in node order, for nodes on separate machines
    /// (comma-separated); every node then uses the same ports.
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<IpAddr>,
    /// With --host: node N uses BASE+10*(N-1) for raft (UDP), +1 for admin,
    /// +2 for proxy. With --hosts: every node uses BASE, BASE+1, BASE+2.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Cluster id for a new directory (default: random `c-` + 12 hex digits).
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Use the data key in FILE (another cluster's `data.key`) instead of
    /// making a new one, so provider credentials in that cluster's backups
    /// open here.
    #[arg(long, value_name = "FILE")]
    pub data_key_from: Option<PathBuf>,
    /// A DNS name clients reach node N's admin API by, put in its admin
    /// certificate beside its addresses (repeatable); `{id}` is the node
    /// id, `{ordinal}` the id - 1 (a StatefulSet pod's), e.g.
    /// `sluice-{ordinal}.sluice-peers`.
    #[arg(long = "admin-name", value_name = "NAME")]
    pub admin_names: Vec<String>,
}

/// `sluice mock-llm`.
#[derive(Debug, Clone, clap::Args)]
pub struct MockLlmArgs {
    /// Address to listen on (loopback by default; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: std::net::SocketAddr,
    /// Delay between the response headers and the first body byte, in ms.
    #[arg(long, default_value_t = 0)]
    pub first_byte_ms: u64,
    /// Delay between stream events, in ms.
    #[arg(long, default_value_t = 0)]
    pub chunk_ms: u64,
    /// Require this API key (read from environment variable VAR) on every
    /// API request, as `Authorization: Bearer`, `x-api-key` or `api-key`.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Be a Microsoft Entra ID token endpoint for this tenant (with
    /// `--entra-client-id` and `--entra-secret-env`), and require its
    /// tokens (or `--api-key-env`'s key) on every API request.
    #[arg(long, value_name = "TENANT", requires_all = ["entra_client_id", "entra_secret_env"])]
    pub entra_tenant_id: Option<String>,
    /// The one app registration the mock's Entra ID knows.
    #[arg(long, value_name = "CLIENT", requires = "entra_tenant_id")]
    pub entra_client_id: Option<String>,
    /// The environment variable holding its client secret.
    #[arg(long, value_name = "VAR", requires = "entra_tenant_id")]
    pub entra_secret_env: Option<String>,
    /// The lifetime of the Entra ID tokens issued, in seconds.
    #[arg(long, default_value_t = 3599, value_parser = clap::value_parser!(u64).range(1..))]
    pub entra_token_ttl_s: u64,
    /// Be Google's token endpoint (`POST /token`) for this service account
    /// (with `--google-sa-public-key`), and take only its tokens on Vertex
    /// AI's paths.
    #[arg(long, value_name = "EMAIL", requires = "google_sa_public_key")]
    pub google_sa_email: Option<String>,
    /// The service account's public key: a PEM `RSA PUBLIC KEY` file.
    #[arg(long, value_name = "FILE", requires = "google_sa_email")]
    pub google_sa_public_key: Option<std::path::PathBuf>,
    /// The lifetime of the Google tokens issued, in seconds.
    #[arg(long, default_value_t = 3599, value_parser = clap::value_parser!(u64).range(1..))]
    pub google_token_ttl_s: u64,
    /// Take on Bedrock's paths only requests SigV4-signed by this IAM
    /// identity (with `--aws-secret-env` and `--aws-region`).
    #[arg(long, value_name = "ID", requires_all = ["aws_secret_env", "aws_region"])]
    pub aws_access_key_id: Option<String>,
    /// The environment variable holding its secret access key.
    #[arg(long, value_name = "VAR", requires = "aws_access_key_id")]
    pub aws_secret_env: Option<String>,
    /// The environment variable holding the session token its requests
    /// must carry (temporary credentials).
    #[arg(long, value_name = "VAR", requires = "aws_access_key_id")]
    pub aws_session_token_env: Option<String>,
    /// The region its signatures must be for.
    #[arg(long, value_name = "REGION", requires = "aws_access_key_id")]
    pub aws_region: Option<String>,
}

/// Runs the mock provider until SIGINT or SIGTERM, then lets in-flight
/// streams finish.
async fn run_mock_llm(args: MockLlmArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let env = |var: &str| {
        std::env::var(var).with_context(|| format!("reading environment variable {var}"))
    };
    let require_api_key = args.api_key_env.as_deref().map(env).transpose()?;
    let entra = match (
        args.entra_tenant_id,
        args.entra_client_id,
        args.entra_secret_env,
    ) {
        (Some(tenant_id), Some(client_id), Some(var)) => Some(sluice_mock_llm::MockEntra {
            tenant_id,
            client_id,
            client_secret: env(&var)?,
            token_ttl_s: args.entra_token_ttl_s,
        }),
        _ => None,
    };
    let google = match (args.google_sa_email, args.google_sa_public_key) {
        (Some(client_email), Some(file)) => {
            let pem = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let public_key_der = sluice_providers::google::pem_body(&pem, "RSA PUBLIC KEY")
                .with_context(|| format!("{} holds no PEM RSA PUBLIC KEY", file.display()))?;
            Some(sluice_mock_llm::MockGoogle {
                client_email,
                public_key_der,
                token_ttl_s: args.google_token_ttl_s,
            })
        }
        _ => None,
    };
    let aws = match (args.aws_access_key_id, args.aws_secret_env, args.aws_region) {
        (Some(access_key_id), Some(var), Some(region)) => Some(sluice_mock_llm::MockAws {
            access_key_id,
            secret_access_key: env(&var)?,
            session_token: args.aws_session_token_env.as_deref().map(env).transpose()?,
            region,
        }),
        _ => None,
    };
    let config = sluice_mock_llm::MockConfig {
        behavior: sluice_mock_llm::Behavior {
            first_byte_ms: args.first_byte_ms,
            chunk_ms: args.chunk_ms,
            ..Default::default()
        },
        require_api_key,
        entra,
        google,
        aws,
        ..Default::default()
    };
    let mock = sluice_mock_llm::MockServer::start(config, args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!(
        "mock model provider on {} (OpenAI: {0}/v1, Anthropic: {0}/v1/messages)",
        mock.base_url()
    );
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    mock.shutdown()
        .await
        .context("stopping the mock provider")?;
    Ok(())
}

/// Parses the command line, runs the command, and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    // Ignored error: a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return argument_error(err),
    };
    match cli.command {
        Command::Serve(args) => run_serve(args),
        Command::Init(args) => {
            init_plain_logging();
            finish(run_init(args))
        }
        Command::Dev(args) => {
            init_plain_logging();
            finish(runtime().and_then(|rt| rt.block_on(dev::run(args))))
        }
        Command::MockLlm(args) => {
            init_plain_logging();
            finish(runtime().and_then(|rt| rt.block_on(run_mock_llm(args))))
        }
        Command::Client(cmd) => {
            init_plain_logging();
            let json = cmd.global().json;
            match runtime().and_then(|rt| rt.block_on(crate::client::run(cmd))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => ExitCode::from(crate::client::print_error(&err, json)),
            }
        }
    }
}

/// A command line clap refused: printed as clap does, or as JSON on stderr
/// when `--json` was asked for (help and version are printed as asked).
fn argument_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let informational = matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !informational && std::env::args_os().any(|arg| arg == "--json") {
        eprintln!("{}", crate::client::clap_error_json(&err));
        return ExitCode::from(crate::client::EXIT_USAGE);
    }
    err.exit()
}

fn run_serve(args: ServeArgs) -> ExitCode {
    let config = match config::load(&args.config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check {
        println!("{}: OK", args.config.display());
        return ExitCode::SUCCESS;
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(err) => return finish(Err(err)),
    };
    rt.block_on(async {
        // Inside the runtime: the OTLP batch exporter is a task on it.
        let origin = telemetry::Origin {
            cluster_id: &config.cluster_id,
            node_id: config.node_id,
        };
        let telemetry = match telemetry::init(&config.log, &config.tracing, origin) {
            Ok(telemetry) => telemetry,
            Err(err) => {
                eprintln!("error: {err:#}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let served = serve::run(config).await;
        telemetry.shutdown().await;
        finish(served)
    })
}

fn run_init(args: InitArgs) -> anyhow::Result<()> {
    let ids: Vec<u64> = (1..=args.nodes).collect();
    for host in args.hosts.iter().chain([&args.host]) {
        if host.is_unspecified() {
            anyhow::bail!(
                "{host} is not an address peers can dial; pass the node's real address \
                 (edit [listen] afterwards to listen on all interfaces)"
            );
        }
    }
    let nodes = if args.hosts.is_empty() {
        init::fixed_port_plan(ids.iter().copied(), args.host, args.base_port)?
    } else {
        if args.hosts.len() != ids.len() {
            anyhow::bail!(
                "--hosts lists {} addresses for {} nodes; give one per node, in node order",
                args.hosts.len(),
                ids.len()
            );
        }
        let mut nodes = Vec::new();
        for (id, host) in ids.iter().zip(&args.hosts) {
            let mut plan = init::fixed_port_plan([1], *host, args.base_port)?;
            plan[0].id = *id;
            nodes.extend(plan);
        }
        nodes
    };
    let initial_members = init::existing_initial_members(&args.out)?.unwrap_or_else(|| ids.clone());
    if let Some(from) = &args.data_key_from {
        init::adopt_data_key(&args.out, from)?;
    }
    let plan = init::InitPlan {
        out: args.out.clone(),
        cluster_id: args.cluster_id,
        nodes,
        initial_members,
        raft: None,
        admin_names: args.admin_names,
    };
    let output = init::generate(&plan)?;

    println!("Cluster {} in {}", output.cluster_id, args.out.display());
    if output.created.is_empty() {
        println!("Nothing to create: every file and node directory already exists.");
    } else {
        println!("Created:");
        for path in &output.created {
            println!("  {}", path.display());
        }
    }
    if !output.kept_nodes.is_empty() {
        let kept: Vec<String> = output
            .kept_nodes
            .iter()
            .map(|id| format!("node-{id}"))
            .collect();
        println!("Kept as they were: {}", kept.join(", "));
    }
    println!(
        "Admin token: in {} (keep it secret), e.g. export SLUICE_ADMIN_TOKEN=\"$(cat {})\"",
        output.admin_token_file.display(),
        output.admin_token_file.display()
    );
    println!(
        "The admin API serves HTTPS with certificates of the CA in {}: clients trust it, \
         e.g. export SLUICE_CACERT={}",
        args.out.join(init::CA_CERT_FILE).display(),
        args.out.join(init::CA_CERT_FILE).display()
    );
    println!("Start each node with:");
    for path in &output.configs {
        println!("  sluice serve --config {}", path.display());
    }
    if args.hosts.is_empty() && !output.created.is_empty() {
        println!(
            "This is a one-machine cluster: every node listens on {} (node N on ports {}+10*(N-1), \
             +1 admin, +2 proxy). For nodes on separate machines, give one address per node: \
             sluice init --out DIR --nodes {} --hosts 10.0.0.1,10.0.0.2,...",
            args.host,
            args.base_port,
            args.nodes
        );
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// 0 for `Ok`; otherwise prints the error chain and exits 2 if a
/// configuration was invalid, else 1.
fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.chain().any(|cause| cause.is::<ConfigErrors>()) {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Plain stderr logging for the other commands (`RUST_LOG`, default `info`).
fn init_plain_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Ignored error: a subscriber is already installed, which only happens in tests.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_check_and_init_parse() {
        let cli = Cli::try_parse_from(["sluice", "serve", "--config", "n.toml", "--check"])
            .expect("parse");
        assert!(matches!(
            cli.command,
            Command::Serve(ServeArgs { check: true, .. })
        ));
        let cli =
            Cli::try_parse_from(["sluice", "init", "--out", "d", "--nodes", "3"]).expect("parse");
        let Command::Init(args) = cli.command else {
            panic!("expected init");
        };
        assert_eq!(args.base_port, 7000);
        assert_eq!(args.host.to_string(), "127.0.0.1");
        assert!(Cli::try_parse_from(["sluice", "init", "--out", "d", "--nodes", "0"]).is_err());
    }
}
