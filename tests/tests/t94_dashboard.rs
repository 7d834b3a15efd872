//! The web dashboard in a real browser: headless Chromium, driven through
//! `chromedriver` (WebDriver), logs in to a 3-node cluster's dashboard and
//! shows the cluster: on the leader every member's replication, on a
//! follower every member and a link to the leader's page; quotas and money
//! in words and dollars; every time in one UTC format.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages (`.ci/run`
//! installs them). Without them the test is reported `ignored` with a note,
//! except under CI (`CI` set), where a missing browser fails it (see
//! `sluice_e2e::needs`). Chromium runs with a fresh profile, no sandbox (CI
//! is root), and nothing that would reach the network.

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Map, Value};
use sluice_e2e::dataplane::{DataPlane, GPT, OPENAI_PROVIDER};
use sluice_e2e::needs::{find_program, Missing, Suite};
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

/// The browser's time zone (UTC+05:30, no daylight saving).
const BROWSER_TZ: &str = "Asia/Kolkata";

/// Usage batches every second, so the calls show up soon.
const CONFIG: &str = r#"
[usage]
flush_interval_ms = 1000
"#;

fn main() -> std::process::ExitCode {
    Suite::new()
        .needing(
            "dashboard_logs_in_and_shows_the_cluster",
            browser_programs(),
            dashboard_logs_in_and_shows_the_cluster,
        )
        .run()
}

/// Chromium and chromedriver, or what is missing.
fn browser_programs() -> Result<(PathBuf, PathBuf), Missing> {
    match (find_program("chromium"), find_program("chromedriver")) {
        (Some(chromium), Some(driver)) => Ok((chromium, driver)),
        (chromium, driver) => {
            let missing: Vec<&str> = [("chromium", chromium), ("chromedriver", driver)]
                .into_iter()
                .filter(|(_, found)| found.is_none())
                .map(|(name, _)| name)
                .collect();
            Err(Missing {
                what: format!("{} on PATH", missing.join(" and ")),
                how: "apt-get install chromium chromium-driver".to_owned(),
            })
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
            // Local time far from UTC: a time shown in local time instead
            // of the page's one UTC format is caught.
            .env("TZ", BROWSER_TZ)
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
        // The dashboard is served over HTTPS with a certificate of the
        // cluster's own CA, which this fresh profile has never been told
        // to trust (an operator imports ca.pem once).
        caps.insert("acceptInsecureCerts".into(), json!(true));
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
    /// A follower's dashboard.
    follower_url: String,
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
    check_login_help(client).await;

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
        key_row.contains("whole key: 600 requests a minute; 600 left"),
        "the key's live quota is not in words: {key_row:?}"
    );
    assert!(
        key_row.contains("$0.00 this month (UTC), no budget"),
        "the key's spend is not in dollars: {key_row:?}"
    );
    let errors = visible_errors(client).await;
    assert!(errors.is_empty(), "the page shows errors: {errors:?}");
    // The usage charts were drawn (as inline SVG).
    client
        .find(Locator::Css("#chart-requests svg"))
        .await
        .expect("the requests chart");
    check_times(client).await;
    follower_page(client, expected, deadline).await;
    // Back on the leader's page: still logged in there.
    client
        .goto(&expected.dashboard_url)
        .await
        .expect("opening the leader's dashboard again");
    assert!(
        shown(client, "views").await,
        "the leader's page forgot its login"
    );
}

/// The login form's placeholder fits its field, and the page says where the
/// admin token is.
async fn check_login_help(client: &Client) {
    let measured = client
        .execute(
            r#"const i = document.getElementById("token");
               const st = getComputedStyle(i);
               const ctx = document.createElement("canvas").getContext("2d");
               ctx.font = `${st.fontStyle} ${st.fontWeight} ${st.fontSize} ${st.fontFamily}`;
               return {
                 text: ctx.measureText(i.placeholder).width,
                 room: i.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight),
                 placeholder: i.placeholder,
               };"#,
            vec![],
        )
        .await
        .expect("measuring the token field");
    let text = measured["text"].as_f64().unwrap_or(f64::MAX);
    let room = measured["room"].as_f64().unwrap_or(0.0);
    assert!(
        text > 0.0 && text <= room,
        "the token field's placeholder does not fit: {measured}"
    );
    let help = element(client, "token-where")
        .await
        .text()
        .await
        .expect("the token's whereabouts");
    assert!(
        help.contains(".sluice-dev/admin-token") && help.contains("admin-token file"),
        "the login form does not say where the token is: {help:?}"
    );
}

