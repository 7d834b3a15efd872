//! The `sluice` admin client against a [`Cluster`]: what an operator types,
//! run as a child with the node's admin URL and the admin token in the
//! environment (never argv).

use crate::cluster::Cluster;
use crate::process::{run_to_completion, Completed};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// How long one CLI command may take.
const CLI_BUDGET: Duration = Duration::from_secs(30);

impl Cluster {
    /// Runs `sluice <args>` against node `id`'s admin API.
    pub fn cli(&self, id: u64, args: &[&str]) -> Completed {
        self.cli_as(id, self.token(), args)
    }

    /// [`Cluster::cli`] with another admin token.
    pub fn cli_as(&self, id: u64, token: &str, args: &[&str]) -> Completed {
        let mut command = Command::new(crate::sluice_bin());
        command
            .args(args)
            .env("SLUICE_ADMIN_URL", self.admin_url(id))
            .env("SLUICE_ADMIN_TOKEN", token)
            .env("SLUICE_CACERT", self.ca_cert())
            .env("NO_COLOR", "1");
        run_to_completion(command, self.deadline().within(CLI_BUDGET))
    }

    /// [`Cluster::cli`] with `--json`, expecting exit 0; the parsed stdout.
    pub fn cli_json(&self, id: u64, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let done = self.cli(id, &args);
        if done.code() != 0 {
            self.fail(format!("sluice {}: {done}", args.join(" ")));
        }
        serde_json::from_str(&done.stdout).unwrap_or_else(|e| {
            panic!(
                "sluice {} printed no JSON ({e}):\n{}",
                args.join(" "),
                done.stdout
            )
        })
    }
}
