//! A cluster of real `sluice serve` processes, written by `sluice init`'s own
//! [`init::generate`] into a temporary directory.
//!
//! ```no_run
//! # use sluice_e2e::Cluster;
//! let cluster = Cluster::builder().nodes(3).fast_elections().start();
//! let leader = cluster.leader();
//! ```
//!
//! Nodes are named by their id (1-based, as in the cluster status). Layout
//! of the temporary directory:
//! ```text
//! cluster/          sluice init output (ca.pem, admin-token, node-<id>/sluice.toml, node-<id>/data)
//! logs/node-<id>.log   stdout + stderr of every run of that node, appended
//! ```
//! Dropping the cluster SIGKILLs and reaps every child, prints every node's
//! log tail if the test is panicking, and removes the directory (kept, and
//! its path printed, when `SLUICE_E2E_KEEP` is set).
//!
//! Built with [`ClusterBuilder::with_relay`], the nodes reach each other's Raft
//! sockets only through a [`Relay`], so [`Cluster::isolate`] can cut a node
//! off the network while its process keeps running.

use crate::admin::{provider_body, Admin};
use crate::binary::sluice_bin;
use crate::deadline::Deadline;
use crate::process::{format_tail, read_log, Process, LOG_TAIL_LINES};
use crate::relay::Relay;
use nix::sys::signal::Signal;
use serde_json::Value;
use sluice::init::{self, free_port_plan, InitPlan, NodePlan};
use sluice_raft::RaftTiming;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

/// Default budget for a whole test using a cluster.
pub const TEST_BUDGET: Duration = Duration::from_secs(60);
/// How long initial nodes get to become ready.
pub const START_BUDGET: Duration = Duration::from_secs(30);
/// How long a stopped node gets to exit after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Builds a [`Cluster`]: how many nodes, which form it, Raft timing.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    nodes: u64,
    initial: Option<u64>,
    timing: Option<RaftTiming>,
    budget: Duration,
    start: bool,
    extra: Vec<String>,
    relay: bool,
    data_key_from: Option<PathBuf>,
    env: Vec<(u64, String, String)>,
    plain_admin: bool,
}

impl ClusterBuilder {
    /// Serves the admin API over plain HTTP (`[admin] plain_http = true`,
    /// no certificate) instead of HTTPS, for a test that writes raw HTTP
    /// to the listener.
    pub fn admin_plain_http(mut self) -> Self {
        self.plain_admin = true;
        self
    }

    /// Sets environment variable `key` to `value` for every run of node
    /// `id`'s `sluice serve` (e.g. `LD_PRELOAD` of a faked clock).
    pub fn node_env(mut self, id: u64, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((id, key.into(), value.into()));
        self
    }

    /// Reuse the data key in `file` (another cluster's `data.key`) as
    /// `sluice init --data-key-from` does.
    pub fn data_key_from(mut self, file: impl Into<PathBuf>) -> Self {
        self.data_key_from = Some(file.into());
        self
    }

    /// Nodes planned (ids `1..=n`). Default 3.
    pub fn nodes(mut self, n: u64) -> Self {
        self.nodes = n;
        self
    }

    /// The first `n` nodes form the cluster with `initial_members`; the
    /// others get `cluster.join` and start only on [`Cluster::start_node`].
    /// Default: all of them.
    pub fn initial(mut self, n: u64) -> Self {
        self.initial = Some(n);
        self
    }

    /// Test timing: the shipped election settings (heartbeat 50 ms,
    /// election timeout 300–400 ms), RPC timeout 1 s.
    pub fn fast_elections(mut self) -> Self {
        let timing = self.timing.get_or_insert_with(RaftTiming::default);
        let shipped = RaftTiming::default();
        timing.heartbeat_interval_ms = shipped.heartbeat_interval_ms;
        timing.election_timeout_min_ms = shipped.election_timeout_min_ms;
        timing.election_timeout_max_ms = shipped.election_timeout_max_ms;
        timing.rpc_timeout_ms = 1000;
        self
    }

