//! `sluice dev` and the admin CLI against it: the path a developer takes on
//! day one. Start a local cluster, drive it with `sluice providers …` and
//! `sluice keys …`, stop it with SIGTERM (taking its nodes down with it),
//! start it again on the same directory and find the data there.

use nix::sys::signal::Signal;
use serde_json::Value;
use sluice_e2e::dataplane::{DataPlane, ProxyClient, GPT};
use sluice_e2e::process::{
    children_of, cmdline_of, format_tail, is_alive, processes_mentioning, run_to_completion,
    Completed,
};
use sluice_e2e::{json, sluice_bin, Admin, Cluster, Deadline, Process};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// One `sluice dev` at a time: each picks free ports for its nodes before
/// they bind them, and two picking at once (or one restarting a killed node
/// while another picks) can land on the same port. Taken before a test's
/// deadline starts.
static ONE_DEV_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_dev_at_a_time() -> MutexGuard<'static, ()> {
    ONE_DEV_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

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

/// A 3-node `sluice dev` in a new temporary directory (kept alive by the
/// returned guard): the guard, the dev dir, the process and `dev.json`.
fn start_dev_in_tempdir(
    name: &str,
    deadline: Deadline,
) -> (tempfile::TempDir, PathBuf, Process, Value) {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("sluice-e2e-dev-{name}-"))
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path().join("dev");
    let (dev, state) = start_dev(&dir, 3, &tmp.path().join("dev.log"), deadline);
    (tmp, dir, dev, state)
}

/// The tail of each dev node's own log (`node-<id>/sluice.log`).
fn node_log_tails(dir: &Path) -> String {
    (1..=9)
        .map(|id| dir.join(format!("node-{id}")).join("sluice.log"))
        .filter(|log| log.exists())
        .map(|log| format_tail(&log.display().to_string(), &log, 30))
        .collect()
}

/// Runs `sluice <args>` against `admin_url` with the token and the
/// cluster's CA certificate `ca` in the environment.
fn cli(admin_url: &str, token: &str, ca: &Path, args: &[&str], deadline: Deadline) -> Completed {
    let mut command = Command::new(sluice_bin());
    command
        .args(args)
        .env("SLUICE_ADMIN_URL", admin_url)
        .env("SLUICE_ADMIN_TOKEN", token)
        .env("SLUICE_CACERT", ca)
        .env("NO_COLOR", "1");
    run_to_completion(command, deadline.within(Duration::from_secs(20)))
}

/// Like [`cli`], expecting exit 0; returns stdout.
fn cli_ok(admin_url: &str, token: &str, ca: &Path, args: &[&str], deadline: Deadline) -> String {
    let done = cli(admin_url, token, ca, args, deadline);
    assert_eq!(done.code(), 0, "sluice {}: {done}", args.join(" "));
    done.stdout
}

/// Like [`cli_ok`] with `--json`; returns the parsed stdout.
fn cli_json(admin_url: &str, token: &str, ca: &Path, args: &[&str], deadline: Deadline) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let stdout = cli_ok(admin_url, token, ca, &args, deadline);
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
    let _turn = one_dev_at_a_time();
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
    let ca = dir.join("ca.pem");
    let admin = Admin::new(url, Some(token.clone()), &ca);
    let (status, route) = admin.get("/admin/v1/routes/mock-gpt");
    assert_eq!(status, 200, "{route}");
    assert_eq!(route["deployments"][0]["provider"], "mock", "{route}");

    // cluster status, as a table and as JSON.
    let status = cli_ok(url, &token, &ca, &["cluster", "status"], deadline);
    assert!(
        status.to_lowercase().contains("leader"),
        "cluster status:\n{status}"
    );
    let status = cli_json(url, &token, &ca, &["cluster", "status"], deadline);
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
    cli_ok(url, &token, &ca, &create, deadline);
    let table = cli_ok(url, &token, &ca, &["providers", "list"], deadline);
    assert!(table.contains("dev-openai"), "providers list:\n{table}");
    let providers = cli_json(url, &token, &ca, &["providers", "list"], deadline);
    assert!(
        list(&providers, "providers")
            .iter()
            .any(|p| p["name"] == "dev-openai"),
        "{providers}"
    );
    // The API's refusal reaches the operator as a non-zero exit with the reason.
    let again = cli(url, &token, &ca, &create, deadline);
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
    let created = cli_json(
        url,
        &token,
        &ca,
        &["keys", "create", "--name", "ci"],
        deadline,
    );
    let secret = created["key"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret in {created}"))
        .to_string();
    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {created}"))
        .to_string();
    let keys = cli_json(url, &token, &ca, &["keys", "list"], deadline);
    let listed = list(&keys, "keys")
        .iter()
        .find(|k| k["id"] == id.as_str())
        .cloned();
    assert_eq!(
        listed.as_ref().map(|k| k["status"].clone()),
        Some("active".into()),
        "{keys}"
    );
    let table = cli_ok(url, &token, &ca, &["keys", "list"], deadline);
    assert!(table.contains(&id), "keys list:\n{table}");
    assert!(
        !table.contains(&secret) && !keys.to_string().contains(&secret),
        "lists must never show the secret"
    );
    cli_ok(url, &token, &ca, &["keys", "revoke", &id], deadline);
    let keys = cli_json(
        admin_urls[2].as_str(),
        &token,
        &ca,
        &["keys", "list"],
        deadline,
    );
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
        let admin = Admin::new(url.as_str(), Some(token.clone()), &ca);
        deadline
            .within(Duration::from_secs(10))
            .poll(format!("{url} to have provider dev-openai"), || {
                admin.has_provider("dev-openai")
            })
            .unwrap_or_else(|t| panic!("{t}\n{}", dev.log_tail(40)));
    }
    let keys = cli_json(url, &token, &ca, &["keys", "list"], deadline);
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

