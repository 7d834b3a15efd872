//! `sluice dev` and the admin CLI against it: the path a developer takes on
//! day one. Start a local cluster, drive it with `sluice providers …` and
//! `sluice keys …`, stop it with SIGTERM (taking its nodes down with it),
//! start it again on the same directory and find the data there.

use nix::sys::signal::Signal;
use serde_json::Value;
use sluice_e2e::process::{
    children_of, cmdline_of, format_tail, is_alive, processes_mentioning, run_to_completion,
    Completed,
};
use sluice_e2e::{sluice_bin, Admin, Deadline, Process};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A `sluice dev` run on `dir`, logging to `log`; waits until it has printed
/// every admin URL of a `dev.json` with `nodes` nodes. Returns the process
/// and the parsed `dev.json`.
fn start_dev(dir: &Path, nodes: u64, log: &Path, deadline: Deadline) -> (Process, Value) {
    let mut command = Command::new(sluice_bin());
    command
        .arg("dev")
        .arg("--nodes")
        .arg(nodes.to_string())
        .arg("--data-dir")
        .arg(dir)
        .env("NO_COLOR", "1");
    let mut dev = Process::spawn(format!("sluice dev ({})", log.display()), command, log);
    let dev_json = dir.join("dev.json");
    let mut state = None;
    let mut exited = None;
    let ok = deadline
        .within(Duration::from_secs(45))
        .poll("sluice dev to be ready", || {
            exited = dev.try_exit();
            if exited.is_some() {
                return true;
            }
            let Some(parsed) = std::fs::read_to_string(&dev_json)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            else {
                return false;
            };
            let urls: Vec<String> = parsed["admin_urls"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let printed = dev.log_text();
            let ready =
                urls.len() == nodes as usize && urls.iter().all(|u| printed.contains(u.as_str()));
            if ready {
                state = Some(parsed);
            }
            ready
        });
    if let Some(status) = exited {
        panic!(
            "sluice dev exited ({status}) before it was ready\n{}{}",
            dev.log_tail(60),
            node_log_tails(dir)
        );
    }
    if let Err(timed_out) = ok {
        panic!("{timed_out}\n{}{}", dev.log_tail(60), node_log_tails(dir));
    }
    (dev, state.expect("set when ready"))
}

/// The tail of each dev node's own log (`node-<id>/sluice.log`).
fn node_log_tails(dir: &Path) -> String {
    (1..=9)
        .map(|id| dir.join(format!("node-{id}")).join("sluice.log"))
        .filter(|log| log.exists())
        .map(|log| format_tail(&log.display().to_string(), &log, 30))
        .collect()
}

/// Runs `sluice <args>` against `admin_url` with the token in the environment.
fn cli(admin_url: &str, token: &str, args: &[&str], deadline: Deadline) -> Completed {
    let mut command = Command::new(sluice_bin());
    command
        .args(args)
        .env("SLUICE_ADMIN_URL", admin_url)
        .env("SLUICE_ADMIN_TOKEN", token)
        .env("NO_COLOR", "1");
    run_to_completion(command, deadline.within(Duration::from_secs(20)))
}

/// Like [`cli`], expecting exit 0; returns stdout.
fn cli_ok(admin_url: &str, token: &str, args: &[&str], deadline: Deadline) -> String {
    let done = cli(admin_url, token, args, deadline);
    assert_eq!(done.code(), 0, "sluice {}: {done}", args.join(" "));
    done.stdout
}

/// Like [`cli_ok`] with `--json`; returns the parsed stdout.
fn cli_json(admin_url: &str, token: &str, args: &[&str], deadline: Deadline) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let stdout = cli_ok(admin_url, token, &args, deadline);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("sluice {} printed no JSON ({e}):\n{stdout}", args.join(" ")))
}

/// The array `key` of a list response (or the response itself if it is an array).
fn list<'a>(body: &'a Value, key: &str) -> &'a Vec<Value> {
    body.as_array()
        .or_else(|| body[key].as_array())
        .unwrap_or_else(|| panic!("not a {key} list: {body}"))
}