    /// Snapshot (and compact the log) every `n` applied entries, keeping no
    /// log behind the snapshot, so a lagging node must catch up by snapshot.
    pub fn snapshot_every(mut self, n: u64) -> Self {
        let timing = self.timing.get_or_insert_with(RaftTiming::default);
        timing.snapshot_every_logs = n;
        timing.logs_to_keep = 0;
        self
    }

    /// Budget of the whole test: every wait of the cluster ends by then.
    pub fn budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// TOML merged into every node's config after `sluice init` wrote it
    /// (tables merge key by key, so `[proxy] breaker_cooldown_ms = 500`
    /// keeps the rest of `[proxy]`). May be called more than once.
    pub fn config_extra(mut self, toml_text: impl Into<String>) -> Self {
        self.extra.push(toml_text.into());
        self
    }

    /// Puts a [`Relay`] between the nodes' Raft sockets, so a test can cut
    /// a node off with [`Cluster::isolate`]. Every node keeps listening on
    /// its planned raft port but advertises its front address on the relay,
    /// and `initial_members` and `join` list front addresses too, so every
    /// node (started now or later) dials its peers through the relay. Applied
    /// before [`ClusterBuilder::config_extra`].
    pub fn with_relay(mut self) -> Self {
        self.relay = true;
        self
    }

    /// Writes the cluster and starts nobody (see [`Cluster::start_node`]).
    pub fn plan_only(mut self) -> Cluster {
        self.start = false;
        self.build()
    }

    /// Writes the cluster, starts every initial member and waits until each
    /// answers `/readyz` with 200.
    pub fn start(mut self) -> Cluster {
        self.start = true;
        self.build()
    }

    fn build(self) -> Cluster {
        let deadline = Deadline::after(self.budget);
        assert!(self.nodes >= 1, "a cluster needs at least one node");
        let initial = self.initial.unwrap_or(self.nodes);
        assert!(
            (1..=self.nodes).contains(&initial),
            "initial({initial}) must be between 1 and nodes({})",
            self.nodes
        );
        let dir = tempfile::Builder::new()
            .prefix("sluice-e2e-")
            .tempdir()
            .expect("creating a temporary directory");
        let out = dir.path().join("cluster");
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).expect("creating the log directory");

        if let Some(file) = &self.data_key_from {
            init::adopt_data_key(&out, file).expect("sluice init --data-key-from failed");
        }
        let plans = free_port_plan(1..=self.nodes, LOCALHOST).expect("picking free ports");
        let plan = InitPlan {
            out: out.clone(),
            cluster_id: None,
            nodes: plans.clone(),
            initial_members: (1..=initial).collect(),
            raft: self.timing,
            admin_names: Vec::new(),
        };
        let generated = init::generate(&plan).expect("sluice init (generate) failed");
        let relay = self.relay.then(|| {
            let real: BTreeMap<u64, SocketAddr> = plans.iter().map(|p| (p.id, p.raft)).collect();
            let relay = Relay::start(&real);
            for config in &generated.configs {
                route_through_relay(config, &real, &relay);
            }
            relay
        });
        for config in &generated.configs {
            if self.plain_admin {
                serve_admin_plain(config);
            }
            for extra in &self.extra {
                merge_into_config(config, extra);
            }
        }
        let nodes = plans
            .iter()
            .zip(&generated.configs)
            .map(|(plan, config)| {
                let node = Node {
                    plan: *plan,
                    env: self
                        .env
                        .iter()
                        .filter(|(id, _, _)| *id == plan.id)
                        .map(|(_, k, v)| (k.clone(), v.clone()))
                        .collect(),
                    config: config.clone(),
                    log: logs.join(format!("node-{}.log", plan.id)),
                    bin: None,
                    process: None,
                    paused: false,
                    runs: 0,
                };
                (plan.id, node)
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            bin: sluice_bin(),
            out,
            logs,
            cluster_id: generated.cluster_id,
            token: generated.admin_token,
            initial: (1..=initial).collect(),
            extra: self.extra,
            plain_admin: self.plain_admin,
            deadline,
            relay,
            dir: Some(dir),
        };
        if self.start {
            cluster.start_all(&cluster.initial.clone());
        }
        cluster
    }
}

