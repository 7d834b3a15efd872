//! The `sluice` binary as a library: configuration, `sluice init`, `sluice
//! serve`, `sluice dev` and the admin client subcommands. This is the only
//! crate that knows every other Sluice crate; it wires them together.
//!
//! # Layout
//! * [`cli`]: the command line (clap) and dispatch.
//! * [`config`]: the node configuration file (TOML), validated field by field.
//! * [`init`]: `sluice init`: cluster CA, node certificates, secrets, configs.
//! * [`serve`]: `sluice serve`: one node (Raft, admin listener, proxy listener).
//! * [`telemetry`]: `serve`'s logs (text or JSON) and OTLP trace export.
//! * [`dev`]: `sluice dev`: a local cluster of child processes.
//! * [`client`]: the admin client subcommands (`sluice keys create`, ...).

pub mod cli;
pub mod client;
pub mod config;
pub mod dev;
pub mod init;
pub mod serve;
pub mod telemetry;