/// Every time on the page is a 24-hour UTC clock: `updated HH:MM:SS UTC`,
/// and chart labels `HH:MM` of the last hour in UTC (the browser's own
/// zone is 5 h 30 min away).
async fn check_times(client: &Client) {
    let refreshed = element(client, "refreshed")
        .await
        .text()
        .await
        .expect("the refresh time");
    let clock = refreshed
        .strip_prefix("updated ")
        .and_then(|t| t.strip_suffix(" UTC"))
        .unwrap_or_else(|| panic!("not `updated HH:MM:SS UTC`: {refreshed:?}"));
    let shown = minutes_of_day(clock)
        .unwrap_or_else(|| panic!("not `updated HH:MM:SS UTC`: {refreshed:?}"));
    let now = utc_minutes_now();
    assert!(
        (now + 1440 - shown) % 1440 <= 2,
        "`{refreshed}` is not the UTC time (now {}:{:02} UTC)",
        now / 60,
        now % 60
    );
    let mut labels = Vec::new();
    for text in client
        .find_all(Locator::Css("#chart-requests svg > text"))
        .await
        .expect("the chart's labels")
    {
        let label = text.text().await.unwrap_or_default();
        if label.contains(':') {
            labels.push(label);
        }
    }
    assert!(!labels.is_empty(), "the chart has no time labels");
    for label in &labels {
        let minute =
            minutes_of_day(label).unwrap_or_else(|| panic!("chart label {label:?} is not HH:MM"));
        let ago = (now + 1440 - minute) % 1440;
        assert!(
            ago <= 62,
            "chart label {label} is not a UTC time of the last hour (now {}:{:02} UTC; labels {labels:?})",
            now / 60,
            now % 60
        );
    }
    let body = element(client, "views")
        .await
        .text()
        .await
        .expect("the page's text");
    for word in [" AM", " PM", "GMT"] {
        assert!(!body.contains(word), "a time in another format: {body}");
    }
}

/// `HH:MM` or `HH:MM:SS` as minutes since midnight.
fn minutes_of_day(clock: &str) -> Option<u64> {
    let mut parts = clock.split(':');
    let hours: u64 = parts.next()?.parse().ok()?;
    let minutes: u64 = parts.next()?.parse().ok()?;
    let well_formed = clock.len() == 5 || clock.len() == 8;
    (well_formed && hours < 24 && minutes < 60).then_some(hours * 60 + minutes)
}

/// The current UTC time of day, in minutes.
fn utc_minutes_now() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    secs % 86_400 / 60
}

/// A follower's page lists every member and the leader, and points to the
/// leader's page for the replication only the leader knows.
async fn follower_page(client: &Client, expected: &Expected, deadline: Deadline) {
    client
        .goto(&expected.follower_url)
        .await
        .expect("opening a follower's dashboard");
    // Another address, another login.
    log_in(client, &expected.token).await;
    let page = wait_page(client, deadline, "the follower's members", |page| {
        (page.node_ids == expected.ids && page.leader == Some(expected.leader))
            .then(|| format!("{page:?}"))
    })
    .await;
    assert!(shown(client, "members-note").await, "{page}");
    let note = element(client, "members-note")
        .await
        .text()
        .await
        .expect("the note");
    assert!(
        note.contains("follower") && note.contains(&format!("node {}", expected.leader)),
        "the note does not say where replication is known: {note:?}"
    );
    let link = element(client, "leader-dashboard")
        .await
        .attr("href")
        .await
        .expect("the link")
        .unwrap_or_default();
    assert_eq!(link, expected.dashboard_url, "{note}");
    let health = wait_page(client, deadline, "every member's health cell", |page| {
        (page.health.len() == expected.ids.len()).then(|| page.health.clone())
    })
    .await;
    assert_eq!(
        health
            .iter()
            .filter(|h| h.contains(&format!("node {}'s page", expected.leader)))
            .count(),
        expected.ids.len() - 1,
        "each other member points to the leader's page: {health:?}"
    );
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

fn dashboard_logs_in_and_shows_the_cluster((chromium, chromedriver): (PathBuf, PathBuf)) {
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
    let follower = cluster
        .ids()
        .into_iter()
        .find(|&id| id != leader)
        .expect("a follower");
    let expected = Expected {
        dashboard_url: format!("{}/dashboard", cluster.admin_url(leader)),
        follower_url: format!("{}/dashboard", cluster.admin_url(follower)),
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
