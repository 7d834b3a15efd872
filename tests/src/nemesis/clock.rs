//! A node's wall clock, faked with libfaketime (Debian's `faketime`
//! package) so that it can jump forward or back while the node runs, with
//! no change to the product: the node is started with libfaketime
//! preloaded, reading its offset from a file the test rewrites.
//! `DONT_FAKE_MONOTONIC=1` keeps the monotonic clock (timers, Raft
//! timeouts) true: only what the node reads as the time of day jumps.

use std::path::{Path, PathBuf};

/// Where Debian and others install the thread-safe library.
const LIBRARIES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
];

/// The faked clock of one node: an offset file and the environment that
/// makes a process read it.
#[derive(Debug, Clone)]
pub struct FakedClock {
    library: PathBuf,
    file: PathBuf,
}

impl FakedClock {
    /// libfaketime, if installed.
    pub fn library() -> Option<PathBuf> {
        LIBRARIES.iter().map(PathBuf::from).find(|p| p.exists())
    }

    /// A clock reading its offset from `file` (created at offset 0).
    pub fn new(library: PathBuf, file: &Path) -> FakedClock {
        let clock = FakedClock {
            library,
            file: file.to_path_buf(),
        };
        clock.set_offset_s(0);
        clock
    }

    /// The environment to start the node with.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), self.library.display().to_string()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.file.display().to_string(),
            ),
            // Re-read the file (at most once a second), so a jump takes
            // effect in the running process.
            ("FAKETIME_CACHE_DURATION".into(), "1".into()),
            ("DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }

    /// Sets the node's wall clock to the true time plus `offset_s` seconds
    /// (the node sees it within a second). Written to a temporary file and
    /// renamed over the old one: the library never reads half a file.
    pub fn set_offset_s(&self, offset_s: i64) {
        let text = format!("{offset_s:+}\n");
        let temporary = self.file.with_extension("tmp");
        std::fs::write(&temporary, text)
            .unwrap_or_else(|e| panic!("writing {}: {e}", temporary.display()));
        std::fs::rename(&temporary, &self.file)
            .unwrap_or_else(|e| panic!("renaming onto {}: {e}", self.file.display()));
    }
}
