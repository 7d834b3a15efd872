//! Where the `sluice` executable under test is.

use std::path::PathBuf;

/// The `sluice` binary: `$SLUICE_BIN` if set, else `target/debug/sluice`
/// beside the running test executable (`target/debug/deps/t10_…`).
///
/// Panics with what to do when it does not exist.
pub fn sluice_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "SLUICE_BIN={} does not exist; point it at a built `sluice` binary",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    // …/target/debug/deps/t10_replication-<hash> → …/target/debug/sluice
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps");
    let bin = profile_dir.join("sluice");
    assert!(
        bin.is_file(),
        "{} does not exist: run `cargo build -p sluice` first (or set SLUICE_BIN)",
        bin.display()
    );
    bin
}
