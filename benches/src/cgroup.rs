//! CPU caps on processes with the kernel's cgroup cpu controller: the
//! `scale_out` bench gives every Sluice node the same small share of a CPU,
//! so that adding nodes adds capacity even on a 2-core machine.
//!
//! [`CpuCaps::create`] makes `sluice-bench-<pid>` in the cpu controller's
//! hierarchy: cgroup v2 (`cpu.max`) where the unified hierarchy has the cpu
//! controller, else cgroup v1's cpu hierarchy (`cpu.cfs_quota_us`, as on
//! hosts that still mount v1 controllers). It needs root; where neither is
//! available or writable it answers why, and the bench skips. Each
//! [`CpuCaps::cap`] makes a child group with its own quota and moves a
//! process (all its threads) into it. Dropping [`CpuCaps`], on a panic too,
//! moves any process still inside back to the hierarchy's root and removes
//! every group it made.

use crate::host::is_root;
use std::path::{Path, PathBuf};

/// Scheduling period of every cap (the kernel's and Kubernetes' default):
/// a process capped at `c` CPUs runs at most `c × 100 ms` in every 100 ms.
pub const PERIOD_US: u64 = 100_000;

/// Which cgroup interface the caps are written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The unified hierarchy: `cpu.max`, `cpu.stat`'s `throttled_usec`.
    V2,
    /// The v1 cpu hierarchy: `cpu.cfs_quota_us`, `cpu.stat`'s
    /// `throttled_time` (ns).
    V1,
}

/// The groups this bench made (see the module doc).
#[derive(Debug)]
pub struct CpuCaps {
    version: Version,
    /// The hierarchy's mount point (its root group).
    root: PathBuf,
    /// `<root>/sluice-bench-<pid>`.
    parent: PathBuf,
    /// Child groups made so far, by name.
    groups: Vec<(String, PathBuf)>,
}

/// How often a group's processes were held back by their cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttling {
    /// Scheduling periods in which the group ran.
    pub periods: u64,
    /// Of those, periods in which it used its whole quota and waited.
    pub throttled: u64,
    /// Total time it waited, in µs.
    pub throttled_us: u64,
}

impl Throttling {
    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Throttling) -> Throttling {
        Throttling {
            periods: self.periods.saturating_sub(before.periods),
            throttled: self.throttled.saturating_sub(before.throttled),
            throttled_us: self.throttled_us.saturating_sub(before.throttled_us),
        }
    }
}

