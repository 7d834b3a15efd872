//! `sluice cluster snapshot …`: back the configuration up to a file, restore
//! it, and re-seal a file's provider credentials for another data key.
//!
//! `export` checks the file it received (framing, version, checksum) before
//! writing it, and writes it atomically (a temporary file in the same
//! directory, flushed, then renamed), mode 0600: it holds key and token
//! hashes and sealed credentials. `restore` checks the file the same way
//! before sending it, so a bad file is refused with nothing sent.
//! `reseal` runs offline: it needs both data key files and no cluster.

use super::http::{v1_path as path, AdminClient};
use super::output::{print_fields, Output};
use anyhow::{bail, Context};
use rand::RngCore;
use serde::Serialize;
use sluice_admin::backup::RestoreReport;
use sluice_core::backup::Backup;
use sluice_core::DataKey;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Write the cluster's configuration (providers, routes, keys, admin
    /// tokens, quota policies) to a checksummed backup file.
    Export {
        /// The file to write (replaced atomically if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Restore a backup file into the cluster through the Raft log.
    Restore {
        /// The backup file.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// Replace a cluster that already holds configuration.
        #[arg(long)]
        force: bool,
    },
    /// Re-seal a backup's provider credentials from one data key to another
    /// (offline: reads both key files, calls no cluster).
    // Offline, so the `cluster` group's --admin-url and --admin-token do
    // not belong in its help: an argument of the same id here, hidden,
    // stops clap from handing the group's global one down.
    #[command(
        arg(clap::Arg::new("admin_urls").long("admin-url").hide(true).action(clap::ArgAction::Append)),
        arg(clap::Arg::new("admin_token").long("admin-token").hide(true))
    )]
    Reseal {
        /// The backup file to read.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// The re-sealed backup file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The data key file of the cluster the backup was taken from.
        #[arg(long, value_name = "FILE")]
        from_data_key: PathBuf,
        /// The data key file of the cluster it will be restored into.
        #[arg(long, value_name = "FILE")]
        to_data_key: PathBuf,
    },
}

/// What `export` and `reseal` wrote, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    pub file: PathBuf,
    pub bytes: u64,
    pub cluster_id: String,
    pub node_id: u64,
    pub exported_at_ms: u64,
    pub applied_index: Option<u64>,
    /// Fingerprint of the data key the credentials are sealed under.
    pub data_key_id: String,
    pub providers: u64,
    pub routes: u64,
    pub keys: u64,
    pub admin_tokens: u64,
    pub quotas: u64,
}

impl BackupSummary {
    fn new(file: &Path, bytes: usize, backup: &Backup) -> Self {
        let counts = backup.config.counts();
        BackupSummary {
            file: file.to_path_buf(),
            bytes: bytes as u64,
            cluster_id: backup.cluster_id.clone(),
            node_id: backup.node_id,
            exported_at_ms: backup.exported_at_ms,
            applied_index: backup.applied_index,
            data_key_id: hex::encode(backup.data_key_id),
            providers: counts.providers,
            routes: counts.routes,
            keys: counts.keys,
            admin_tokens: counts.admin_tokens,
            quotas: counts.quotas,
        }
    }

    fn print(&self, out: Output) -> anyhow::Result<()> {
        if out.json {
            println!("{}", serde_json::to_string_pretty(self)?);
            return Ok(());
        }
        print_fields(&[
            ("file", self.file.display().to_string()),
            ("bytes", self.bytes.to_string()),
            ("cluster", self.cluster_id.clone()),
            ("from node", self.node_id.to_string()),
            (
                "applied index",
                self.applied_index
                    .map_or_else(|| "-".into(), |i| i.to_string()),
            ),
            ("data key", self.data_key_id.clone()),
            (
                "contents",
                format!(
                    "{} providers, {} routes, {} keys, {} admin tokens, {} quota policies",
                    self.providers, self.routes, self.keys, self.admin_tokens, self.quotas
                ),
            ),
        ]);
        Ok(())
    }
}

/// Runs `reseal`, the one subcommand that needs no cluster.
pub fn reseal(out: Output, command: SnapshotCommand) -> anyhow::Result<()> {
    let SnapshotCommand::Reseal {
        input,
        out: target,
        from_data_key,
        to_data_key,
    } = command
    else {
        bail!("not a reseal command");
    };
    let mut backup = read_backup(&input)?;
    let from = read_data_key(&from_data_key)?;
    let to = read_data_key(&to_data_key)?;
    for provider in &mut backup.config.providers {
        let name = provider.name.clone();
        for secret in provider.sealed_mut() {
            let clear = from.open(&secret.context, secret.sealed).with_context(|| {
                format!(
                    "provider {name:?}'s {} does not open with {}",
                    secret.field,
                    from_data_key.display()
                )
            })?;
            let mut nonce = [0u8; sluice_core::secret::NONCE_LEN];
            rand::rngs::OsRng
                .try_fill_bytes(&mut nonce)
                .context("reading the operating system's random number generator")?;
            *secret.sealed = to.seal(&secret.context, &clear.0, nonce);
        }
    }
    backup.data_key_id = to.id();
    let bytes = backup.to_bytes().context("encoding the backup")?;
    write_atomically(&target, &bytes)?;
    BackupSummary::new(&target, bytes.len(), &backup).print(out)
}

