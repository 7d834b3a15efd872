//! `sluice cluster …`: status, membership and leadership.

use super::doctor::{self, DoctorArgs};
use super::http::{v1_path as path, AdminClient};
use super::output::Output;
use super::output::{print_fields, Table};
use super::rotate_ca::RotateCaStage;
use super::snapshot::{self, SnapshotCommand};
use sluice_admin::cluster::{AddLearner, ClusterStatusView, MemberRoleView, TransferLeader};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClusterCommand {
    /// This node's view of the cluster: leader, term, members.
    Status,
    /// Add a node as a learner (it receives the log but does not vote).
    AddLearner {
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// `host:port` of its Raft (QUIC) endpoint.
        #[arg(long)]
        raft_addr: String,
        /// Base URL of its admin API.
        #[arg(long = "node-admin-url", value_name = "URL")]
        node_admin_url: String,
        /// Base URL of its proxy.
        #[arg(long = "node-proxy-url", value_name = "URL")]
        node_proxy_url: String,
    },
    /// Promote a learner to voter.
    Promote {
        /// The learner's node id (`sluice cluster status` lists members).
        id: u64,
    },
    /// Remove a member.
    Remove {
        /// The member's node id.
        id: u64,
    },
    /// Hand leadership to another voter.
    TransferLeader {
        /// The node id of the voter to lead.
        to: u64,
    },
    /// Back up and restore the configuration.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Check quorum, replication lag, clock skew and certificate expiry on
    /// every member; exits 1 when any check is not OK.
    Doctor(DoctorArgs),
    /// Replace the cluster CA in three stages (begin, reissue, finish), each
    /// followed by a rolling restart (offline: works on the `sluice init`
    /// directory, calls no node).
    // Offline, as `snapshot reseal`: the group's --admin-url, --admin-token
    // and --cacert, hidden, are not handed down.
    #[command(
        arg(clap::Arg::new("admin_urls").long("admin-url").hide(true).action(clap::ArgAction::Append)),
        arg(clap::Arg::new("admin_token").long("admin-token").hide(true)),
        arg(clap::Arg::new("cacert").long("cacert").hide(true).value_parser(clap::value_parser!(std::path::PathBuf)))
    )]
    RotateCa {
        #[command(subcommand)]
        stage: RotateCaStage,
    },
}

pub(super) async fn run(
    client: &AdminClient,
    out: Output,
    command: ClusterCommand,
) -> anyhow::Result<()> {
    let value = match command {
        ClusterCommand::Snapshot { command } => return snapshot::run(client, out, command).await,
        ClusterCommand::Doctor(limits) => return doctor::run(client, out, limits).await,
        ClusterCommand::RotateCa { stage } => return super::rotate_ca::run(out, stage),
        ClusterCommand::Status => client.get(&path(&["cluster"])).await?,
        ClusterCommand::AddLearner {
            id,
            raft_addr,
            node_admin_url,
            node_proxy_url,
        } => {
            let body = AddLearner {
                id,
                raft_addr,
                admin_url: node_admin_url,
                proxy_url: node_proxy_url,
            };
            client.post(&path(&["cluster", "learners"]), &body).await?
        }
        ClusterCommand::Promote { id } => {
            client
                .post_empty(&path(&["cluster", "voters", &id.to_string()]))
                .await?
        }
        ClusterCommand::Remove { id } => {
            client
                .delete(&path(&["cluster", "members", &id.to_string()]))
                .await?
        }
        ClusterCommand::TransferLeader { to } => {
            client
                .post(&path(&["cluster", "leader"]), &TransferLeader { to })
                .await?
        }
    };
    out.show(value, print_cluster)
}

fn print_cluster(status: ClusterStatusView) {
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    print_fields(&[
        ("cluster", status.cluster_id),
        ("node", format!("{} ({})", status.node_id, status.state)),
        ("leader", opt(status.leader_id)),
        ("term", status.term.to_string()),
        ("last log", opt(status.last_log_index)),
        ("applied", opt(status.applied_index)),
        ("snapshot", opt(status.snapshot_index)),
    ]);
    println!();
    let mut table = Table::new(&["ID", "ROLE", "RAFT", "ADMIN", "PROXY", "MATCHED"]);
    for m in status.members {
        let mut role = match m.role {
            MemberRoleView::Voter => "voter".to_string(),
            MemberRoleView::Learner => "learner".to_string(),
        };
        if status.leader_id == Some(m.id) {
            role.push_str(" (leader)");
        }
        table.row(vec![
            m.id.to_string(),
            role,
            m.addresses.raft_addr,
            m.addresses.admin_url,
            m.addresses.proxy_url,
            opt(m.matched_index),
        ]);
    }
    table.print();
}