impl CpuCaps {
    /// Makes this process's parent group, or says why CPU caps are not
    /// available here.
    pub fn create() -> Result<CpuCaps, String> {
        if !is_root() {
            return Err("capping CPU with cgroups needs root".into());
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts")
            .map_err(|e| format!("reading /proc/self/mounts: {e}"))?;
        let (version, root) = cpu_hierarchy(&mounts).ok_or(
            "no cgroup hierarchy with the cpu controller: neither cgroup v2 with `cpu` in \
             cgroup.controllers nor a cgroup v1 `cpu` mount",
        )?;
        if version == Version::V2 {
            // Children of the root get cpu.max only when the root hands the
            // controller down.
            write(&root.join("cgroup.subtree_control"), "+cpu")?;
        }
        let parent = root.join(format!("sluice-bench-{}", std::process::id()));
        std::fs::create_dir(&parent).map_err(|e| format!("creating {parent:?}: {e}"))?;
        let caps = CpuCaps {
            version,
            root,
            parent,
            groups: Vec::new(),
        };
        if version == Version::V2 {
            write(&caps.parent.join("cgroup.subtree_control"), "+cpu")?;
        }
        Ok(caps)
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The parent group's path.
    pub fn path(&self) -> &Path {
        &self.parent
    }

    /// Makes group `name` capped at `cpus` CPUs (a fraction: 0.2 is a fifth
    /// of one) and moves process `pid` into it.
    pub fn cap(&mut self, name: &str, pid: u32, cpus: f64) -> Result<(), String> {
        let quota = (cpus * PERIOD_US as f64).round() as u64;
        // The kernel's minimum quota is 1 ms.
        if quota < 1000 {
            return Err(format!(
                "a cap of {cpus} CPU is below the kernel's 1 ms a period"
            ));
        }
        let group = self.parent.join(name);
        std::fs::create_dir(&group).map_err(|e| format!("creating {group:?}: {e}"))?;
        self.groups.push((name.to_string(), group.clone()));
        match self.version {
            Version::V2 => write(&group.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?,
            Version::V1 => {
                write(&group.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                write(&group.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
        write(&group.join("cgroup.procs"), &pid.to_string())
    }

    /// Group `name`'s throttling counters so far (`None`: no such group or
    /// unreadable).
    pub fn throttling(&self, name: &str) -> Option<Throttling> {
        let (_, group) = self.groups.iter().find(|(n, _)| n == name)?;
        let stat = std::fs::read_to_string(group.join("cpu.stat")).ok()?;
        Some(parse_cpu_stat(&stat, self.version))
    }
}

impl Drop for CpuCaps {
    fn drop(&mut self) {
        let root_procs = self.root.join("cgroup.procs");
        for (_, group) in self.groups.iter().rev() {
            let procs = std::fs::read_to_string(group.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace() {
                // A process that exited meanwhile is no error.
                let _ = std::fs::write(&root_procs, pid);
            }
            if let Err(e) = std::fs::remove_dir(group) {
                eprintln!("cannot remove cgroup {group:?}: {e}");
            }
        }
        if let Err(e) = std::fs::remove_dir(&self.parent) {
            eprintln!("cannot remove cgroup {:?}: {e}", self.parent);
        }
    }
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("writing {value:?} to {path:?}: {e}"))
}

/// The hierarchy to use, from `/proc/self/mounts`: cgroup v2 if its root
/// offers the cpu controller, else a cgroup v1 mount with the `cpu` option.
fn cpu_hierarchy(mounts: &str) -> Option<(Version, PathBuf)> {
    let entries: Vec<(&str, &str, &str)> = mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, dir, kind, options) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            Some((dir, kind, options))
        })
        .collect();
    let v2 = entries.iter().find_map(|(dir, kind, _)| {
        let root = PathBuf::from(dir);
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok()?;
        (*kind == "cgroup2" && controllers.split_whitespace().any(|c| c == "cpu"))
            .then_some((Version::V2, root))
    });
    v2.or_else(|| {
        entries.iter().find_map(|(dir, kind, options)| {
            (*kind == "cgroup" && options.split(',').any(|o| o == "cpu"))
                .then(|| (Version::V1, PathBuf::from(dir)))
        })
    })
}

fn parse_cpu_stat(stat: &str, version: Version) -> Throttling {
    let value = |name: &str| {
        stat.lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    Throttling {
        periods: value("nr_periods"),
        throttled: value("nr_throttled"),
        throttled_us: match version {
            Version::V2 => value("throttled_usec"),
            Version::V1 => value("throttled_time") / 1000,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_cpu_mount_is_found_by_its_option() {
        let mounts = "cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n";
        assert_eq!(
            cpu_hierarchy(mounts),
            Some((Version::V1, PathBuf::from("/sys/fs/cgroup/cpu")))
        );
        assert_eq!(cpu_hierarchy("proc /proc proc rw 0 0\n"), None);
    }

    #[test]
    fn throttling_is_read_in_both_formats() {
        let v1 = "nr_periods 21\nnr_throttled 20\nthrottled_time 1021545989\n";
        assert_eq!(
            parse_cpu_stat(v1, Version::V1),
            Throttling {
                periods: 21,
                throttled: 20,
                throttled_us: 1_021_545
            }
        );
        let v2 = "usage_usec 5\nnr_periods 3\nnr_throttled 1\nthrottled_usec 700\n";
        let now = parse_cpu_stat(v2, Version::V2);
        assert_eq!(now.throttled_us, 700);
        let before = Throttling {
            periods: 1,
            throttled: 1,
            throttled_us: 100,
        };
        assert_eq!(now.since(&before).periods, 2);
        assert_eq!(now.since(&before).throttled, 0);
    }
}
