//! The `sluice` binary's command line, run as a child process: what an
//! operator sees before any node runs (help, config checks, exit codes).
//!
//! This file also makes `cargo test --workspace` build `target/debug/sluice`,
//! which the end-to-end suites in `tests/` start.

use sluice::init::{self, free_port_plan, InitPlan};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// No command here should take anywhere near this long.
const BUDGET: Duration = Duration::from_secs(20);

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    fn show(&self) -> String {
        format!(
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `sluice <args>` in `dir` to completion (killed, and the test failed,
/// if it outlives [`BUDGET`]: `serve` on a good config would run forever).
fn sluice(dir: &Path, args: &[&str]) -> Run {
    let out = tempfile::tempdir().expect("tempdir for output");
    let stdout_path = out.path().join("stdout");
    let stderr_path = out.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(dir)
        .env_remove("SLUICE_ADMIN_URL")
        .env_remove("SLUICE_ADMIN_TOKEN")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("starting sluice");
    let deadline = Instant::now() + BUDGET;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for sluice") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "sluice {} still running after {BUDGET:?}\n--- stderr ---\n{}",
                args.join(" "),
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: std::fs::read_to_string(&stdout_path).expect("reading stdout"),
        stderr: std::fs::read_to_string(&stderr_path).expect("reading stderr"),
    }
}

/// A one-node cluster written by `init::generate`; returns its config path.
fn generated_config(dir: &Path) -> PathBuf {
    let nodes = free_port_plan([1], IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("free ports");
    let output = init::generate(&InitPlan::new(dir.join("cluster"), nodes)).expect("generate");
    output.configs[0].clone()
}

#[test]
fn help_lists_every_subcommand() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = sluice(tmp.path(), &["--help"]);
    assert_eq!(run.code(), Some(0), "{}", run.show());
    for subcommand in [
        "serve",
        "init",
        "dev",
        "cluster",
        "providers",
        "routes",
        "keys",
    ] {
        assert!(
            run.stdout
                .lines()
                .any(|line| line.trim_start().starts_with(&format!("{subcommand} "))),
            "`sluice --help` should list `{subcommand}`\n{}",
            run.show()
        );
    }
}

#[test]
fn serve_check_accepts_a_generated_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = generated_config(tmp.path());
    let run = sluice(
        tmp.path(),
        &[
            "serve",
            "--check",
            "--config",
            config.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(run.code(), Some(0), "{}", run.show());
    // Checking touches nothing: the node never ran, so it has no data dir.
    assert!(
        !config.with_file_name("data").exists(),
        "--check must not create the data dir"
    );
}

#[test]
fn config_with_a_misspelt_field_exits_2_naming_the_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = generated_config(tmp.path());
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(
        text.contains("\nadmin = \""),
        "the generated [listen] table has `admin`:\n{text}"
    );
    std::fs::write(&config, text.replacen("\nadmin = \"", "\nadmn = \"", 1))
        .expect("writing config");
    let path = config.to_str().expect("utf-8 path");

    for args in [
        vec!["serve", "--config", path],
        vec!["serve", "--check", "--config", path],
    ] {
        let run = sluice(tmp.path(), &args);
        assert_eq!(
            run.code(),
            Some(2),
            "sluice {}\n{}",
            args.join(" "),
            run.show()
        );
        assert!(
            run.stderr.contains("admn"),
            "the error should name the misspelt field `admn`\n{}",
            run.show()
        );
        assert!(
            run.stderr.contains("listen"),
            "the error should name the table\n{}",
            run.show()
        );
    }
    assert!(
        !config.with_file_name("data").exists(),
        "a bad config must not create the data dir"
    );
}

#[test]
fn config_with_several_problems_reports_all_of_them_and_exits_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = generated_config(tmp.path());
    let text = std::fs::read_to_string(&config).expect("config");
    let broken = text.replacen("node_id = 1", "node_id = 0", 1).replacen(
        "max_body_bytes = 10485760",
        "max_body_bytes = 0",
        1,
    );
    std::fs::write(&config, broken).expect("writing config");
    let run = sluice(
        tmp.path(),
        &[
            "serve",
            "--check",
            "--config",
            config.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(run.code(), Some(2), "{}", run.show());
    for field in ["node_id", "limits.max_body_bytes"] {
        assert!(
            run.stderr.contains(field),
            "the error should name `{field}`\n{}",
            run.show()
        );
    }
}

#[test]
fn init_writes_configs_that_serve_check_accepts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("cluster");
    let run = sluice(
        tmp.path(),
        &[
            "init",
            "--out",
            out.to_str().expect("utf-8 path"),
            "--nodes",
            "3",
            "--base-port",
            "47000",
        ],
    );
    assert_eq!(run.code(), Some(0), "{}", run.show());
    for id in 1..=3 {
        let config = init::node_config(&out, id);
        let run = sluice(
            tmp.path(),
            &[
                "serve",
                "--check",
                "--config",
                config.to_str().expect("utf-8 path"),
            ],
        );
        assert_eq!(run.code(), Some(0), "node {id}: {}", run.show());
    }
}
