//! What the real-process benches read of the machine from `/proc`: the CPU
//! time of a process and of the whole machine, in clock ticks, and whether
//! the bench runs as root (to install nginx, to cap CPU with cgroups).

use sluice_e2e::process::descendants_of;
use std::time::Instant;

/// Clock ticks per second of `/proc`'s CPU times (`USER_HZ`: 100 on Linux).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU of `/proc/<pid>` (`self` for this process), in clock
/// ticks (0 if unreadable).
pub fn cpu_ticks(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may contain spaces): state is
    // field 3, utime 14, stime 15.
    let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

/// CPU used over one run, in percent of one core (200% is a whole 2-core
/// machine): by each group of processes, by this process (the load
/// generator), and by everything else the machine ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuShares {
    /// In the order of the groups given to [`measure_cpu`].
    pub groups: Vec<f64>,
    pub own: f64,
    /// The machine's busy time minus the groups and this process: other
    /// processes, and time the hypervisor gave to other guests (the sign
    /// of a disturbed run on a shared machine).
    pub other: f64,
}

/// Runs `run` and reads, around it, the CPU of each group of `groups`
/// (every pid with the descendants it has when the run starts, e.g.
/// nginx's workers), of this process and of the machine.
pub fn measure_cpu<R>(groups: &[Vec<u32>], run: impl FnOnce() -> R) -> (R, CpuShares) {
    let trees: Vec<Vec<String>> = groups
        .iter()
        .map(|pids| {
            pids.iter()
                .flat_map(|pid| std::iter::once(*pid).chain(descendants_of(*pid)))
                .map(|pid| pid.to_string())
                .collect()
        })
        .collect();
    let read = || -> (Vec<u64>, u64, u64) {
        let groups = trees
            .iter()
            .map(|tree| tree.iter().map(|pid| cpu_ticks(pid)).sum())
            .collect();
        (groups, cpu_ticks("self"), machine_busy_ticks())
    };
    let before = read();
    let started = Instant::now();
    let result = run();
    let wall = started.elapsed().as_secs_f64();
    let after = read();
    let share = |after: u64, before: u64| percent_of_core(after.saturating_sub(before), wall);
    let groups: Vec<f64> = after
        .0
        .iter()
        .zip(&before.0)
        .map(|(a, b)| share(*a, *b))
        .collect();
    let own = share(after.1, before.1);
    let machine = share(after.2, before.2);
    let other = (machine - own - groups.iter().sum::<f64>()).max(0.0);
    (result, CpuShares { groups, own, other })
}

/// `ticks` of CPU over `wall` seconds, in percent of one core.
pub fn percent_of_core(ticks: u64, wall: f64) -> f64 {
    if wall > 0.0 {
        ticks as f64 / TICKS_PER_SECOND / wall * 100.0
    } else {
        0.0
    }
}

/// Busy time of the whole machine (`/proc/stat`'s `cpu` line: user, nice,
/// system and steal), in clock ticks (0 if unreadable). Interrupt time is
/// left out: it is mostly the benches' own loopback traffic, which no
/// process's counters include.
pub fn machine_busy_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(cpu) = stat.lines().find_map(|l| l.strip_prefix("cpu ")) else {
        return 0;
    };
    let fields: Vec<u64> = cpu
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    [0, 1, 2, 7]
        .iter()
        .map(|&i| fields.get(i).copied().unwrap_or(0))
        .sum()
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`; 0 if
/// unreadable).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Resident memory of `pid` and every process below it (nginx's master and
/// workers), in KiB.
pub fn tree_rss_kib(pid: u32) -> u64 {
    std::iter::once(pid)
        .chain(descendants_of(pid))
        .map(rss_kib)
        .sum()
}

/// Whether this process runs as root (uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().next().map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// `/proc/loadavg`'s three averages, or `unknown`: how busy the shared
/// machine was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_some_resident_memory() {
        let own = rss_kib(std::process::id());
        assert!(own > 100, "{own} KiB");
        assert!(tree_rss_kib(std::process::id()) >= own);
    }

    #[test]
    fn this_process_has_used_some_cpu_and_the_machine_more() {
        // Spin until the kernel has charged this process a tick (bounded).
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut spins = 0u64;
        while cpu_ticks("self") == 0 && std::time::Instant::now() < until {
            spins = spins.wrapping_add(1);
        }
        let ours = cpu_ticks("self");
        assert!(ours > 0, "no tick charged after {spins} spins");
        assert!(machine_busy_ticks() >= ours);
        assert_eq!(cpu_ticks("0"), 0, "pid 0 has no /proc entry");
    }
}
