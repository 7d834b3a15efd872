//! Test support: the real ledger applied in process, for several nodes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sluice_core::quota::{
    Grant, Ledger, Limit, OnNoQuorum, QuotaPolicy, Return, Scope, Unit, Want,
};

use crate::node::Reply;
use crate::{LedgerClient, QuotaConfig, Quotas, Unreachable};

/// The real ledger, applied in process for one node at a shared clock: what
/// a Raft write of the same command does on every node.
pub(crate) struct InProcess {
    pub ledger: Arc<Mutex<Ledger>>,
    pub node: u64,
    pub clock: Arc<AtomicU64>,
    pub cut_off: AtomicBool,
}

impl InProcess {
    /// This node's copy of the replicated ledger: what it has applied.
    pub fn view(&self) -> Arc<Ledger> {
        Arc::new(self.ledger.lock().unwrap().clone())
    }

    /// One lease round of `quotas` (this node's) at `now`.
    pub async fn tick(&self, quotas: &Quotas, now: u64) -> crate::Round {
        let view = self.view();
        quotas.tick(self, &view, now).await
    }

    /// Applies `apply` to the ledger at the shared clock, unless cut off.
    fn apply<T>(
        &self,
        apply: impl FnOnce(&mut Ledger, u64) -> Result<T, sluice_core::ApplyError>,
    ) -> Result<T, Unreachable> {
        if self.cut_off.load(Ordering::SeqCst) {
            return Err(Unreachable("cut off".into()));
        }
        let now = self.clock.load(Ordering::SeqCst);
        let mut ledger = self.ledger.lock().unwrap();
        apply(&mut ledger, now).map_err(|e| Unreachable(e.to_string()))
    }
}

impl LedgerClient for InProcess {
    fn grant(&self, wants: Vec<Want>, ttl_ms: u64) -> Reply<'_, Vec<Grant>> {
        Box::pin(async move { self.apply(|l, now| l.grant(self.node, &wants, ttl_ms, now)) })
    }

    fn give_back(&self, batch: u64, returns: Vec<Return>) -> Reply<'_, ()> {
        Box::pin(async move { self.apply(|l, now| l.give_back(self.node, batch, &returns, now)) })
    }
}

pub(crate) fn scope() -> Scope {
    Scope::Key { key_id: "k".into() }
}

pub(crate) struct Cluster {
    pub nodes: Vec<(Quotas, InProcess)>,
    pub clock: Arc<AtomicU64>,
}

pub(crate) fn cluster(nodes: u64, rpm: u64) -> Cluster {
    cluster_with(
        nodes,
        QuotaPolicy {
            limits: vec![Limit::per_minute(Unit::Requests, rpm)],
            on_no_quorum: OnNoQuorum::Deny,
            ..QuotaPolicy::default()
        },
    )
}

/// `nodes` nodes sharing one in-process ledger where `scope()` has `policy`.
pub(crate) fn cluster_with(nodes: u64, policy: QuotaPolicy) -> Cluster {
    let clock = Arc::new(AtomicU64::new(0));
    let mut ledger = Ledger::default();
    ledger.set_policy(&scope(), Some(&policy), 0).unwrap();
    let ledger = Arc::new(Mutex::new(ledger));
    Cluster {
        nodes: (1..=nodes)
            .map(|node| {
                (
                    Quotas::new(QuotaConfig {
                        node_id: node,
                        ..QuotaConfig::default()
                    }),
                    InProcess {
                        ledger: Arc::clone(&ledger),
                        node,
                        clock: Arc::clone(&clock),
                        cut_off: AtomicBool::new(false),
                    },
                )
            })
            .collect(),
        clock,
    }
}