#[derive(Debug)]
struct Node {
    plan: NodePlan,
    /// Set for every run ([`ClusterBuilder::node_env`]).
    env: Vec<(String, String)>,
    config: PathBuf,
    log: PathBuf,
    /// Runs this binary instead of the cluster's ([`Cluster::set_binary`]).
    bin: Option<PathBuf>,
    process: Option<Process>,
    paused: bool,
    runs: u32,
}

/// Real `sluice serve` processes forming one cluster.
#[derive(Debug)]
pub struct Cluster {
    // Declared first: children die before the directory goes away.
    nodes: BTreeMap<u64, Node>,
    bin: PathBuf,
    out: PathBuf,
    logs: PathBuf,
    cluster_id: String,
    token: String,
    initial: Vec<u64>,
    /// [`ClusterBuilder::config_extra`]'s TOML, merged into adopted nodes too.
    extra: Vec<String>,
    /// [`ClusterBuilder::admin_plain_http`].
    plain_admin: bool,
    deadline: Deadline,
    /// Set by [`ClusterBuilder::with_relay`]; dropped after `Drop` killed
    /// the nodes, so none sees its peers vanish before it dies.
    relay: Option<Relay>,
    dir: Option<tempfile::TempDir>,
}

/// How a run of `sluice serve` that was expected to exit ended.
#[derive(Debug)]
pub struct Exit {
    /// `None`: still running at the deadline (then killed).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Cluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            nodes: 3,
            initial: None,
            timing: None,
            budget: TEST_BUDGET,
            start: true,
            extra: Vec::new(),
            relay: false,
            data_key_from: None,
            env: Vec::new(),
            plain_admin: false,
        }
    }

    // ----- what was planned -------------------------------------------

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The bootstrap admin token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The test's deadline; every wait of the cluster ends by it.
    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// The temporary directory everything lives in.
    pub fn root(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("directory present until drop")
            .path()
    }

    /// `sluice init`'s output directory.
    pub fn out_dir(&self) -> &Path {
        &self.out
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The ids given `initial_members`.
    pub fn initial_ids(&self) -> &[u64] {
        &self.initial
    }

    pub fn plan(&self, id: u64) -> NodePlan {
        self.node(id).plan
    }

    pub fn plans(&self) -> Vec<NodePlan> {
        self.nodes.values().map(|n| n.plan).collect()
    }

    pub fn config_path(&self, id: u64) -> &Path {
        &self.node(id).config
    }

    pub fn node_dir(&self, id: u64) -> PathBuf {
        init::node_dir(&self.out, id)
    }

    /// The node's `data_dir` (as `sluice init` writes it: `node-<id>/data`).
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.node_dir(id).join("data")
    }

    pub fn admin_url(&self, id: u64) -> String {
        let scheme = if self.plain_admin { "http" } else { "https" };
        format!("{scheme}://{}", self.node(id).plan.admin)
    }

    /// The cluster's CA certificate (PEM): the admin API's HTTPS
    /// certificates are its.
    pub fn ca_cert(&self) -> PathBuf {
        self.out.join(init::CA_CERT_FILE)
    }

    /// A blocking HTTP client trusting the cluster's CA (for the admin API;
    /// the proxy serves plain HTTP here), with a `timeout` per request.
    pub fn http_client(&self, timeout: Duration) -> reqwest::blocking::Client {
        crate::admin::trusting(reqwest::blocking::Client::builder(), &self.ca_cert())
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("building the HTTP client")
    }

    /// Node `id`'s proxy (data plane) base URL, without `/v1`.
    pub fn proxy_url(&self, id: u64) -> String {
        format!("http://{}", self.node(id).plan.proxy)
    }

    // ----- changing the plan ----------------------------------------------

    /// Takes on node `id`, which `sluice init` (the CLI, rerun on
    /// [`Cluster::out_dir`]) created after the cluster was built: its
    /// addresses are read from its `sluice.toml`, and the builder's
    /// [`ClusterBuilder::config_extra`] is merged into it as into the others.
    /// Not with a relay (the new node would dial its peers directly).
    pub fn adopt(&mut self, id: u64) {
        assert!(
            self.relay.is_none(),
            "adopt() does not route a node through the relay"
        );
        assert!(
            !self.nodes.contains_key(&id),
            "node {id} is already planned"
        );
        let config = init::node_config(&self.out, id);
        if self.plain_admin {
            serve_admin_plain(&config);
        }
        for extra in &self.extra {
            merge_into_config(&config, extra);
        }
        let text = std::fs::read_to_string(&config)
            .unwrap_or_else(|e| panic!("reading {}: {e}", config.display()));
        let table: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("parsing {}: {e}", config.display()));
        let listen = |name: &str| -> SocketAddr {
            table["listen"][name]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("{}: no [listen] {name}", config.display()))
        };
        let plan = NodePlan {
            id,
            raft: listen("raft"),
            admin: listen("admin"),
            proxy: listen("proxy"),
        };
        let node = Node {
            plan,
            env: Vec::new(),
            log: self.logs.join(format!("node-{id}.log")),
            config,
            bin: None,
            process: None,
            paused: false,
            runs: 0,
        };
        self.nodes.insert(id, node);
    }

    /// From its next start on, node `id` runs `bin` (an upgrade).
    pub fn set_binary(&mut self, id: u64, bin: impl Into<PathBuf>) {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("node {id} is not planned"))
            .bin = Some(bin.into());
    }

    /// The binary node `id` runs (or will at its next start).
    pub fn binary(&self, id: u64) -> &Path {
        self.node(id).bin.as_deref().unwrap_or(&self.bin)
    }

    /// Lets `edit` change node `id`'s `sluice.toml`; it takes effect at the
    /// node's next start.
    pub fn edit_config(&self, id: u64, edit: impl FnOnce(&mut toml::Table)) {
        edit_config(self.config_path(id), edit);
    }

    // ----- talking to nodes -------------------------------------------

    /// Node `id`'s admin API with the bootstrap token.
    pub fn admin(&self, id: u64) -> Admin {
        Admin::new(
            self.admin_url(id),
            Some(self.token.clone()),
            &self.ca_cert(),
        )
    }

    /// `GET /admin/v1/cluster` on node `id`, if it answers 200.
    pub fn status(&self, id: u64) -> Option<Value> {
        self.admin(id).cluster_status()
    }

    /// Nodes started and neither killed, stopped nor paused.
    pub fn running_ids(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.process.is_some() && !n.paused)
            .map(|(&id, _)| id)
            .collect()
    }

    /// The leader: a running node that says it leads, with a majority of
    /// the running nodes naming it. Waits (at most 15 s) for one.
    pub fn leader(&self) -> u64 {
        self.leader_among(&self.running_ids())
    }

    /// Like [`Cluster::leader`], but the leader must not be `old`.
    pub fn new_leader_other_than(&self, old: u64) -> u64 {
        let ids: Vec<u64> = self
            .running_ids()
            .into_iter()
            .filter(|&id| id != old)
            .collect();
        self.leader_among(&ids)
    }

    fn leader_among(&self, ids: &[u64]) -> u64 {
        let ids = ids.to_vec();
        self.wait_for(
            Duration::from_secs(15),
            format!("a leader among nodes {ids:?}"),
            || {
                let statuses: Vec<(u64, Value)> = ids
                    .iter()
                    .filter_map(|&id| Some((id, self.status(id)?)))
                    .collect();
                statuses.iter().find_map(|(id, status)| {
                    let leads = status["state"]
                        .as_str()
                        .is_some_and(|s| s.eq_ignore_ascii_case("leader"))
                        && status["leader_id"].as_u64() == Some(*id);
                    let followers = statuses
                        .iter()
                        .filter(|(_, s)| s["leader_id"].as_u64() == Some(*id))
                        .count();
                    (leads && followers * 2 > ids.len()).then_some(*id)
                })
            },
        )
    }

    /// A running node other than the leader.
    pub fn follower(&self) -> u64 {
        let leader = self.leader();
        self.running_ids()
            .into_iter()
            .find(|&id| id != leader && self.initial.contains(&id))
            .expect("a running follower")
    }

    /// The role (`voter`, `learner`) node `id` has in `status`'s member list.
    pub fn role_in(status: &Value, id: u64) -> Option<String> {
        status["members"]
            .as_array()?
            .iter()
            .find(|m| m["id"].as_u64() == Some(id))
            .and_then(|m| m["role"].as_str().map(str::to_string))
    }

    /// The member ids listed in `status`, ascending.
    pub fn member_ids(status: &Value) -> Vec<u64> {
        let mut ids: Vec<u64> = status["members"]
            .as_array()
            .map(|ms| ms.iter().filter_map(|m| m["id"].as_u64()).collect())
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    // ----- the network (with a relay) -------------------------------------

    /// The relay between the nodes.
    ///
    /// Panics if the cluster was built without [`ClusterBuilder::with_relay`].
    pub fn relay(&self) -> &Relay {
        self.relay
            .as_ref()
            .expect("this cluster has no relay: build it with Cluster::builder().with_relay()")
    }

    /// Cuts node `id` off: every Raft datagram to or from it is dropped,
    /// both ways, until [`Cluster::heal`]. Its process keeps running and its
    /// admin API still answers. Needs [`ClusterBuilder::with_relay`].
    pub fn isolate(&self, id: u64) {
        self.node(id);
        self.relay().isolate(id);
    }

    /// Reconnects node `id` (see [`Cluster::isolate`]).
    pub fn heal(&self, id: u64) {
        self.node(id);
        self.relay().heal(id);
    }

    /// Reconnects every node (see [`Cluster::isolate`]).
    pub fn heal_all(&self) {
        self.relay().heal_all();
    }

    // ----- writes and replication ---------------------------------------

    /// Creates provider `name` through node `via`, retrying (within 20 s)
    /// while the cluster cannot take writes (no response, 5xx). A 409 after a
    /// retry counts as done: the earlier attempt committed.
    pub fn create_provider(&self, via: u64, name: &str) {
        let admin = self.admin(via);
        let mut attempts = 0;
        let mut last = (0, Value::Null);
        let done = self.deadline.within(Duration::from_secs(20)).poll("", || {
            attempts += 1;
            last = admin.post("/admin/v1/providers", &provider_body(name));
            match last.0 {
                201 => true,
                409 if attempts > 1 => true,
                0 | 500..=599 => false,
                _ => panic!("creating provider {name} through node {via}: unexpected {last:?}"),
            }
        });
        if done.is_err() {
            self.fail(format!(
                "creating provider {name} through node {via}: not acknowledged after {attempts} attempts, last answer {last:?}"
            ));
        }
    }

    /// Waits (at most `budget`) until node `id` has applied every provider in `names`.
    pub fn wait_has_providers(&self, id: u64, names: &[String], budget: Duration) {
        let admin = self.admin(id);
        let mut missing = names.to_vec();
        let ok = self
            .deadline
            .within(budget)
            .poll("", || match admin.provider_names() {
                Some(have) => {
                    missing = names
                        .iter()
                        .filter(|n| !have.contains(n))
                        .cloned()
                        .collect();
                    missing.is_empty()
                }
                None => false,
            });
        if ok.is_err() {
            self.fail(format!(
                "node {id} still lacks {} of {} providers after {budget:?}: {missing:?}",
                missing.len(),
                names.len()
            ));
        }
    }

    // ----- waiting ------------------------------------------------------

    /// Polls `condition` for at most `budget` (capped by the test deadline);
    /// on time-out, panics (and the log tails are printed, see [`Cluster::fail`]).
    pub fn wait_until(
        &self,
        budget: Duration,
        what: impl Into<String>,
        condition: impl FnMut() -> bool,
    ) {
        let what = what.into();
        if let Err(timed_out) = self.deadline.within(budget).poll(what, condition) {
            self.fail(timed_out.to_string());
        }
    }

    /// Polls `produce` until it returns `Some` (see [`Cluster::wait_until`]).
    pub fn wait_for<T>(
        &self,
        budget: Duration,
        what: impl Into<String>,
        mut produce: impl FnMut() -> Option<T>,
    ) -> T {
        let mut found = None;
        self.wait_until(budget, what, || {
            found = produce();
            found.is_some()
        });
        found.expect("set when the wait succeeded")
    }

    /// Waits until node `id` answers `/readyz` with 200; fails at once, with
    /// its log, if its process exits meanwhile.
    pub fn wait_ready(&mut self, id: u64) {
        self.wait_answering(id, "/readyz", Duration::from_secs(30));
    }

    /// Waits until node `id` answers `/healthz` with 200 (see [`Cluster::wait_ready`]).
    pub fn wait_live(&mut self, id: u64) {
        self.wait_answering(id, "/healthz", Duration::from_secs(20));
    }

    fn wait_answering(&mut self, id: u64, path: &str, budget: Duration) {
        let admin = self.admin(id);
        let deadline = self.deadline.within(budget);
        let node = self.nodes.get_mut(&id).expect("planned node");
        let mut exited = None;
        let mut last = (0, Value::Null);
        let result = deadline.poll("", || {
            if let Some(process) = node.process.as_mut() {
                exited = process.try_exit();
            }
            last = admin.get(path);
            exited.is_some() || last.0 == 200
        });
        if let Some(status) = exited {
            self.fail(format!(
                "node {id} exited ({status}) while waiting for {path} to answer 200"
            ));
        }
        if result.is_err() {
            self.fail(format!(
                "node {id}: {path} did not answer 200 within {budget:?}; last answer {last:?}"
            ));
        }
    }

    // ----- processes ----------------------------------------------------

    /// Starts node `id`'s `sluice serve` without waiting for anything.
    pub fn spawn(&mut self, id: u64) {
        let bin = self.binary(id).to_path_buf();
        let node = self
            .nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("node {id} is not planned"));
        assert!(node.process.is_none(), "node {id} is already running");
        node.runs += 1;
        let mut command = Command::new(&bin);
        command
            .arg("serve")
            .arg("--config")
            .arg(&node.config)
            .current_dir(node.config.parent().expect("config in a node dir"))
            .env("RUST_BACKTRACE", "1")
            .env("NO_COLOR", "1")
            .envs(node.env.iter().map(|(k, v)| (k, v)));
        node.process = Some(Process::spawn(
            format!("node {id} (run {})", node.runs),
            command,
            &node.log,
        ));
        node.paused = false;
    }

    /// Starts node `id` (e.g. a planned non-initial node) and waits until its
    /// admin listener answers `/healthz`.
    pub fn start_node(&mut self, id: u64) {
        self.spawn(id);
        self.wait_live(id);
    }

    /// Starts node `id` again (stopping it first if it runs) and waits until
    /// it is ready.
    pub fn restart(&mut self, id: u64) {
        if self.node(id).process.is_some() {
            self.stop(id);
        }
        self.spawn(id);
        self.wait_ready(id);
    }

    /// Starts every node in `ids` (none may be running), then waits until
    /// each is ready: a quorum must be up before any of them can be.
    pub fn start_all(&mut self, ids: &[u64]) {
        for &id in ids {
            self.spawn(id);
        }
        for &id in ids {
            self.wait_ready(id);
        }
    }

    /// SIGKILL node `id` and reap it.
    pub fn kill9(&mut self, id: u64) -> ExitStatus {
        let mut process = self.take_process(id);
        process.kill9()
    }

    /// SIGTERM node `id` and wait (at most 10 s) for it to exit.
    pub fn stop(&mut self, id: u64) -> ExitStatus {
        let mut process = self.take_process(id);
        process.terminate(STOP_GRACE)
    }

    /// SIGSTOP node `id`: it stays in the cluster, silent.
    pub fn pause(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("planned node");
        node.process
            .as_mut()
            .expect("node runs")
            .signal(Signal::SIGSTOP);
        node.paused = true;
    }

    /// SIGCONT node `id`.
    pub fn resume(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("planned node");
        node.process
            .as_mut()
            .expect("node runs")
            .signal(Signal::SIGCONT);
        node.paused = false;
    }

    /// Pid of node `id`'s process, if it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.node(id).process.as_ref().map(Process::pid)
    }

    /// Runs `sluice serve` for node `id` once (it must not be running),
    /// expecting it to exit within `budget`; stdout and stderr are captured
    /// separately. Killed (and `status: None`) if it is still running then.
    pub fn serve_once(&mut self, id: u64, budget: Duration) -> Exit {
        assert!(self.node(id).process.is_none(), "node {id} is running");
        let node = self.nodes.get_mut(&id).expect("planned node");
        node.runs += 1;
        let run = node.runs;
        let config = node.config.clone();
        let bin = node.bin.clone().unwrap_or_else(|| self.bin.clone());
        let stdout_path = self.logs.join(format!("node-{id}.run-{run}.stdout"));
        let stderr_path = self.logs.join(format!("node-{id}.run-{run}.stderr"));
        let stdout = std::fs::File::create(&stdout_path).expect("creating a stdout file");
        let stderr = std::fs::File::create(&stderr_path).expect("creating a stderr file");
        let mut child = Command::new(&bin)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .current_dir(config.parent().expect("config in a node dir"))
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("starting sluice serve");
        let mut status = None;
        let _ = self.deadline.within(budget).poll("", || {
            status = child.try_wait().expect("waiting for sluice serve");
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Exit {
            status,
            stdout: read_log(&stdout_path),
            stderr: read_log(&stderr_path),
        }
    }

    // ----- logs -----------------------------------------------------------

    /// Everything node `id` wrote, over all its runs.
    pub fn log(&self, id: u64) -> String {
        read_log(&self.node(id).log)
    }

    /// The tail of every node's log that has one.
    pub fn log_tails(&self) -> String {
        self.nodes
            .iter()
            .filter(|(_, n)| n.log.exists())
            .map(|(id, n)| format_tail(&format!("node {id}"), &n.log, LOG_TAIL_LINES))
            .collect()
    }

    /// Panics with `message`; the cluster's `Drop` then prints every node's
    /// log tail (as it does for any panic while it lives).
    pub fn fail(&self, message: impl AsRef<str>) -> ! {
        panic!("{}", message.as_ref());
    }

    fn node(&self, id: u64) -> &Node {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("node {id} is not planned"))
    }

    fn take_process(&mut self, id: u64) -> Process {
        let node = self
            .nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("node {id} is not planned"));
        node.paused = false;
        node.process
            .take()
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }
}