pub(super) async fn run(
    client: &AdminClient,
    out: Output,
    command: SnapshotCommand,
) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Export { out: file } => {
            let bytes = client.get_bytes(&path(&["cluster", "snapshot"])).await?;
            let backup = Backup::from_bytes(&bytes)
                .context("the node answered with a file that is not a valid backup")?;
            write_atomically(&file, &bytes)?;
            BackupSummary::new(&file, bytes.len(), &backup).print(out)
        }
        SnapshotCommand::Restore { input, force } => {
            let bytes = fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            Backup::from_bytes(&bytes).with_context(|| {
                format!(
                    "{} is not a usable backup; nothing was sent",
                    input.display()
                )
            })?;
            let query = force.then_some("force=true");
            let value = client
                .post_bytes(&path(&["cluster", "snapshot"]), query, bytes)
                .await?;
            out.show(value, |report: RestoreReport| {
                print_fields(&[
                    ("restored from", report.source_cluster_id),
                    ("node", report.source_node_id.to_string()),
                    (
                        "contents",
                        format!(
                            "{} providers, {} routes, {} keys, {} admin tokens, {} quota policies",
                            report.restored.providers,
                            report.restored.routes,
                            report.restored.keys,
                            report.restored.admin_tokens,
                            report.restored.quotas
                        ),
                    ),
                ])
            })
        }
        reseal_command @ SnapshotCommand::Reseal { .. } => reseal(out, reseal_command),
    }
}

fn read_backup(file: &Path) -> anyhow::Result<Backup> {
    let bytes = fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    Backup::from_bytes(&bytes).with_context(|| format!("{} is not a usable backup", file.display()))
}

fn read_data_key(file: &Path) -> anyhow::Result<DataKey> {
    let text = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    // The message never includes the file's content: it is a secret.
    DataKey::from_hex(&text).map_err(|_| {
        anyhow::anyhow!(
            "{} does not hold a data key (64 hex digits)",
            file.display()
        )
    })
}

/// Writes `bytes` to `file` so that a reader sees the old file or the new
/// one, never a part: a temporary file beside it, flushed, then renamed.
pub fn write_atomically(file: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = file
        .file_name()
        .with_context(|| format!("{} names no file", file.display()))?;
    let temp = dir.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&temp, file)?;
        fs::File::open(&dir)?.sync_all()
    })();
    if let Err(err) = written {
        let _ = fs::remove_file(&temp);
        return Err(err).with_context(|| format!("writing {}", file.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup.bin");
        write_atomically(&file, b"one").unwrap();
        write_atomically(&file, b"two").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("backup.bin")]);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(write_atomically(&dir.path().join("missing/x"), b"x").is_err());
    }

    #[test]
    fn reseal_moves_credentials_to_the_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let old = DataKey::from_bytes([1; 32]);
        let new = DataKey::from_bytes([2; 32]);
        fs::write(dir.path().join("old.key"), old.to_hex()).unwrap();
        fs::write(dir.path().join("new.key"), new.to_hex()).unwrap();
        let backup = Backup {
            cluster_id: "c-1".into(),
            node_id: 1,
            exported_at_ms: 1,
            applied_index: None,
            data_key_id: old.id(),
            config: sluice_core::backup::ConfigSnapshot {
                providers: vec![sluice_core::Provider {
                    name: "up".into(),
                    kind: sluice_core::ProviderKind::OpenAi,
                    base_url: "http://127.0.0.1:1/v1".into(),
                    api_key: Some(old.seal("up", "sk-up", [5; 12])),
                    headers: Default::default(),
                    secret_headers: [(
                        "X-Org-Token".to_owned(),
                        old.seal(
                            &sluice_core::provider::secret_header_context("up", "X-Org-Token"),
                            "org-secret",
                            [6; 12],
                        ),
                    )]
                    .into(),
                    timeouts: Default::default(),
                    azure: None,
                    bedrock: None,
                    created_at_ms: 1,
                    updated_at_ms: 1,
                }],
                ..Default::default()
            },
        };
        let input = dir.path().join("in.bin");
        fs::write(&input, backup.to_bytes().unwrap()).unwrap();
        let output = dir.path().join("out.bin");
        let command = |from: &str| SnapshotCommand::Reseal {
            input: input.clone(),
            out: output.clone(),
            from_data_key: dir.path().join(from),
            to_data_key: dir.path().join("new.key"),
        };
        reseal(Output { json: true }, command("old.key")).unwrap();
        let resealed = read_backup(&output).unwrap();
        assert_eq!(resealed.data_key_id, new.id());
        let sealed = resealed.config.providers[0].api_key.as_ref().unwrap();
        assert_eq!(new.open("up", sealed).unwrap().0, "sk-up");
        let header = &resealed.config.providers[0].secret_headers["X-Org-Token"];
        let context = sluice_core::provider::secret_header_context("up", "X-Org-Token");
        assert_eq!(new.open(&context, header).unwrap().0, "org-secret");
        assert!(old.open(&context, header).is_err());
        // The wrong source key is an error naming the provider.
        let err = reseal(Output { json: true }, command("new.key")).unwrap_err();
        assert!(format!("{err:#}").contains("\"up\""), "{err:#}");
    }
}