/// The value of `NAME=` in the `export …` line of `sluice dev`'s output
/// that sets it.
fn exported(printed: &str, name: &str) -> String {
    let assignment = format!("{name}=");
    printed
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("export "))
        .flat_map(str::split_whitespace)
        .find_map(|word| word.strip_prefix(&assignment))
        .unwrap_or_else(|| panic!("sluice dev printed no export of {name}:\n{printed}"))
        .to_string()
}

/// The SDK lines `sluice dev` printed reach the demo route: the OpenAI
/// base URL with `/v1`, the Anthropic one without (its SDK adds
/// `/v1/messages`), the same demo key in both.
fn sdk_lines_work(printed: &str) {
    let openai = exported(printed, "OPENAI_BASE_URL");
    let anthropic = exported(printed, "ANTHROPIC_BASE_URL");
    let key = exported(printed, "ANTHROPIC_API_KEY");
    assert_eq!(exported(printed, "OPENAI_API_KEY"), key);
    assert_eq!(openai, format!("{anthropic}/v1"), "{printed}");
    // What the Anthropic SDK sends: POST {base_url}/v1/messages.
    let reply = ProxyClient::new(anthropic.clone(), None).post_with(
        "/v1/messages",
        &json!({"model": "mock-gpt", "max_tokens": 50,
                "messages": [{"role": "user", "content": "Hello"}]}),
        &[
            ("x-api-key", key.as_str()),
            ("anthropic-version", "2023-06-01"),
        ],
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["type"], "message", "{}", reply.text);
    assert!(
        printed.contains("not an OpenAI or Anthropic key"),
        "the demo key is said to be a Sluice key:\n{printed}"
    );
    readme_tour_keeps_what_dev_exported(printed);
}

/// The names `NAME` of every `export NAME=… NAME2=…` line in `text`.
fn exported_names(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_start)
        .filter_map(|l| l.strip_prefix("export "))
        .flat_map(str::split_whitespace)
        .filter_map(|word| word.split_once('=').map(|(name, _)| name.to_owned()))
        .collect()
}

/// The README's tour, pasted after `sluice dev`'s lines, sets none of the
/// variables those lines set but the admin ones it tells the reader to
/// paste: an upstream key under `OPENAI_API_KEY` would replace the demo key.
fn readme_tour_keeps_what_dev_exported(printed: &str) {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let tour = readme
        .split_once("## A short tour")
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest))
        .expect("the README has a section '## A short tour'");
    let from_dev = exported_names(printed);
    assert!(
        from_dev.iter().any(|n| n == "OPENAI_API_KEY"),
        "{from_dev:?}"
    );
    let clobbered: Vec<String> = exported_names(tour)
        .into_iter()
        .filter(|name| from_dev.contains(name) && !name.starts_with("SLUICE_ADMIN_"))
        .collect();
    assert!(
        clobbered.is_empty(),
        "the README's tour overwrites what sluice dev told the reader to export: {clobbered:?}"
    );
}

/// The pid `sluice dev` printed for node `id` (`  node 2  pid 1234  admin …`).
fn printed_pid(printed: &str, id: u64) -> u32 {
    let prefix = format!("node {id}  pid ");
    printed
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("sluice dev printed no pid for node {id}:\n{printed}"))
}