/// Rewrites the node config at `path` so that the node dials every peer,
/// and is dialled, through `relay`: `[advertise] raft` is its own front
/// address, and each raft address in `cluster.initial_members` and
/// `cluster.join` is replaced by that member's front. `[listen] raft` stays
/// the real socket (`real`) the relay forwards to.
fn route_through_relay(path: &Path, real: &BTreeMap<u64, SocketAddr>, relay: &Relay) {
    let front_of = |id: u64| toml::Value::String(relay.front(id).to_string());
    let front_of_real = |addr: &str| {
        let id = real
            .iter()
            .find(|(_, real)| real.to_string() == addr)
            .map(|(&id, _)| id)
            .unwrap_or_else(|| panic!("{}: `{addr}` is no planned raft address", path.display()));
        front_of(id)
    };
    edit_config(path, |config| {
        let id = config
            .get("node_id")
            .and_then(toml::Value::as_integer)
            .and_then(|id| u64::try_from(id).ok())
            .unwrap_or_else(|| panic!("{}: no node_id", path.display()));
        let advertise = config
            .entry("advertise")
            .or_insert_with(|| toml::Table::new().into())
            .as_table_mut()
            .unwrap_or_else(|| panic!("{}: [advertise] is not a table", path.display()));
        advertise.insert("raft".into(), front_of(id));
        let Some(cluster) = config
            .get_mut("cluster")
            .and_then(toml::Value::as_table_mut)
        else {
            panic!("{}: no [cluster] table", path.display());
        };
        if let Some(members) = cluster
            .get_mut("initial_members")
            .and_then(toml::Value::as_array_mut)
        {
            for member in members.iter_mut().filter_map(toml::Value::as_table_mut) {
                let member_id = member
                    .get("id")
                    .and_then(toml::Value::as_integer)
                    .and_then(|id| u64::try_from(id).ok())
                    .unwrap_or_else(|| panic!("{}: initial member without id", path.display()));
                member.insert("raft".into(), front_of(member_id));
            }
        }
        if let Some(seeds) = cluster.get_mut("join").and_then(toml::Value::as_array_mut) {
            for seed in seeds.iter_mut() {
                let addr = seed.as_str().unwrap_or_else(|| {
                    panic!("{}: cluster.join holds a non-string", path.display())
                });
                *seed = front_of_real(addr);
            }
        }
    });
}

