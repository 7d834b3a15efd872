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
    run_sluice(dir, None, args)
}

/// [`sluice`] with `SLUICE_ADMIN_URL` (else cleared) set to `admin_urls`
/// and some admin token.
fn run_sluice(dir: &Path, admin_urls: Option<&str>, args: &[&str]) -> Run {
    let out = tempfile::tempdir().expect("tempdir for output");
    let stdout_path = out.path().join("stdout");
    let stderr_path = out.path().join("stderr");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("SLUICE_ADMIN_URL")
        .env_remove("SLUICE_ADMIN_TOKEN")
        .env("NO_COLOR", "1");
    if let Some(urls) = admin_urls {
        command
            .env("SLUICE_ADMIN_URL", urls)
            .env("SLUICE_ADMIN_TOKEN", "sluice-admin-test");
    }
    let mut child = command
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
    assert!(
        run.stdout.contains("This is a one-machine cluster")
            && run.stdout.contains("--hosts 10.0.0.1,10.0.0.2"),
        "init without --hosts says what it made and how to spread it\n{}",
        run.show()
    );
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

/// What a fake admin API saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    idempotency_key: Option<String>,
}

/// A stand-in for one node's admin API on 127.0.0.1: answers every request
/// with `status` and `body`, and reports what it saw. Its thread serves
/// until the test process ends.
fn fake_admin(
    status: &'static str,
    body: &'static str,
) -> (String, std::sync::mpsc::Receiver<Seen>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a fake admin API");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let (mut length, mut key) = (0usize, None);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap_or((&line, ""));
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "idempotency-key" => key = Some(value.trim().to_string()),
                    _ => {}
                }
            }
            let mut request_body = vec![0; length];
            let _ = reader.read_exact(&mut request_body);
            let _ = seen_tx.send(Seen {
                request_line: request_line.trim().to_string(),
                idempotency_key: key,
            });
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen_rx)
}

/// A write that finds one node gone and another without an answer (504)
/// is sent on to the next admin URL with the same `Idempotency-Key`.
#[test]
fn a_write_fails_over_to_the_next_admin_url_with_the_same_idempotency_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("address"))
    };
    let (timing_out, timed_out_seen) = fake_admin(
        "504 Gateway Timeout",
        r#"{"error":{"type":"timeout","message":"timed out: leader 1 did not answer the write","field":null}}"#,
    );
    let (healthy, healthy_seen) = fake_admin("204 No Content", "");
    let urls = format!("{gone},{timing_out},{healthy}");
    let run = run_sluice(tmp.path(), Some(&urls), &["providers", "delete", "old"]);
    assert_eq!(run.code(), Some(0), "{}", run.show());
    assert!(
        run.stdout.contains("deleted provider old"),
        "{}",
        run.show()
    );
    let first = timed_out_seen
        .recv_timeout(Duration::from_secs(5))
        .expect("the second URL was tried");
    let second = healthy_seen
        .recv_timeout(Duration::from_secs(5))
        .expect("the third URL was tried");
    assert_eq!(
        first.request_line,
        "DELETE /admin/v1/providers/old HTTP/1.1"
    );
    assert_eq!(second.request_line, first.request_line);
    let key = first
        .idempotency_key
        .expect("a write carries an Idempotency-Key");
    assert!(key.len() >= 16, "{key}");
    assert_eq!(second.idempotency_key.as_deref(), Some(key.as_str()));
    assert!(
        run.stderr.contains(&timing_out) && run.stderr.contains("504"),
        "each retry is noted on stderr\n{}",
        run.show()
    );
    // Another write gets another key.
    let run = run_sluice(
        tmp.path(),
        Some(&healthy),
        &["providers", "delete", "older"],
    );
    assert_eq!(run.code(), Some(0), "{}", run.show());
    let third = healthy_seen
        .recv_timeout(Duration::from_secs(5))
        .expect("sent");
    assert_ne!(third.idempotency_key.as_deref(), Some(key.as_str()));
}

/// A read sends no key; a refusal (here 404) is final, not sent elsewhere.
#[test]
fn reads_carry_no_key_and_refusals_are_not_retried() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (refusing, refusing_seen) = fake_admin(
        "404 Not Found",
        r#"{"error":{"type":"not_found","message":"provider \"x\" not found","field":null}}"#,
    );
    let (other, other_seen) = fake_admin("200 OK", r#"{"providers":[]}"#);
    let run = run_sluice(
        tmp.path(),
        Some(&format!("{refusing},{other}")),
        &["providers", "get", "x"],
    );
    assert_ne!(run.code(), Some(0), "{}", run.show());
    assert!(run.stderr.contains("not_found (404)"), "{}", run.show());
    let seen = refusing_seen
        .recv_timeout(Duration::from_secs(5))
        .expect("asked");
    assert_eq!(seen.idempotency_key, None);
    assert!(
        other_seen.try_recv().is_err(),
        "a 404 is an answer: the next node is not asked"
    );
}

/// `sluice ARGS --help`, which must succeed.
fn help_of(dir: &Path, args: &[&str]) -> String {
    let mut args = args.to_vec();
    args.push("--help");
    let run = sluice(dir, &args);
    assert_eq!(run.code(), Some(0), "{}", run.show());
    run.stdout
}