/// The README's tour, as written: paste the export line, find the leader
/// with `sluice cluster status`, `kill -9` it, and the CLI keeps working
/// (its `SLUICE_ADMIN_URL` lists every node) while `sluice dev` reports the
/// death, keeps the others running and brings the node back.
#[test]
fn dev_cluster_rides_out_kill_9_of_the_leader_as_the_readme_shows() {
    let _turn = one_dev_at_a_time();
    let deadline = Deadline::after(Duration::from_secs(90));
    let (_tmp, dir, mut dev, state) = start_dev_in_tempdir("kill", deadline);
    let printed = dev.log_text();
    let urls = exported(&printed, "SLUICE_ADMIN_URL");
    let token = exported(&printed, "SLUICE_ADMIN_TOKEN");
    // The CA the export line names is the dev cluster's.
    let ca = PathBuf::from(exported(&printed, "SLUICE_CACERT"));
    assert_eq!(
        std::fs::read(&ca).ok(),
        std::fs::read(dir.join("ca.pem")).ok(),
        "{printed}"
    );
    assert_eq!(
        urls.split(',').count(),
        3,
        "the export line names every node: {urls}"
    );
    sdk_lines_work(&printed);

    let status = cli_json(&urls, &token, &ca, &["cluster", "status"], deadline);
    let leader = status["leader_id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no leader in {status}"));
    let pid = printed_pid(&printed, leader);
    assert!(
        cmdline_of(pid).is_some_and(|c| c.contains(&format!("node-{leader}"))),
        "pid {pid} printed for node {leader} is that node: {:?}",
        cmdline_of(pid)
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL)
        .expect("kill -9 the leader");

    // The CLI keeps working: a write right away, then a new leader named.
    let created = cli_json(
        &urls,
        &token,
        &ca,
        &["keys", "create", "--name", "after-kill"],
        deadline,
    );
    let id = created["id"].as_str().expect("key id").to_string();
    let mut new_leader = None;
    deadline
        .within(Duration::from_secs(15))
        .poll("a new leader", || {
            let done = cli(
                &urls,
                &token,
                &ca,
                &["cluster", "status", "--json"],
                deadline,
            );
            new_leader = serde_json::from_str::<Value>(&done.stdout)
                .ok()
                .and_then(|s| s["leader_id"].as_u64())
                .filter(|&l| l != leader);
            new_leader.is_some()
        })
        .unwrap_or_else(|t| panic!("{t}\n{}", dev.log_tail(40)));
    eprintln!("node {leader} killed; node {new_leader:?} leads");

    // sluice dev reported it, kept running, and brought the node back.
    deadline
        .within(Duration::from_secs(30))
        .poll(format!("node {leader} to be ready again"), || {
            dev.log_text()
                .contains(&format!("node {leader} is ready again"))
        })
        .unwrap_or_else(|t| panic!("{t}\n{}{}", dev.log_tail(40), node_log_tails(&dir)));
    assert!(dev.try_exit().is_none(), "sluice dev must keep running");
    let printed = dev.log_text();
    assert!(
        printed.contains(&format!("node {leader} exited unexpectedly"))
            && printed.contains("the other nodes keep running"),
        "{printed}"
    );
    // The node that came back has what was written while it was dead.
    let back = list(&state, "admin_urls")[leader as usize - 1]
        .as_str()
        .expect("url")
        .to_string();
    let admin = Admin::new(back.as_str(), Some(token.clone()), &ca);
    deadline
        .within(Duration::from_secs(10))
        .poll(format!("node {leader} to have key {id}"), || {
            admin
                .get(&format!("/admin/v1/keys/{id}?consistency=stale"))
                .0
                == 200
        })
        .unwrap_or_else(|t| panic!("{t}"));
    let keys = cli_json(&urls, &token, &ca, &["keys", "list"], deadline);
    let made = list(&keys, "keys")
        .iter()
        .filter(|k| k["name"] == "after-kill")
        .count();
    assert_eq!(made, 1, "the write was applied once: {keys}");

    stop_dev(dev, &dir, deadline);
}

