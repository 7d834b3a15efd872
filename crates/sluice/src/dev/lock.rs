//! One `sluice dev` per directory: `DIR/dev.lock`, held (`flock`) for as
//! long as `sluice dev` runs, with its pid inside for the refusal message.
//!
//! A second `sluice dev` on the same directory would find the first one's
//! nodes answering on its ports, take them for its own, point the demo
//! provider at its own mock and then die on "address in use", leaving the
//! first cluster's provider pointing at nothing. It is refused before it
//! touches anything. The lock dies with the process (even on SIGKILL), so
//! a stale file never blocks the next run.

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// The lock file, in the dev directory.
pub const LOCK_FILE: &str = "dev.lock";

/// The held lock; released when dropped (or when the process ends).
pub struct DevLock {
    _file: Flock<fs::File>,
}

impl DevLock {
    /// Takes the lock of `dir` (created, mode 0700, if missing), or says
    /// which process holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<DevLock> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let path = dir.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(file) => file,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let holder = match pid.trim() {
                    "" => "another `sluice dev`".to_string(),
                    pid => format!("another `sluice dev` (pid {pid})"),
                };
                bail!(
                    "{holder} is already running in {}: stop it first (Ctrl-C in its terminal), \
                     or give this one another --data-dir",
                    dir.display()
                );
            }
            Err((_, errno)) => {
                return Err(errno).with_context(|| format!("locking {}", path.display()))
            }
        };
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(DevLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_naming_the_first_until_it_lets_go() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("dev");
        let first = DevLock::acquire(&dir).expect("first");
        let refused = DevLock::acquire(&dir).err().expect("second is refused");
        let message = format!("{refused:#}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("already running"), "{message}");
        drop(first);
        DevLock::acquire(&dir).expect("free again once the first is gone");
    }
}
