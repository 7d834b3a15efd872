//! `sluice routes …`.

use super::http::{v1_path as path, AdminClient};
use super::output::Output;
use super::output::{format_ms, join_or_dash, print_fields, Table};
use super::parse;
use sluice_admin::pricing::PricingBody;
use sluice_admin::routes::{CreateRoute, DeploymentBody, RouteList, RouteView};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum RoutesCommand {
    /// Create a route.
    Create {
        /// The model name clients send.
        #[arg(long)]
        name: String,
        /// `provider:model[:weight]` (repeatable, at least one).
        #[arg(long = "deployment", value_name = "PROVIDER:MODEL[:WEIGHT]", required = true, value_parser = parse::deployment)]
        deployments: Vec<DeploymentBody>,
        /// A route to try when every deployment failed (repeatable, in order).
        #[arg(long = "fallback", value_name = "ROUTE")]
        fallbacks: Vec<String>,
        /// USD per million prompt tokens (at most 6 decimals).
        #[arg(long, default_value_t = 0.0)]
        prompt_usd_per_mtok: f64,
        /// USD per million completion tokens (at most 6 decimals).
        #[arg(long, default_value_t = 0.0)]
        completion_usd_per_mtok: f64,
    },
    /// List routes.
    List,
    /// Show one route.
    Get {
        /// The route's name (the model name clients send).
        name: String,
    },
    /// Delete a route (refused while another route falls back to it).
    Delete {
        /// The route's name.
        name: String,
    },
}
pub(super) async fn run(
    client: &AdminClient,
    out: Output,
    command: RoutesCommand,
) -> anyhow::Result<()> {
    match command {
        RoutesCommand::Create {
            name,
            deployments,
            fallbacks,
            prompt_usd_per_mtok,
            completion_usd_per_mtok,
        } => {
            let body = CreateRoute {
                name,
                deployments,
                fallbacks,
                pricing: PricingBody {
                    prompt_usd_per_mtok,
                    completion_usd_per_mtok,
                },
            };
            let value = client.post(&path(&["routes"]), &body).await?;
            out.show(value, print_route)
        }
        RoutesCommand::List => {
            let value = client.get(&path(&["routes"])).await?;
            out.show(value, |list: RouteList| {
                let mut table = Table::new(&[
                    "NAME",
                    "DEPLOYMENTS",
                    "FALLBACKS",
                    "USD/MTOK IN",
                    "USD/MTOK OUT",
                ]);
                for r in list.routes {
                    table.row(vec![
                        r.name,
                        deployments_cell(&r.deployments),
                        join_or_dash(&r.fallbacks),
                        r.pricing.prompt_usd_per_mtok.to_string(),
                        r.pricing.completion_usd_per_mtok.to_string(),
                    ]);
                }
                table.print();
            })
        }
        RoutesCommand::Get { name } => {
            let value = client.get(&path(&["routes", &name])).await?;
            out.show(value, print_route)
        }
        RoutesCommand::Delete { name } => {
            client.delete(&path(&["routes", &name])).await?;
            out.done(format!("deleted route {name}"));
            Ok(())
        }
    }
}

fn deployments_cell(deployments: &[DeploymentBody]) -> String {
    let parts: Vec<String> = deployments
        .iter()
        .map(|d| format!("{}:{}:{}", d.provider, d.model, d.weight))
        .collect();
    join_or_dash(&parts)
}

fn print_route(r: RouteView) {
    print_fields(&[
        ("name", r.name),
        ("deployments", deployments_cell(&r.deployments)),
        ("fallbacks", join_or_dash(&r.fallbacks)),
        (
            "pricing",
            format!(
                "${} / 1M prompt tokens, ${} / 1M completion tokens",
                r.pricing.prompt_usd_per_mtok, r.pricing.completion_usd_per_mtok
            ),
        ),
        ("created", format_ms(r.created_at_ms)),
        ("updated", format_ms(r.updated_at_ms)),
    ]);
}