/// The client flags belong to the commands that call the admin API: not in
/// `serve`/`init`/`dev`/`mock-llm`'s help, nor in the offline `reseal`'s,
/// and never in a usage line as if required.
#[test]
fn client_flags_appear_only_on_commands_that_call_the_admin_api() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let help = |args: &[&str]| help_of(tmp.path(), args);
    for command in [
        vec!["serve"],
        vec!["init"],
        vec!["dev"],
        vec!["mock-llm"],
        vec!["cluster", "snapshot", "reseal"],
    ] {
        let text = help(&command);
        for flag in ["--admin-url", "--admin-token"] {
            assert!(
                !text.contains(flag),
                "`sluice {} --help` shows {flag}:\n{text}",
                command.join(" ")
            );
        }
    }
    for command in [
        vec!["keys"],
        vec!["keys", "quota"],
        vec!["cluster", "status"],
        vec!["usage"],
        vec!["tokens", "list"],
    ] {
        let text = help(&command);
        for flag in ["--admin-url <URL>", "--admin-token <TOKEN>", "--json"] {
            assert!(
                text.contains(flag),
                "`sluice {} --help` lacks {flag}:\n{text}",
                command.join(" ")
            );
        }
        let usage = text
            .lines()
            .find(|l| l.starts_with("Usage:"))
            .unwrap_or_else(|| panic!("no usage line:\n{text}"));
        assert!(
            !usage.contains("--admin"),
            "the usage line shows an optional flag as required: {usage}"
        );
        assert!(
            text.contains("Admin API options:"),
            "the client flags have their own heading:\n{text}"
        );
    }
}

/// Each command group's help ends with examples, and every argument and
/// `--name` says what it is.
#[test]
fn every_command_group_has_examples_and_described_arguments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let help = |args: &[&str]| help_of(tmp.path(), args);
    for group in ["cluster", "providers", "routes", "keys", "tokens", "usage"] {
        let text = help(&[group]);
        let examples = text
            .split_once("Examples:")
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("`sluice {group} --help` has no Examples:\n{text}"));
        assert!(
            examples.contains(&format!("sluice {group} ")),
            "`sluice {group} --help`'s examples do not use it:\n{text}"
        );
        assert!(
            examples.contains("http://127.0.0.1:7001"),
            "the example admin port is `sluice init`'s (7001):\n{text}"
        );
    }
    assert!(help(&[]).contains("Examples:"), "`sluice --help`");
    // A positional argument or --name with no description shows as a bare
    // `  <KEY>` / `      --name <NAME>` line.
    for (command, arg) in [
        (vec!["keys", "quota"], "<KEY>"),
        (vec!["keys", "get"], "<KEY>"),
        (vec!["keys", "create"], "--name <NAME>"),
        (vec!["providers", "create"], "--name <NAME>"),
        (vec!["providers", "get"], "<NAME>"),
        (vec!["routes", "delete"], "<NAME>"),
        (vec!["tokens", "create"], "--name <NAME>"),
        (vec!["tokens", "delete"], "<ID>"),
        (vec!["cluster", "promote"], "<ID>"),
        (vec!["cluster", "transfer-leader"], "<TO>"),
    ] {
        let text = help(&command);
        let line = text
            .lines()
            .skip_while(|l| !l.starts_with("Arguments:") && !l.starts_with("Options:"))
            .find(|l| l.trim_start().starts_with(arg))
            .unwrap_or_else(|| {
                panic!(
                    "`sluice {} --help` lists no {arg}:\n{text}",
                    command.join(" ")
                )
            });
        assert!(
            line.trim_start().len() > arg.len() + 3,
            "`sluice {}`: {arg} has no description: {line:?}\n{text}",
            command.join(" ")
        );
    }
}

/// Mistakes a newcomer makes, told in words that fix them: a URL without
/// a scheme, no URL or token, and with `--json` every error as JSON on
/// stderr with a non-zero exit.
#[test]
fn argument_mistakes_say_how_to_fix_them_and_json_errors_are_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = run_sluice(tmp.path(), Some("127.0.0.1:7001"), &["cluster", "status"]);
    assert_eq!(run.code(), Some(2), "{}", run.show());
    assert!(
        run.stderr.contains("must start with http:// or https://")
            && run.stderr.contains("http://127.0.0.1:7001"),
        "{}",
        run.show()
    );

    let run = sluice(tmp.path(), &["keys", "list"]);
    assert_eq!(run.code(), Some(2), "{}", run.show());
    assert!(
        run.stderr.contains("no admin URL") && run.stderr.contains("SLUICE_ADMIN_URL"),
        "{}",
        run.show()
    );

    let json_error = |run: &Run| -> serde_json::Value {
        assert!(run.stdout.is_empty(), "nothing on stdout: {}", run.show());
        serde_json::from_str(run.stderr.trim())
            .unwrap_or_else(|e| panic!("stderr is not one JSON object ({e}): {}", run.show()))
    };
    // A usage mistake, ours (no admin URL) or clap's (an unknown flag).
    for (args, says) in [
        (&["keys", "list", "--json"][..], "no admin URL"),
        (&["keys", "list", "--json", "--colour"][..], "--colour"),
    ] {
        let run = sluice(tmp.path(), args);
        assert_eq!(run.code(), Some(2), "{}", run.show());
        let error = json_error(&run);
        assert_eq!(error["error"]["type"], "usage_error", "{error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{error}"
        );
    }

    // An answer from the API, as JSON.
    let (refusing, _) = fake_admin(
        "404 Not Found",
        r#"{"error":{"type":"not_found","message":"provider \"x\" not found","field":null}}"#,
    );
    let run = run_sluice(
        tmp.path(),
        Some(&refusing),
        &["providers", "get", "x", "--json"],
    );
    assert_eq!(run.code(), Some(1), "{}", run.show());
    let error = json_error(&run);
    assert_eq!(error["error"]["type"], "not_found", "{error}");
    assert_eq!(error["error"]["status"], 404, "{error}");
}