/// A second `sluice dev` on a directory one is running in is refused at
/// once, saying so, and leaves the running cluster (and its demo) alone.
#[test]
fn second_dev_on_the_same_directory_is_refused_and_leaves_the_first_alone() {
    let _turn = one_dev_at_a_time();
    let deadline = Deadline::after(Duration::from_secs(60));
    let (_tmp, dir, dev, state) = start_dev_in_tempdir("twice", deadline);

    let mut second = Command::new(sluice_bin());
    second
        .args(["dev", "--nodes", "3", "--data-dir"])
        .arg(&dir)
        .env("NO_COLOR", "1");
    let second = run_to_completion(second, deadline.within(Duration::from_secs(10)));
    assert_eq!(second.code(), 1, "{second}");
    assert!(
        second.stderr.contains(&format!(
            "another `sluice dev` (pid {}) is already running",
            dev.pid()
        )),
        "{second}"
    );
    assert!(!second.stdout.contains("ready"), "{second}");

    // The first cluster's demo still points at its own mock, and serves.
    let token = state["admin_token"].as_str().expect("token").to_string();
    let admin_url = list(&state, "admin_urls")[0].as_str().expect("url");
    let (status, provider) =
        Admin::new(admin_url, Some(token), &dir.join("ca.pem")).get("/admin/v1/providers/mock");
    assert_eq!(status, 200, "{provider}");
    let mock_url = state["mock_url"].as_str().expect("mock_url");
    assert_eq!(provider["base_url"], format!("{mock_url}/v1"), "{provider}");
    let proxy = list(&state, "proxy_urls")[0].as_str().expect("proxy url");
    let reply = reqwest::blocking::Client::new()
        .post(format!("{proxy}/v1/chat/completions"))
        .bearer_auth(state["api_key"].as_str().expect("api_key"))
        .json(&serde_json::json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .expect("the first cluster's proxy answers");
    assert_eq!(reply.status().as_u16(), 200);

    stop_dev(dev, &dir, deadline);
}

/// What a newcomer meets in the CLI against a real cluster: keys found by
/// name, a duplicate name refused, limits printed in words, usage with
/// names and refusals apart from upstream errors, and errors that point at
/// the right port and the right token file.
#[test]
fn the_cli_finds_keys_by_name_and_points_at_what_to_fix() {
    let plane = DataPlane::start(
        Cluster::builder()
            .nodes(1)
            .config_extra("[usage]\nflush_interval_ms = 1000\n"),
    );
    let cluster = &plane.cluster;
    let ok = |args: &[&str]| {
        let done = cluster.cli(1, args);
        if done.code() != 0 {
            cluster.fail(format!("sluice {}: {done}", args.join(" ")));
        }
        done
    };

    // Limits in words, and a budget without a period said to be monthly.
    let created = ok(&[
        "keys",
        "create",
        "--name",
        "team-a",
        "--rpm",
        "2",
        "--budget-usd",
        "25",
    ]);
    assert!(
        created
            .stdout
            .contains("2 requests a minute; $25.00 a month (UTC)"),
        "keys create prints the limits it set: {created}"
    );
    assert!(
        created
            .stderr
            .contains("--budget-usd without --budget-period is a monthly budget"),
        "{created}"
    );
    let secret = created
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .unwrap_or_else(|| panic!("no secret printed: {created}"))
        .to_owned();
    let got = ok(&["keys", "get", "team-a"]);
    assert!(
        got.stdout
            .contains("2 requests a minute; $25.00 a month (UTC)")
            && got.stdout.contains("team-a"),
        "keys get, by name, prints the limits: {got}"
    );
    let quota = ok(&["keys", "quota", "team-a"]);
    assert!(quota.stdout.contains("2 requests a minute"), "{quota}");

    // A second key of the same name is refused, unless asked for; then the
    // name no longer picks one key, and the command says which ids.
    let again = cluster.cli(1, &["keys", "create", "--name", "team-a"]);
    assert_eq!(again.code(), 1, "{again}");
    assert!(
        again.stderr.contains("exists already") && again.stderr.contains("--allow-duplicate-name"),
        "{again}"
    );
    let twin = cluster.cli_json(
        1,
        &[
            "keys",
            "create",
            "--name",
            "team-a",
            "--allow-duplicate-name",
        ],
    );
    let twin_id = twin["id"].as_str().expect("id").to_owned();
    let shared = cluster.cli(1, &["keys", "quota", "team-a"]);
    assert_eq!(shared.code(), 2, "{shared}");
    assert!(shared.stderr.contains(&twin_id), "{shared}");
    ok(&["keys", "delete", &twin_id]);
    let nobody = cluster.cli(1, &["keys", "spend", "team-b"]);
    assert_eq!(nobody.code(), 1, "{nobody}");
    assert!(
        nobody
            .stderr
            .contains("no key has the id or name \"team-b\"")
            && nobody.stderr.contains("ids look like key_"),
        "{nobody}"
    );

    // Usage: a refusal over the rpm is counted apart from upstream errors,
    // and shown with the key's name and under a provider group that says
    // what it is.
    let proxy = ProxyClient::new(cluster.proxy_url(1), Some(&secret));
    let body = json!({"model": GPT, "messages": [{"role": "user", "content": "hi"}]});
    let mut refused = 0;
    for _ in 0..20 {
        let reply = proxy.post("/v1/chat/completions", &body);
        match reply.status {
            200 => {}
            429 => {
                refused += 1;
                break;
            }
            other => cluster.fail(format!("answer {other}: {}", reply.text)),
        }
    }
    assert_eq!(refused, 1, "an rpm of 2 refused nothing in 20 requests");
    let mut by_provider = String::new();
    cluster.wait_until(
        Duration::from_secs(20),
        "the refusal in the usage report",
        || {
            by_provider = ok(&[
                "usage", "--by", "provider", "--since", "1h", "--key", "team-a",
            ])
            .stdout;
            by_provider.contains("(refused before routing)")
        },
    );
    let refused_row = by_provider
        .lines()
        .find(|l| l.starts_with("(refused before routing)"))
        .expect("the refused row");
    let header = by_provider
        .lines()
        .find(|l| l.starts_with("PROVIDER"))
        .unwrap_or_else(|| panic!("no header: {by_provider}"));
    assert!(
        header.contains("REFUSED") && header.contains("UPSTREAM ERRORS"),
        "{by_provider}"
    );
    let cells: Vec<&str> = refused_row.split_whitespace().collect();
    // (refused before routing) REQUESTS PROMPT COMPLETION COST REFUSED UPSTREAM AVG
    assert_eq!(cells[cells.len() - 3], "1", "one refusal: {by_provider}");
    assert_eq!(
        cells[cells.len() - 2],
        "0",
        "no upstream error: {by_provider}"
    );
    let by_key = ok(&["usage", "--by", "key", "--since", "1h"]).stdout;
    assert!(
        by_key
            .lines()
            .any(|l| l.contains("key_") && l.split_whitespace().nth(1) == Some("team-a")),
        "usage by key shows the name beside the id: {by_key}"
    );

    // The proxy's port given as the admin URL; a wrong token.
    let mut command = Command::new(sluice_bin());
    command
        .args(["cluster", "status"])
        .env("SLUICE_ADMIN_URL", cluster.proxy_url(1))
        .env("SLUICE_ADMIN_TOKEN", cluster.token());
    let wrong_port = run_to_completion(command, cluster.deadline().within(Duration::from_secs(30)));
    assert_eq!(wrong_port.code(), 1, "{wrong_port}");
    assert!(
        wrong_port
            .stderr
            .contains("this looks like a proxy listener; the admin API is on"),
        "{wrong_port}"
    );
    let wrong_token = cluster.cli_as(1, "sluice-admin-not-this-one", &["keys", "list"]);
    assert_eq!(wrong_token.code(), 1, "{wrong_token}");
    assert!(
        wrong_token.stderr.contains(".sluice-dev/admin-token")
            && wrong_token.stderr.contains("admin-token file"),
        "a refused token says where tokens live: {wrong_token}"
    );
    let as_json = cluster.cli_as(1, "sluice-admin-not-this-one", &["keys", "list", "--json"]);
    let error: Value = serde_json::from_str(as_json.stderr.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {as_json}"));
    assert_eq!(error["error"]["type"], "unauthorized", "{error}");
    assert_eq!(error["error"]["status"], 401, "{error}");

    // tokens list says where the bootstrap token is.
    let tokens = ok(&["tokens", "list"]);
    assert!(
        tokens.stdout.contains("bootstrap token") && tokens.stdout.contains("node configs"),
        "{tokens}"
    );

    // The audit log: who made the keys, from where, page by page.
    let audit = ok(&["audit", "--since", "1h", "--action", "create_key"]);
    assert!(
        audit.stdout.contains("create_key")
            && audit.stdout.contains("bootstrap (bootstrap)")
            && audit.stdout.contains("127.0.0.1:"),
        "{audit}"
    );
    let paged = ok(&["audit", "--limit", "1"]);
    assert!(
        paged.stdout.contains("more: sluice audit --after 1"),
        "{paged}"
    );
    let all: Value =
        serde_json::from_str(&ok(&["audit", "--all", "--limit", "1", "--json"]).stdout)
            .expect("JSON");
    let entries = all["entries"].as_array().expect("entries");
    assert!(entries.len() >= 3, "{all}");
    assert!(
        entries
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()),
        "{all}"
    );
    assert!(
        !all.to_string().contains(&secret),
        "a key secret in the log"
    );
    let bad = cluster.cli(1, &["audit", "--since", "yesterday"]);
    assert_eq!(bad.code(), 2, "{bad}");
}
