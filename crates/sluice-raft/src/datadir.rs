//! The data dir: refuse anything that is not this node's own, before touching it.
//!
//! A data dir holds `sluice-node.json` (which cluster and node it belongs to,
//! and the format version) and `db/` (the sled database). A new node gets an
//! empty or missing dir. A dir that is not empty but has no identity file, has
//! an identity file that does not parse, belongs to another cluster or node,
//! was written by a newer format, or is open in another process (sled holds
//! an exclusive `flock` on `db/db` while it runs) is refused with a message
//! saying which; in every refusal nothing in the dir has been written.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Name of the identity file.
pub const IDENTITY_FILE: &str = "sluice-node.json";
/// Name of the durability watermark file.
pub const WATERMARK_FILE: &str = "watermark.json";
/// Data dir format this build writes and reads.
pub const FORMAT: u32 = 1;

/// The highest log index this node knew to be committed and on its own disk.
/// A store that later accounts for less has lost data (sled "recovers" a
/// damaged file by silently dropping what follows the damage).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Watermark {
    durable_committed_index: u64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Identity {
    format: u32,
    cluster_id: String,
    node_id: u64,
}

/// A data dir checked to be this node's (or new).
#[derive(Debug)]
pub struct DataDir {
    pub root: PathBuf,
    /// True when the dir was empty or missing: nothing was here before.
    pub fresh: bool,
}

/// Why a data dir was refused.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub message: String,
}

fn refuse(message: impl Into<String>) -> Refused {
    Refused {
        message: message.into(),
    }
}

impl DataDir {
    /// Checks `root` without writing anything.
    pub fn check(root: &Path, cluster_id: &str, node_id: u64) -> Result<DataDir, Refused> {
        let fresh = DataDir {
            root: root.to_path_buf(),
            fresh: true,
        };
        let entries = match std::fs::read_dir(root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(fresh),
            Err(e) => return Err(refuse(format!("cannot read it: {e}"))),
        };
        if entries.count() == 0 {
            return Ok(fresh);
        }
        let identity_path = root.join(IDENTITY_FILE);
        let text = match std::fs::read(&identity_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(refuse(format!(
                    "it is not empty and has no {IDENTITY_FILE}, so it is not a Sluice data dir \
                     (or its initialisation never finished); refusing to touch it. Point data_dir \
                     at a new directory, or remove this one if it holds nothing you need"
                )))
            }
            Err(e) => return Err(refuse(format!("cannot read {IDENTITY_FILE}: {e}"))),
        };
        let identity: Identity = serde_json::from_slice(&text).map_err(|e| {
            refuse(format!(
                "{IDENTITY_FILE} is corrupt ({e}); refusing to touch the data dir"
            ))
        })?;
        if identity.format > FORMAT {
            return Err(refuse(format!(
                "it was written by a newer Sluice (data format {}, this build reads up to {FORMAT})",
                identity.format
            )));
        }
        if identity.cluster_id != cluster_id {
            return Err(refuse(format!(
                "it belongs to cluster {:?}, but this node is configured for cluster {cluster_id:?}",
                identity.cluster_id
            )));
        }
        if identity.node_id != node_id {
            return Err(refuse(format!(
                "it belongs to node {}, but this node is configured as node {node_id}",
                identity.node_id
            )));
        }
        if !root.join("db").join("conf").is_file() || !root.join("db").join("db").is_file() {
            return Err(refuse(
                "its store (db/) is missing or incomplete; refusing to start on a data dir that lost its data",
            ));
        }
        check_not_in_use(&root.join("db").join("db"))?;
        Ok(DataDir {
            root: root.to_path_buf(),
            fresh: false,
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.join("db")
    }

    /// The durability watermark, if one was written.
    pub fn watermark(&self) -> Result<Option<u64>, Refused> {
        match std::fs::read(self.root.join(WATERMARK_FILE)) {
            Ok(bytes) => serde_json::from_slice::<Watermark>(&bytes)
                .map(|w| Some(w.durable_committed_index))
                .map_err(|e| {
                    refuse(format!(
                        "{WATERMARK_FILE} is corrupt ({e}); refusing to touch the data dir"
                    ))
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(refuse(format!("cannot read {WATERMARK_FILE}: {e}"))),
        }
    }

    /// Records the durability watermark (atomically).
    pub fn write_watermark(&self, durable_committed_index: u64) -> std::io::Result<()> {
        write_atomically(
            &self.root,
            WATERMARK_FILE,
            &Watermark {
                durable_committed_index,
            },
        )
    }

    /// Opens a throw-away copy of the store and checks it: every log entry
    /// and the snapshot decode, the log has no hole, and it reaches the
    /// watermark. sled repairs damage by dropping data when it opens a store,
    /// so the check runs on a copy: a refused data dir stays byte for byte
    /// as it was.
    pub fn verify_store(&self) -> Result<(), Refused> {
        let watermark = self.watermark()?;
        let copy = tempfile::Builder::new()
            .prefix("sluice-verify-")
            .tempdir()
            .map_err(|e| {
                refuse(format!(
                    "cannot make a scratch dir to verify the store: {e}"
                ))
            })?;
        copy_dir(&self.db_path(), copy.path())
            .map_err(|e| refuse(format!("cannot read the store to verify it: {e}")))?;
        let path = copy.path().to_path_buf();
        let conf_before = std::fs::read(path.join("conf")).ok();
        let opened = std::panic::catch_unwind(move || sled::Config::new().path(path).open())
            .map_err(|_| refuse("the store is corrupt (opening it panicked)"))?
            .map_err(|e| refuse(format!("the store is corrupt: {e}")))?;
        // sled rewrites a configuration file it cannot read instead of failing.
        if std::fs::read(copy.path().join("conf")).ok() != conf_before {
            return Err(refuse(
                "the store's configuration file (db/conf) is damaged; sled would silently replace it",
            ));
        }
        let log = crate::log_store::LogStore::open(&opened)
            .map_err(|e| refuse(format!("the store is corrupt: {e}")))?;
        let last_log = log
            .verify()
            .map_err(|e| refuse(format!("the store is corrupt: {e}")))?;
        let sm = crate::state_machine::StateMachine::open(&opened)
            .map_err(|e| refuse(format!("the store's snapshot is corrupt: {e}")))?;
        let covered = last_log.max(sm.snapshot_index());
        if let Some(watermark) = watermark {
            if covered.is_none_or(|c| c < watermark) {
                return Err(refuse(format!(
                    "the store holds the log only up to {covered:?}, but this node had committed \
                     index {watermark} to disk: its files are damaged or were replaced"
                )));
            }
        }
        Ok(())
    }

    /// Records the identity of a fresh dir, after its store was created
    /// (atomically: written to a temporary file, synced, then renamed).
    pub fn write_identity(&self, cluster_id: &str, node_id: u64) -> std::io::Result<()> {
        let identity = Identity {
            format: FORMAT,
            cluster_id: cluster_id.to_string(),
            node_id,
        };
        write_atomically(&self.root, IDENTITY_FILE, &identity)
    }
}

/// The refusal of a store that another process has open.
pub const IN_USE: &str = "it is in use by another process (its store db/db is locked): another \
     `sluice serve` (perhaps under `sluice dev`) is running on this data dir; stop it first, \
     or point this node at its own data_dir";

/// Refuses the store whose database file `db_file` another process holds
/// (sled's exclusive `flock`). Takes the lock for a moment and releases it;
/// writes nothing.
fn check_not_in_use(db_file: &Path) -> Result<(), Refused> {
    use nix::errno::Errno;
    use nix::fcntl::{Flock, FlockArg};
    let file = std::fs::File::open(db_file)
        .map_err(|e| refuse(format!("cannot open db/db to check it is not in use: {e}")))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_released_on_drop) => Ok(()),
        Err((_, Errno::EWOULDBLOCK)) => Err(refuse(IN_USE)),
        Err((_, errno)) => Err(refuse(format!(
            "cannot check that db/db is not in use by another process: {errno}"
        ))),
    }
}

/// Writes `value` as JSON to `dir/name` through a synced temporary file and a
/// rename, so a crash leaves the old file or the new one, never half of one.
fn write_atomically<T: Serialize>(dir: &Path, name: &str, value: &T) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh_initialised(dir: &Path) {
        std::fs::create_dir_all(dir.join("db")).unwrap();
        std::fs::write(dir.join("db/conf"), b"x").unwrap();
        std::fs::write(dir.join("db/db"), b"x").unwrap();
        let d = DataDir {
            root: dir.to_path_buf(),
            fresh: true,
        };
        d.write_identity("c1", 1).unwrap();
    }

