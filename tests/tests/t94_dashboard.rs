//! The web dashboard in a real browser: headless Chromium, driven through
//! `chromedriver` (WebDriver), logs in to a 3-node cluster's dashboard and
//! shows the cluster.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages (`.ci/run`
//! installs them). Without them the test is skipped with a message, except
//! under CI (`CI` set), where a missing browser fails it. Chromium runs with
//! a fresh profile, no sandbox (CI is root), and nothing that would reach
//! the network.

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Map, Value};
use sluice_e2e::dataplane::{DataPlane, GPT, OPENAI_PROVIDER};
use sluice_e2e::{Cluster, Deadline};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The whole test: three nodes, a browser, and the page's refreshes.
const TEST_BUDGET: Duration = Duration::from_secs(150);
/// How long the page gets to show something after an action.
const PAGE_BUDGET: Duration = Duration::from_secs(30);
/// How often the page is looked at while waiting.
const PAGE_POLL: Duration = Duration::from_millis(200);

/// The route and key this test makes (besides the harness's standard ones).
const ROUTE: &str = "dashboard-route";
const KEY_NAME: &str = "dashboard-key";
/// Calls sent through the leader's proxy on [`ROUTE`].
const CALLS: u64 = 3;

/// Usage batches every second, so the calls show up soon.
const CONFIG: &str = r#"
[usage]
flush_interval_ms = 1000
"#;

/// `name` in `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Chromium and chromedriver, or `None` (after saying why) when the test
/// should be skipped.
fn browser_programs() -> Option<(PathBuf, PathBuf)> {
    let chromium = find_program("chromium");
    let driver = find_program("chromedriver");
    match (chromium, driver) {
        (Some(chromium), Some(driver)) => Some((chromium, driver)),
        (chromium, driver) => {
            let missing = format!(
                "{}{}",
                if chromium.is_none() { "chromium " } else { "" },
                if driver.is_none() { "chromedriver" } else { "" }
            );
            if std::env::var_os("CI").is_some() {
                panic!("CI is set but {missing} is missing: .ci/run installs the chromium and chromium-driver packages");
            }
            eprintln!(
                "SKIPPED t94_dashboard: {missing} not found in PATH (apt-get install chromium chromium-driver)"
            );
            None
        }
    }
}

/// A port free on loopback now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A `chromedriver` child in its own process group, so that dropping it
/// ends it and every browser it started, even when the test panics.
struct ChromeDriver {
    child: Child,
    url: String,
    /// Chromium's profile and chromedriver's log.
    dir: tempfile::TempDir,
}