/// SIGTERMs `dev`, checks it exits 0 within 20 s and that none of the
/// `sluice serve` children it had (nor anything else running from `dir`) survive.
fn stop_dev(mut dev: Process, dir: &Path, deadline: Deadline) {
    let children = children_of(dev.pid());
    let serving: Vec<u32> = children
        .iter()
        .copied()
        .filter(|&pid| cmdline_of(pid).is_some_and(|c| c.contains(" serve ")))
        .collect();
    assert_eq!(
        serving.len(),
        3,
        "sluice dev should run 3 `sluice serve` children, found {:?}",
        children
            .iter()
            .map(|&p| (p, cmdline_of(p)))
            .collect::<Vec<_>>()
    );
    dev.signal(Signal::SIGTERM);
    let status = dev.wait_exit(deadline.within(Duration::from_secs(20)));
    let status = status.unwrap_or_else(|| {
        panic!(
            "sluice dev did not exit within 20 s of SIGTERM\n{}",
            dev.log_tail(40)
        )
    });
    assert!(
        status.success(),
        "sluice dev exited with {status} on SIGTERM\n{}",
        dev.log_tail(40)
    );
    deadline
        .within(Duration::from_secs(5))
        .poll("the nodes of sluice dev to be gone", || {
            serving.iter().all(|&pid| !is_alive(pid))
        })
        .unwrap_or_else(|t| {
            panic!(
                "{t}: still alive: {:?}",
                serving.iter().filter(|&&p| is_alive(p)).collect::<Vec<_>>()
            )
        });
    let leftovers = processes_mentioning(&dir.display().to_string());
    assert!(
        leftovers.is_empty(),
        "processes still running from {}: {leftovers:?}",
        dir.display()
    );
}

