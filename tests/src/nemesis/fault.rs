//! The nemeses: what each one breaks, and the [`Undo`] that heals it.
//!
//! Processes: kill -9 (the leader, a follower, every node at once) and
//! SIGSTOP (longer than the election timeout). Network, through the
//! cluster's UDP relay: a node cut off, the leader cut off, a bridge
//! partition, delay with jitter and loss on every link (the kernel here has
//! no `sch_netem`, so the relay plays `tc netem`). Time: one node's wall
//! clock jumps (libfaketime). Membership: a learner is added and promoted,
//! and a voter removed, under load.

use super::run::Run;
use crate::relay::Impairment;
use std::time::Duration;

/// One fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Nemesis {
    KillLeader,
    KillFollower,
    /// kill -9 of every member at once, then all restarted.
    CrashAll,
    /// SIGSTOP of the leader for the phase's hold.
    PauseLeader,
    PauseFollower,
    /// A follower cut off from every peer.
    IsolateFollower,
    /// The leader cut off from every peer.
    IsolateLeader,
    /// Two majorities sharing one node (needs 5 members): `[a b c] [c d e]`.
    Bridge,
    /// Delay ± jitter and loss on every member's link.
    Impair {
        delay: Duration,
        jitter: Duration,
        loss: f64,
    },
    /// The wall clock of a node in `role` (every node runs under a faked
    /// clock) jumps by `offset_s`, and back when healed. Skipped, visibly,
    /// without libfaketime.
    ClockJump {
        offset_s: i64,
        role: Role,
    },
    /// A spare node joins as a learner, is promoted, and a voter (a
    /// follower) is removed and stopped. Not undone.
    Churn,
}

/// Which role a node should have when a nemesis strikes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
}

/// How to heal what a nemesis did.
#[derive(Debug)]
pub enum Undo {
    HealNetwork,
    /// Node `id`'s clock back to true time.
    ResetClock(u64),
    Resume(u64),
    Restart(u64),
    /// Start every one of them, then wait until each is ready.
    StartAll(Vec<u64>),
    Nothing,
}

impl Undo {
    /// Healing order: network, clocks and pauses before restarts.
    pub fn order(&self) -> u8 {
        match self {
            Undo::HealNetwork | Undo::ResetClock(_) => 0,
            Undo::Resume(_) => 1,
            Undo::Restart(_) | Undo::StartAll(_) => 2,
            Undo::Nothing => 3,
        }
    }
}

impl Run {
    /// Injects `nemesis`; returns what was done, for the table, and how to undo it.
    pub fn inject(&mut self, nemesis: &Nemesis) -> (String, Undo) {
        match nemesis {
            Nemesis::KillLeader => {
                let id = self.leader();
                self.cluster.kill9(id);
                (format!("kill -9 leader (node {id})"), Undo::Restart(id))
            }
            Nemesis::KillFollower => {
                let id = self.follower(&[]);
                self.cluster.kill9(id);
                (format!("kill -9 follower (node {id})"), Undo::Restart(id))
            }
            Nemesis::CrashAll => {
                let ids = self.running_members();
                for &id in &ids {
                    self.cluster.kill9(id);
                }
                (format!("kill -9 all (nodes {ids:?})"), Undo::StartAll(ids))
            }
            Nemesis::PauseLeader => {
                let id = self.leader();
                self.cluster.pause(id);
                (format!("SIGSTOP leader (node {id})"), Undo::Resume(id))
            }
            Nemesis::PauseFollower => {
                let id = self.follower(&[]);
                self.cluster.pause(id);
                (format!("SIGSTOP follower (node {id})"), Undo::Resume(id))
            }
            Nemesis::IsolateFollower => {
                let id = self.follower(&[]);
                self.cluster.isolate(id);
                (format!("partition: node {id} cut off"), Undo::HealNetwork)
            }
            Nemesis::IsolateLeader => {
                let id = self.leader();
                self.cluster.isolate(id);
                (
                    format!("partition: leader (node {id}) cut off"),
                    Undo::HealNetwork,
                )
            }
            Nemesis::Bridge => {
                let m = self.members.clone();
                assert!(m.len() >= 5, "a bridge partition needs 5 members: {m:?}");
                let (left, right) = (&m[..3], &m[2..5]);
                self.cluster.relay().partition(&[left, right]);
                (
                    format!(
                        "bridge partition {left:?} / {right:?} (node {} in both)",
                        m[2]
                    ),
                    Undo::HealNetwork,
                )
            }
            Nemesis::Impair {
                delay,
                jitter,
                loss,
            } => {
                let impairment = Impairment {
                    delay: *delay,
                    jitter: *jitter,
                    loss: *loss,
                };
                for &id in &self.members {
                    self.cluster.relay().impair(id, impairment);
                }
                (
                    format!(
                        "delay {} ± {} ms, loss {:.0}% on every link",
                        delay.as_millis(),
                        jitter.as_millis(),
                        loss * 100.0
                    ),
                    Undo::HealNetwork,
                )
            }
            Nemesis::ClockJump { offset_s, role } => self.jump_clock(*offset_s, *role),
            Nemesis::Churn => self.churn(),
        }
    }