impl ChromeDriver {
    fn start(program: &PathBuf, deadline: Deadline) -> ChromeDriver {
        let dir = tempfile::tempdir().expect("a temporary directory for the browser");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("chromedriver.log")).expect("log file");
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!(
                "--log-path={}",
                dir.path().join("chromedriver-verbose.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("starting chromedriver");
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let status = format!("{}/status", driver.url);
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("HTTP client");
        let answered = deadline.within(Duration::from_secs(20)).poll("", || {
            http.get(&status)
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
        if answered.is_err() {
            panic!(
                "chromedriver did not answer on {status}; its log:\n{}",
                driver.log()
            );
        }
        driver
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// What chromedriver is asked for: headless Chromium with a fresh
    /// profile, nothing that reaches the network.
    fn capabilities(&self, chromium: &PathBuf) -> Map<String, Value> {
        let profile = self.dir.path().join("profile");
        let options = json!({
            "binary": chromium,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,1600",
                format!("--user-data-dir={}", profile.display()),
            ],
        });
        let mut caps = Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), options);
        caps
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The group is chromedriver's own (process_group(0)): it and the
        // browsers it started, nothing else.
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The page as the test reads it.
#[derive(Debug, Default)]
struct Page {
    node_ids: Vec<u64>,
    leader: Option<u64>,
    health: Vec<String>,
    routes: Vec<String>,
    /// Route name → the breaker cell of its first deployment.
    breakers: Vec<(String, String)>,
    key_rows: Vec<String>,
    /// Route name → its requests in the last hour.
    usage: Vec<(String, String)>,
    /// Bars drawn in the requests chart.
    bars: usize,
}

/// The rows of table `id` that carry `attr`: its value and the cells' text.
async fn rows(
    client: &Client,
    id: &str,
    attr: &str,
) -> Result<Vec<(String, Vec<String>)>, fantoccini::error::CmdError> {
    let mut found = Vec::new();
    for row in client
        .find_all(Locator::Css(&format!("#{id} tbody tr[{attr}]")))
        .await?
    {
        let value = row.attr(attr).await?.unwrap_or_default();
        let mut cells = Vec::new();
        for cell in row.find_all(Locator::Css("td")).await? {
            cells.push(cell.text().await?);
        }
        found.push((value, cells));
    }
    Ok(found)
}

async fn read_page(client: &Client) -> Result<Page, fantoccini::error::CmdError> {
    let mut page = Page::default();
    for row in client
        .find_all(Locator::Css("#members tbody tr[data-leader=\"true\"]"))
        .await?
    {
        page.leader = row.attr("data-node-id").await?.and_then(|v| v.parse().ok());
    }
    for (id, cells) in rows(client, "members", "data-node-id").await? {
        page.node_ids.push(id.parse().unwrap_or(0));
        page.health.push(cells.get(2).cloned().unwrap_or_default());
    }
    for (route, cells) in rows(client, "routes", "data-route").await? {
        page.breakers
            .push((route.clone(), cells.get(3).cloned().unwrap_or_default()));
        page.routes.push(route);
    }
    for (_, cells) in rows(client, "keys", "data-key-id").await? {
        page.key_rows.push(cells.join(" "));
    }
    for (route, cells) in rows(client, "usage", "data-usage-route").await? {
        page.usage
            .push((route, cells.get(1).cloned().unwrap_or_default()));
    }
    page.bars = client
        .find_all(Locator::Css("#chart-requests svg rect"))
        .await?
        .len();
    page.node_ids.sort_unstable();
    Ok(page)
}

/// Polls `check` on the page until it holds or `budget` (capped by
/// `deadline`) passes; then fails with the last thing seen.
async fn wait_page<T>(
    client: &Client,
    deadline: Deadline,
    what: &str,
    mut check: impl FnMut(&Page) -> Option<T>,
) -> T {
    let deadline = deadline.within(PAGE_BUDGET);
    let mut last: String;
    loop {
        match read_page(client).await {
            Ok(page) => {
                if let Some(found) = check(&page) {
                    return found;
                }
                last = format!("{page:?}");
            }
            Err(e) => last = format!("page unreadable: {e}"),
        }
        if deadline.passed() {
            let errors = visible_errors(client).await;
            panic!("timed out waiting for {what}; last seen {last}; errors shown: {errors:?}");
        }
        tokio::time::sleep(PAGE_POLL.min(deadline.remaining())).await;
    }
}

/// The text of every error paragraph the page shows.
async fn visible_errors(client: &Client) -> Vec<String> {
    let mut shown = Vec::new();
    if let Ok(errors) = client.find_all(Locator::Css(".error")).await {
        for e in errors {
            if e.is_displayed().await.unwrap_or(false) {
                shown.push(e.text().await.unwrap_or_default());
            }
        }
    }
    shown
}

/// Waits until `#login-error` is shown and returns its text.
async fn wait_login_error(client: &Client, deadline: Deadline) -> String {
    let deadline = deadline.within(PAGE_BUDGET);
    loop {
        if let Ok(error) = client.find(Locator::Id("login-error")).await {
            if error.is_displayed().await.unwrap_or(false) {
                let text = error.text().await.unwrap_or_default();
                if !text.is_empty() {
                    return text;
                }
            }
        }
        assert!(!deadline.passed(), "the login error never showed");
        tokio::time::sleep(PAGE_POLL.min(deadline.remaining())).await;
    }
}

/// The element with id `id`; fails the test when the page lacks it.
async fn element(client: &Client, id: &str) -> fantoccini::elements::Element {
    client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id} on the page: {e}"))
}

/// Clicks the element with id `id`.
async fn click(client: &Client, id: &str) {
    let result = element(client, id).await.click().await;
    result.unwrap_or_else(|e| panic!("clicking #{id}: {e}"));
}

/// Whether the element with id `id` is shown.
async fn shown(client: &Client, id: &str) -> bool {
    let result = element(client, id).await.is_displayed().await;
    result.unwrap_or_else(|e| panic!("visibility of #{id}: {e}"))
}

async fn log_in(client: &Client, token: &str) {
    let field = element(client, "token").await;
    field.clear().await.expect("clearing the token field");
    field.send_keys(token).await.expect("typing the token");
    click(client, "login-submit").await;
}

struct Expected {
    dashboard_url: String,
    token: String,
    ids: Vec<u64>,
    leader: u64,
    key_id: String,
}

async fn drive(client: &Client, expected: &Expected, deadline: Deadline) {
    client
        .goto(&expected.dashboard_url)
        .await
        .expect("opening the dashboard");

    // The login form, and nothing else, before a token is given.
    assert!(shown(client, "login-form").await, "no login form");
    assert!(
        !shown(client, "views").await,
        "data shown before logging in"
    );

    // A wrong token: the form stays, with a clear message.
    log_in(client, "not-an-admin-token").await;
    let message = wait_login_error(client, deadline).await;
    assert!(
        message.contains("Wrong admin token"),
        "the error after a wrong token: {message:?}"
    );
    assert!(shown(client, "login-form").await);
    assert!(!shown(client, "views").await, "a wrong token was let in");

    // The right one: the cluster, its leader, the route and the key.
    log_in(client, &expected.token).await;
    let page = wait_page(client, deadline, "the cluster, route and key", |page| {
        let complete = page.node_ids == expected.ids
            && page.leader == Some(expected.leader)
            && page.routes.iter().any(|r| r == ROUTE)
            && page.routes.iter().any(|r| r == GPT)
            && page
                .key_rows
                .iter()
                .any(|k| k.contains(&expected.key_id) && k.contains(KEY_NAME));
        complete.then(|| format!("{page:?}"))
    })
    .await;

    // Opened on the leader, the page knows every member's replication.
    let health = wait_page(client, deadline, "every member healthy", |page| {
        let healthy = page.health.len() == expected.ids.len()
            && page.health.iter().all(|h| h == "ready" || h == "in sync");
        healthy.then(|| page.health.clone())
    })
    .await;
    assert_eq!(health.len(), 3, "{page}");

    let key_row = client
        .find(Locator::Css(&format!(
            "#keys tr[data-key-id=\"{}\"]",
            expected.key_id
        )))
        .await
        .expect("the key's row")
        .text()
        .await
        .expect("the key's row text");
    assert!(
        key_row.contains("key requests:") && key_row.contains("/ 600"),
        "the key's live quota is not shown: {key_row:?}"
    );
    assert!(
        key_row.contains("$0.000000"),
        "the key's spend is not shown: {key_row:?}"
    );
    let errors = visible_errors(client).await;
    assert!(errors.is_empty(), "the page shows errors: {errors:?}");
    // The usage charts were drawn (as inline SVG).
    client
        .find(Locator::Css("#chart-requests svg"))
        .await
        .expect("the requests chart");
}

/// Runs one phase of the page, bounded by the test's deadline.
async fn within_deadline(cluster: &Cluster, phase: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(cluster.deadline().remaining(), phase)
        .await
        .unwrap_or_else(|_| cluster.fail("the dashboard test ran out of time"))
}

/// After traffic, a reload (the token survives it, in the tab's session
/// storage) shows the route's usage, a chart, and its breaker on this node.
async fn after_traffic(client: &Client, deadline: Deadline) {
    client.refresh().await.expect("reloading the dashboard");
    assert!(
        shown(client, "views").await,
        "a reload asked for the token again"
    );
    let calls = CALLS.to_string();
    wait_page(client, deadline, "the route's usage and breaker", |page| {
        let used = page.usage.iter().any(|(r, n)| r == ROUTE && *n == calls);
        let closed = page
            .breakers
            .iter()
            .any(|(r, b)| r == ROUTE && b == "closed");
        (used && closed && page.bars > 0).then_some(())
    })
    .await;
    let errors = visible_errors(client).await;
    assert!(errors.is_empty(), "the page shows errors: {errors:?}");

    // Logging out forgets the token: a reload asks for it again.
    click(client, "logout").await;
    client.refresh().await.expect("reloading the dashboard");
    assert!(
        shown(client, "login-form").await,
        "no login form after logging out"
    );
    assert!(!shown(client, "views").await);
}

#[test]
fn dashboard_logs_in_and_shows_the_cluster() {
    let Some((chromium, chromedriver)) = browser_programs() else {
        return;
    };
    let plane = DataPlane::start(
        Cluster::builder()
            .nodes(3)
            .fast_elections()
            .config_extra(CONFIG)
            .budget(TEST_BUDGET),
    );
    let cluster = &plane.cluster;
    plane.create_route(ROUTE, &[(OPENAI_PROVIDER, "mock-gpt", 2)], &[GPT]);
    let key = plane.write(
        "/admin/v1/keys",
        &json!({"name": KEY_NAME, "allowed_routes": [ROUTE], "rpm": 600}),
    );
    let key_id = key["id"].as_str().expect("key id").to_string();
    plane.wait_served(&plane.key, &[ROUTE]);
    let leader = cluster.leader();
    let expected = Expected {
        dashboard_url: format!("{}/dashboard", cluster.admin_url(leader)),
        token: cluster.token().to_string(),
        ids: cluster.ids(),
        leader,
        key_id,
    };

    let driver = ChromeDriver::start(&chromedriver, cluster.deadline());
    // The browser is async; the cluster harness blocks: each phase of the
    // page runs in `block_on`, the cluster's work between them.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let client = runtime.block_on(async {
        ClientBuilder::new(HttpConnector::new())
            .capabilities(driver.capabilities(&chromium))
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not start Chromium: {e}\n{}",
                    driver.log()
                )
            })
    });
    runtime.block_on(within_deadline(
        cluster,
        drive(&client, &expected, cluster.deadline()),
    ));

    let proxy = plane.proxy(leader);
    for _ in 0..CALLS {
        let body = json!({"model": ROUTE, "messages": [{"role": "user", "content": "hello"}]});
        let reply = proxy.post("/v1/chat/completions", &body);
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let admin = cluster.admin(leader);
    cluster.wait_until(
        Duration::from_secs(20),
        "the calls in the usage report",
        || {
            let (status, report) = admin.get(&format!(
                "/admin/v1/usage?from=-1h&group_by=route&route={ROUTE}"
            ));
            status == 200 && report["total"]["requests"] == CALLS
        },
    );

    runtime.block_on(within_deadline(
        cluster,
        after_traffic(&client, cluster.deadline()),
    ));
    // Ends the browser; the driver's drop ends whatever is left.
    let _ = runtime.block_on(client.close());
}