    #[test]
    fn missing_or_empty_dir_is_fresh() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(
            DataDir::check(&tmp.path().join("nope"), "c1", 1)
                .unwrap()
                .fresh
        );
        assert!(DataDir::check(tmp.path(), "c1", 1).unwrap().fresh);
    }

    #[test]
    fn own_dir_is_accepted_and_foreign_ones_refused() {
        let tmp = tempfile::tempdir().unwrap();
        fresh_initialised(tmp.path());
        assert!(!DataDir::check(tmp.path(), "c1", 1).unwrap().fresh);
        let err = DataDir::check(tmp.path(), "c2", 1).unwrap_err().message;
        assert!(err.contains("belongs to cluster \"c1\""), "{err}");
        let err = DataDir::check(tmp.path(), "c1", 2).unwrap_err().message;
        assert!(err.contains("belongs to node 1"), "{err}");
    }

    #[test]
    fn unknown_contents_and_corrupt_identity_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("notes.txt"), b"hello").unwrap();
        let err = DataDir::check(tmp.path(), "c1", 1).unwrap_err().message;
        assert!(err.contains("not a Sluice data dir"), "{err}");
        std::fs::write(tmp.path().join(IDENTITY_FILE), b"{garbage").unwrap();
        let err = DataDir::check(tmp.path(), "c1", 1).unwrap_err().message;
        assert!(err.contains("corrupt"), "{err}");
    }

    #[test]
    fn a_store_another_process_holds_is_refused_as_in_use_not_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        fresh_initialised(tmp.path());
        // flock is per open file: this handle stands for the other process.
        let held = nix::fcntl::Flock::lock(
            std::fs::File::open(tmp.path().join("db/db")).unwrap(),
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        )
        .unwrap();
        let err = DataDir::check(tmp.path(), "c1", 1).unwrap_err().message;
        assert!(err.contains("in use by another process"), "{err}");
        assert!(!err.contains("corrupt"), "{err}");
        drop(held);
        assert!(!DataDir::check(tmp.path(), "c1", 1).unwrap().fresh);
    }

    #[test]
    fn lost_store_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        fresh_initialised(tmp.path());
        std::fs::remove_file(tmp.path().join("db/db")).unwrap();
        let err = DataDir::check(tmp.path(), "c1", 1).unwrap_err().message;
        assert!(err.contains("missing"), "{err}");
    }
}
