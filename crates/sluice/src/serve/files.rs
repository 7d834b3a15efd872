//! The process's open-file limit: every client connection on either
//! listener holds a descriptor, so the soft `RLIMIT_NOFILE` (often 1 024)
//! is raised to the hard limit at start; the hard limit itself is the
//! operator's (systemd `LimitNOFILE=`, the container runtime's `ulimit`).

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors kept for what is not a client connection: Raft's socket and
/// its peers, sled's files, upstream connections, the process itself.
const HEADROOM: u64 = 256;

/// Raises the soft open-file limit to the hard one, logging the outcome,
/// and warns when the listeners' caps (`connections`, both summed) could
/// use up what is left after [`HEADROOM`].
pub(super) fn raise_open_file_limit(connections: u64) {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return;
        }
    };
    let limit = if soft >= hard {
        tracing::info!(limit = soft, "open-file limit");
        soft
    } else {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::info!(from = soft, to = hard, "open-file limit raised");
                hard
            }
            Err(e) => {
                tracing::warn!(limit = soft, hard, error = %e, "cannot raise the open-file limit");
                soft
            }
        }
    };
    if connections.saturating_add(HEADROOM) > limit {
        tracing::warn!(
            limit,
            connections,
            "the listeners' max_connections could use up the open-file limit; \
             raise LimitNOFILE (see docs/operations.md) or lower max_connections"
        );
    }
}