#[test]
fn dev_cluster_serves_the_cli_stops_on_sigterm_and_restarts_with_its_data() {
    let deadline = Deadline::after(Duration::from_secs(60));
    let tmp = tempfile::Builder::new()
        .prefix("sluice-e2e-dev-")
        .tempdir()
        .expect("tempdir");
    let dir: PathBuf = tmp.path().join("dev");

    // First run: a fresh 3-node cluster.
    let (dev, state) = start_dev(&dir, 3, &tmp.path().join("dev-run-1.log"), deadline);
    let admin_urls: Vec<String> = list(&state, "admin_urls")
        .iter()
        .map(|u| u.as_str().expect("url").to_string())
        .collect();
    assert_eq!(list(&state, "proxy_urls").len(), 3, "{state}");
    let token = state["admin_token"]
        .as_str()
        .expect("admin_token in dev.json")
        .to_string();
    assert!(!token.is_empty());
    let token_file = std::fs::read_to_string(dir.join("admin-token")).expect("admin-token file");
    assert_eq!(
        token_file.trim(),
        token,
        "dev.json must carry the cluster's admin token"
    );
    let url = admin_urls[1].as_str(); // any node will do; not necessarily the leader

    // The demo: a running mock provider, a route on it and a demo key.
    let api_key = state["api_key"]
        .as_str()
        .expect("api_key in dev.json")
        .to_string();
    assert!(api_key.starts_with("sk-sluice-"), "{state}");
    let mock_url = state["mock_url"].as_str().expect("mock_url in dev.json");
    let models: Value = reqwest::blocking::get(format!("{mock_url}/v1/models"))
        .and_then(|r| r.json())
        .expect("the mock provider answers");
    assert_eq!(models["object"], "list", "{models}");
    let admin = Admin::new(url, Some(token.clone()));
    let (status, route) = admin.get("/admin/v1/routes/mock-gpt");
    assert_eq!(status, 200, "{route}");
    assert_eq!(route["deployments"][0]["provider"], "mock", "{route}");

    // cluster status, as a table and as JSON.
    let status = cli_ok(url, &token, &["cluster", "status"], deadline);
    assert!(
        status.to_lowercase().contains("leader"),
        "cluster status:\n{status}"
    );
    let status = cli_json(url, &token, &["cluster", "status"], deadline);
    assert_eq!(list(&status, "members").len(), 3, "{status}");

    // providers create / list.
    let create = [
        "providers",
        "create",
        "--name",
        "dev-openai",
        "--kind",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
    ];
    cli_ok(url, &token, &create, deadline);
    let table = cli_ok(url, &token, &["providers", "list"], deadline);
    assert!(table.contains("dev-openai"), "providers list:\n{table}");
    let providers = cli_json(url, &token, &["providers", "list"], deadline);
    assert!(
        list(&providers, "providers")
            .iter()
            .any(|p| p["name"] == "dev-openai"),
        "{providers}"
    );
    // The API's refusal reaches the operator as a non-zero exit with the reason.
    let again = cli(url, &token, &create, deadline);
    assert_ne!(again.code(), 0, "a duplicate provider must fail: {again}");
    assert!(
        again.stderr.contains("dev-openai") || again.stderr.contains("exists"),
        "{again}"
    );
    // No token: refused before any request, naming the variable.
    let mut anonymous = Command::new(sluice_bin());
    anonymous
        .args(["providers", "list"])
        .env("SLUICE_ADMIN_URL", url)
        .env_remove("SLUICE_ADMIN_TOKEN");
    let anonymous = run_to_completion(anonymous, deadline.within(Duration::from_secs(20)));
    assert_ne!(anonymous.code(), 0, "{anonymous}");
    assert!(
        anonymous.stderr.contains("SLUICE_ADMIN_TOKEN"),
        "{anonymous}"
    );

    // keys create / list / revoke.
    let created = cli_json(url, &token, &["keys", "create", "--name", "ci"], deadline);
    let secret = created["key"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret in {created}"))
        .to_string();
    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {created}"))
        .to_string();
    let keys = cli_json(url, &token, &["keys", "list"], deadline);
    let listed = list(&keys, "keys")
        .iter()
        .find(|k| k["id"] == id.as_str())
        .cloned();
    assert_eq!(
        listed.as_ref().map(|k| k["status"].clone()),
        Some("active".into()),
        "{keys}"
    );
    let table = cli_ok(url, &token, &["keys", "list"], deadline);
    assert!(table.contains(&id), "keys list:\n{table}");
    assert!(
        !table.contains(&secret) && !keys.to_string().contains(&secret),
        "lists must never show the secret"
    );
    cli_ok(url, &token, &["keys", "revoke", &id], deadline);
    let keys = cli_json(admin_urls[2].as_str(), &token, &["keys", "list"], deadline);
    let listed = list(&keys, "keys")
        .iter()
        .find(|k| k["id"] == id.as_str())
        .cloned();
    assert_eq!(
        listed.map(|k| k["status"].clone()),
        Some("revoked".into()),
        "{keys}"
    );

    stop_dev(dev, &dir, deadline);

    // Second run on the same directory: the same cluster, with its data.
    let (dev, state) = start_dev(&dir, 3, &tmp.path().join("dev-run-2.log"), deadline);
    let urls_again: Vec<String> = list(&state, "admin_urls")
        .iter()
        .map(|u| u.as_str().expect("url").to_string())
        .collect();
    assert_eq!(
        urls_again, admin_urls,
        "the same nodes come back on the same addresses"
    );
    assert_eq!(
        state["api_key"].as_str(),
        Some(api_key.as_str()),
        "the demo key is kept across runs"
    );
    for url in &admin_urls {
        let admin = Admin::new(url.as_str(), Some(token.clone()));
        deadline
            .within(Duration::from_secs(10))
            .poll(format!("{url} to have provider dev-openai"), || {
                admin.has_provider("dev-openai")
            })
            .unwrap_or_else(|t| panic!("{t}\n{}", dev.log_tail(40)));
    }
    let keys = cli_json(url, &token, &["keys", "list"], deadline);
    let listed = list(&keys, "keys")
        .iter()
        .find(|k| k["id"] == id.as_str())
        .cloned();
    assert_eq!(
        listed.map(|k| k["status"].clone()),
        Some("revoked".into()),
        "{keys}"
    );

    stop_dev(dev, &dir, deadline);
}

/// `sluice mock-llm` serves the OpenAI API on the address it prints, and
/// stops cleanly on SIGTERM.
#[test]
fn mock_llm_subcommand_serves_until_sigterm() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(sluice_bin())
        .args(["mock-llm", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn sluice mock-llm");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut first_line = String::new();
    BufReader::new(stdout)
        .read_line(&mut first_line)
        .expect("read the mock's address line");
    let base = first_line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {first_line:?}"))
        .to_string();
    let models: Value = reqwest::blocking::get(format!("{base}/v1/models"))
        .and_then(|r| r.json())
        .expect("GET /v1/models");
    assert_eq!(models["object"], "list", "{models}");
    assert!(
        !models["data"].as_array().expect("data").is_empty(),
        "{models}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("sluice mock-llm did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
}
