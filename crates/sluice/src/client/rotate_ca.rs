//! `sluice cluster rotate-ca begin|reissue|finish`: the command line of
//! [`crate::init::rotate`], offline on the `sluice init` directory, and what
//! it tells the operator to install before the next stage.

use super::output::Output;
use crate::init::rotate::{self, StageReport};
use crate::init::CA_CERT_FILE;
use std::path::{Path, PathBuf};

/// One stage of a CA rotation.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RotateCaStage {
    /// Make a new CA and write ca.pem as the old CA and the new one; install
    /// ca.pem on every node and restart them one at a time.
    Begin(StageArgs),
    /// Reissue every node's certificates and keys (node and admin) from the
    /// new CA, with the same names; install them and restart the nodes one
    /// at a time.
    Reissue(StageArgs),
    /// Make the new CA the only one (ca.pem, ca-key.pem; the old is kept as
    /// retired-ca-*.pem); install ca.pem everywhere and restart the nodes one
    /// at a time. Certificates of the old CA are refused from then on.
    Finish(StageArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct StageArgs {
    /// The directory `sluice init --out` wrote (it holds ca-key.pem).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Runs `stage` and prints what it did and what to do next.
pub fn run(out: Output, stage: RotateCaStage) -> anyhow::Result<()> {
    let (args, stage_fn): (StageArgs, fn(&Path) -> anyhow::Result<StageReport>) = match stage {
        RotateCaStage::Begin(args) => (args, rotate::begin),
        RotateCaStage::Reissue(args) => (args, rotate::reissue),
        RotateCaStage::Finish(args) => (args, rotate::finish),
    };
    let report = stage_fn(&args.out)?;
    if out.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, &args.out));
    }
    Ok(())
}

/// The human account of `report` for the init directory `dir`.
fn render(report: &StageReport, dir: &Path) -> String {
    let mut text = String::new();
    let mut line = |s: String| {
        text.push_str(&s);
        text.push('\n');
    };
    line(format!(
        "rotate-ca {}: done in {}",
        report.stage,
        dir.display()
    ));
    for path in &report.written {
        line(format!("  wrote   {}", path.display()));
    }
    for (from, to) in &report.retired {
        line(format!("  retired {} -> {}", from.display(), to.display()));
    }
    if !report.kept_nodes.is_empty() {
        let kept: Vec<String> = report
            .kept_nodes
            .iter()
            .map(|id| format!("node-{id}"))
            .collect();
        line(format!(
            "  already from the new CA, left as they were: {}",
            kept.join(", ")
        ));
    }
    line(String::new());
    if report.install.is_empty() {
        line("Nothing to install.".into());
    } else if report.stage == "reissue" {
        line("Install on each node its directory's files (its own config is not touched):".into());
        for path in &report.install {
            line(format!("  {}", path.display()));
        }
    } else {
        line(format!(
            "Install {} on every node (the file its [tls] ca_cert names) and give it to \
             admin clients (SLUICE_CACERT).",
            dir.join(CA_CERT_FILE).display()
        ));
    }
    line(
        "Then restart the nodes one at a time, waiting after each until \
         `sluice cluster doctor` is OK."
            .into(),
    );
    match report.next {
        Some(next) => line(format!(
            "Then run: sluice cluster rotate-ca {next} --out {}",
            dir.display()
        )),
        None => line(
            "The rotation is complete: certificates of the old CA are refused once every node \
             has restarted. The retired CA key can be deleted."
                .into(),
        ),
    }
    text
}