    pub fn heal(&mut self, undo: Undo) {
        match undo {
            Undo::HealNetwork => self.cluster.heal_all(),
            Undo::ResetClock(id) => self.clocks[&id].set_offset_s(0),
            Undo::Resume(id) => self.cluster.resume(id),
            Undo::Restart(id) => self.cluster.restart(id),
            Undo::StartAll(ids) => self.cluster.start_all(&ids),
            Undo::Nothing => {}
        }
    }

    fn jump_clock(&mut self, offset_s: i64, role: Role) -> (String, Undo) {
        if self.clocks.is_empty() {
            return (
                format!("clock jump {offset_s:+} s SKIPPED: libfaketime is not installed"),
                Undo::Nothing,
            );
        }
        let (id, name) = match role {
            Role::Leader => (self.leader(), "leader"),
            Role::Follower => (self.follower(&[]), "follower"),
        };
        self.clocks[&id].set_offset_s(offset_s);
        (
            format!("clock of {name} (node {id}) jumps {offset_s:+} s, then back"),
            Undo::ResetClock(id),
        )
    }

    fn churn(&mut self) -> (String, Undo) {
        let Some(&new) = self.spares.first() else {
            self.cluster
                .fail("membership churn needs a spare node (Plan::spares)");
        };
        self.spares.remove(0);
        // Its config has `cluster.join`: it asks to be added as a learner.
        self.cluster.start_node(new);
        let leader = self.leader();
        self.cluster.wait_until(
            Duration::from_secs(30),
            format!("node {new} to be a learner"),
            || {
                self.cluster
                    .status(leader)
                    .is_some_and(|s| crate::Cluster::role_in(&s, new).as_deref() == Some("learner"))
            },
        );
        self.membership_call("POST", &format!("/admin/v1/cluster/voters/{new}"), |s| {
            crate::Cluster::role_in(s, new).as_deref() == Some("voter")
        });
        let removed = self.follower(&[new]);
        self.membership_call(
            "DELETE",
            &format!("/admin/v1/cluster/members/{removed}"),
            |s| !crate::Cluster::member_ids(s).contains(&removed),
        );
        self.members.retain(|&id| id != removed);
        self.members.push(new);
        self.shared.set_targets(self.members.clone());
        // SIGKILL, not SIGTERM: a removed node cannot reach a leader to
        // return its leases and flush its usage, and waits out those
        // time-outs (over 10 s) before it exits. How it dies does not
        // matter to the checks: it is no member any more.
        self.cluster.kill9(removed);
        (
            format!("churn: node {new} added and promoted, node {removed} removed"),
            Undo::Nothing,
        )
    }

    /// A membership change, through the members in turn, until one
    /// answers 200 or the leader's status shows it `done` (an earlier
    /// attempt with no answer may have taken effect); at most 30 s.
    fn membership_call(&self, method: &str, path: &str, done: impl Fn(&serde_json::Value) -> bool) {
        let mut attempt = 0usize;
        let mut last = String::new();
        self.cluster
            .wait_until(Duration::from_secs(30), format!("{method} {path}"), || {
                if attempt > 0 && self.cluster.status(self.leader()).is_some_and(|s| done(&s)) {
                    return true;
                }
                let node = self.members[attempt % self.members.len()];
                attempt += 1;
                let url = format!("{}{path}", self.cluster.admin_url(node));
                let request = match method {
                    "POST" => self.http().post(url),
                    _ => self.http().delete(url),
                };
                match request.bearer_auth(self.cluster.token()).send() {
                    Ok(r) if r.status().is_success() => true,
                    Ok(r) => {
                        last = format!("{} {}", r.status(), r.text().unwrap_or_default());
                        eprintln!("NEMESIS {method} {path} via node {node}: {last}");
                        false
                    }
                    Err(e) => {
                        last = e.to_string();
                        false
                    }
                }
            });
    }
}