/// Merges the TOML document `extra` into the config file at `path`: tables
/// merge key by key, any other value replaces the one there.
fn merge_into_config(path: &Path, extra: &str) {
    fn merge(into: &mut toml::Table, from: toml::Table) {
        for (key, value) in from {
            match (into.get_mut(&key), value) {
                (Some(toml::Value::Table(have)), toml::Value::Table(add)) => merge(have, add),
                (_, value) => {
                    into.insert(key, value);
                }
            }
        }
    }
    let extra: toml::Table = extra
        .parse()
        .unwrap_or_else(|e| panic!("config_extra is not TOML ({e}): {extra}"));
    edit_config(path, |config| merge(config, extra));
}

/// Makes the config at `path` serve its admin API over plain HTTP, and
/// list every member's admin URL so.
fn serve_admin_plain(path: &Path) {
    edit_config(path, |config| {
        if let Some(toml::Value::Table(admin)) = config.get_mut("admin") {
            admin.remove("tls_cert");
            admin.remove("tls_key");
            admin.insert("plain_http".into(), toml::Value::Boolean(true));
        }
        let members = config
            .get_mut("cluster")
            .and_then(|c| c.get_mut("initial_members"))
            .and_then(toml::Value::as_array_mut);
        for member in members.into_iter().flatten() {
            if let Some(url) = member.get_mut("admin_url") {
                if let Some(text) = url.as_str() {
                    *url = text.replacen("https://", "http://", 1).into();
                }
            }
        }
    });
}

/// Reads the TOML config file at `path`, lets `edit` change it, writes it back.
fn edit_config(path: &Path, edit: impl FnOnce(&mut toml::Table)) {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut config: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    edit(&mut config);
    std::fs::write(path, config.to_string())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut process) = node.process.take() {
                process.kill9();
            }
        }
        let keep = std::env::var_os("SLUICE_E2E_KEEP").is_some();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
        }
        if let Some(dir) = self.dir.take() {
            if keep {
                eprintln!("SLUICE_E2E_KEEP: leaving {}", dir.keep().display());
            }
        }
    }
}
