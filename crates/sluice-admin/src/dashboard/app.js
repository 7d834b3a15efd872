// The dashboard: a login form, then views of the cluster, routes, keys and
// usage, refreshed from this node's admin API every few seconds. Every value
// is put in the page as text (never as HTML).

import { ApiFailure, Unauthorized, forgetToken, getJson, getText, setToken, token } from "./api.js";
import { breakerStates } from "./metrics.js";
import { legend, stackedBars } from "./chart.js";
import { bucketText, clock, usd } from "./format.js";

/** How often the cluster, routes and keys are read. */
const REFRESH_MS = 5000;
/** Usage reads twelve windows: every sixth refresh is enough. */
const USAGE_EVERY = 6;
/** Usage chart: twelve windows of five minutes. */
const WINDOW_MS = 5 * 60 * 1000;
const WINDOWS = 12;
/** A follower further behind the leader's log than this is "lagging". */
const LAG_WARN = 100;
/** Keys whose quota and spend are read on each refresh (the rest: list only). */
const KEY_DETAILS_MAX = 50;

const $ = (id) => document.getElementById(id);

function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function row(cells, attrs = {}) {
  const tr = el("tr", null, attrs);
  for (const c of cells) tr.append(c instanceof Node ? wrapCell(c) : el("td", c ?? "—"));
  return tr;
}

function wrapCell(node) {
  if (node.tagName === "TD") return node;
  const td = el("td");
  td.append(node);
  return td;
}

function badge(text, tone) {
  return el("span", text, { class: `badge ${tone}` });
}

function showError(id, error) {
  const p = $(id);
  p.textContent = error ? error.message : "";
  p.hidden = !error;
}

// ----- login ---------------------------------------------------------------

let timer = null;
let tick = 0;
/** Bumped on every login and logout: a refresh of an older session stops. */
let session = 0;

function showLogin(message) {
  clearTimeout(timer);
  timer = null;
  session += 1;
  $("views").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  const error = $("login-error");
  error.textContent = message ?? "";
  error.hidden = !message;
  $("token").focus();
}

function loggedOut(error) {
  forgetToken();
  showLogin(`The admin token was refused (401: ${error.message}). Log in again.`);
}

async function login(event) {
  event.preventDefault();
  const candidate = $("token").value.trim();
  if (!candidate) {
    showLogin("Enter an admin token.");
    return;
  }
  $("login-submit").disabled = true;
  try {
    await getJson("/admin/v1/cluster", candidate);
    setToken(candidate);
    $("token").value = "";
    start();
  } catch (e) {
    showLogin(
      e instanceof Unauthorized
        ? `Wrong admin token: the cluster does not know it (${e.message}).`
        : `Cannot log in: ${e.message}`,
    );
  } finally {
    $("login-submit").disabled = false;
  }
}

function start() {
  $("login").hidden = true;
  $("login-error").hidden = true;
  $("views").hidden = false;
  $("logout").hidden = false;
  tick = 0;
  session += 1;
  refresh(session);
}

// ----- refresh loop ----------------------------------------------------------

async function refresh(current) {
  if (current !== session) return;
  const views = [refreshCluster(), refreshRoutes(), refreshKeys()];
  if (tick % USAGE_EVERY === 0) views.push(refreshUsage());
  tick += 1;
  const results = await Promise.allSettled(views);
  if (current !== session) return;
  const refused = results.find((r) => r.status === "rejected" && r.reason instanceof Unauthorized);
  if (refused) {
    loggedOut(refused.reason);
    return;
  }
  $("refreshed").textContent = `updated ${clock(Date.now())}`;
  timer = setTimeout(() => refresh(current), REFRESH_MS);
}

/** Runs `view`, shows its failure in `errorId`; a 401 goes up to the loop. */
async function guarded(errorId, view) {
  try {
    await view();
    showError(errorId, null);
  } catch (e) {
    if (e instanceof Unauthorized) throw e;
    showError(errorId, e instanceof ApiFailure ? e : new Error(`unexpected: ${e.message}`));
  }
}

// ----- cluster ---------------------------------------------------------------

function refreshCluster() {
  return guarded("cluster-error", async () => {
    const [status, ready] = await Promise.all([getJson("/admin/v1/cluster"), readiness()]);
    renderCluster(status, ready);
  });
}

/** This node's `/readyz` (public; 503 with a reason when not ready). */
async function readiness() {
  try {
    const response = await fetch("/readyz", { cache: "no-store", credentials: "omit" });
    return await response.json();
  } catch (e) {
    return { ready: false, reason: e.message };
  }
}

function renderCluster(s, ready) {
  $("cluster-id").textContent = `cluster ${s.cluster_id}`;
  const leader = s.leader_id === null ? "none (election under way or no quorum)" : `node ${s.leader_id}`;
  $("cluster-summary").textContent =
    `Answered by node ${s.node_id} (${s.state}, ${ready.ready ? "ready" : `not ready: ${ready.reason ?? "unknown"}`}). ` +
    `Leader: ${leader}. Term ${s.term}; log ${s.last_log_index ?? "—"}, applied ${s.applied_index ?? "—"}, snapshot ${s.snapshot_index ?? "—"}.`;
  const onLeader = s.leader_id === s.node_id;
  const leaderMember = s.members.find((m) => m.id === s.leader_id);
  const leaderPage = leaderMember ? `${leaderMember.addresses.admin_url}/dashboard` : null;
  renderMembersNote(s, onLeader, leaderPage);
  const rows = s.members.map((m) => {
    const isLeader = m.id === s.leader_id;
    const role = el("td");
    role.append(document.createTextNode(m.role + " "));
    if (isLeader) role.append(badge("leader", "ok"));
    const lag =
      onLeader && m.matched_index !== null && s.last_log_index !== null
        ? Math.max(0, s.last_log_index - m.matched_index)
        : null;
    const link = el("a", m.addresses.admin_url, { href: `${m.addresses.admin_url}/dashboard` });
    return row(
      [el("td", m.id, { class: "mono" }), role, health(s, m, lag, ready, leaderPage), m.matched_index ?? "—", lag ?? "—", link],
      { "data-node-id": m.id, "data-leader": isLeader, class: isLeader ? "leader" : "" },
    );
  });
  $("members").tBodies[0].replaceChildren(...rows);
}

/**
 * On a follower, says where the replication health it cannot know is: the
 * leader's own dashboard, linked (its address keeps its own login).
 */
function renderMembersNote(s, onLeader, leaderPage) {
  const note = $("members-note");
  if (onLeader) {
    note.hidden = true;
    note.replaceChildren();
    return;
  }
  if (leaderPage === null) {
    note.replaceChildren(
      `Node ${s.node_id} has no leader to ask: how far each member's log is behind is known only ` +
        "to a leader, once one is elected.",
    );
  } else {
    note.replaceChildren(
      `Node ${s.node_id} is a follower: only the leader knows how far each member's log is behind. ` +
        `For every member's replication, open the leader's dashboard (node ${s.leader_id}): `,
      el("a", leaderPage, { href: leaderPage, id: "leader-dashboard" }),
      " (log in there too: each address keeps its own login).",
    );
  }
  note.hidden = false;
}

/**
 * A member's health as the answering node can tell it: its own readiness,
 * and (on the leader) how far each follower's replicated log is behind; on
 * a follower, a link to the leader's page, which knows.
 */
function health(s, m, lag, ready, leaderPage) {
  if (m.id === s.node_id) return badge(ready.ready ? "ready" : "not ready", ready.ready ? "ok" : "bad");
  if (s.leader_id !== s.node_id) {
    if (leaderPage === null) return el("span", "unknown (no leader)", { class: "muted" });
    return el("a", `on node ${s.leader_id}'s page`, { href: leaderPage, class: "muted" });
  }
  if (m.matched_index === null) return badge("not replicating", "bad");
  if (lag > LAG_WARN) return badge(`lagging`, "warn");
  return badge("in sync", "ok");
}

// ----- routes ----------------------------------------------------------------

function refreshRoutes() {
  return guarded("routes-error", async () => {
    const [routes, breakers] = await Promise.all([
      getJson("/admin/v1/routes"),
      getText("/metrics").then(breakerStates, (e) => e),
    ]);
    renderRoutes(routes.routes, breakers);
    if (breakers instanceof Error) throw new ApiFailure(`breaker states unavailable: ${breakers.message}`);
  });
}

function breakerCell(breakers, d) {
  if (breakers instanceof Error) return el("span", "unavailable", { class: "muted" });
  const state = breakers.get(`${d.provider}\u0000${d.model}`);
  if (state === undefined) return el("span", "closed (unused here)", { class: "muted" });
  return badge(state, state === "closed" ? "ok" : state === "open" ? "bad" : "warn");
}

function renderRoutes(routes, breakers) {
  const rows = [];
  for (const r of routes) {
    const prices = r.pricing ? `${r.pricing.prompt_usd_per_mtok}, ${r.pricing.completion_usd_per_mtok}` : "—";
    r.deployments.forEach((d, i) => {
      const first = i === 0;
      rows.push(
        row(
          [
            el("td", first ? r.name : "", { class: "mono" }),
            el("td", `${d.provider} / ${d.model}`, { class: "mono" }),
            d.weight,
            breakerCell(breakers, d),
            first ? r.fallbacks?.join(", ") || "—" : "",
            first ? prices : "",
          ],
          first ? { "data-route": r.name } : {},
        ),
      );
    });
  }
  if (rows.length === 0) rows.push(row([el("td", "no routes yet", { colspan: 6, class: "muted" })]));
  $("routes").tBodies[0].replaceChildren(...rows);
}

// ----- keys ------------------------------------------------------------------

function refreshKeys() {
  return guarded("keys-error", async () => {
    const { keys } = await getJson("/admin/v1/keys");
    const details = await Promise.all(
      keys.slice(0, KEY_DETAILS_MAX).map(async (k) => {
        const id = encodeURIComponent(k.id);
        const [quota, spend] = await Promise.all([
          getJson(`/admin/v1/keys/${id}/quota`),
          getJson(`/admin/v1/keys/${id}/spend`),
        ]);
        return { quota, spend };
      }),
    );
    renderKeys(keys, details);
  });
}

function quotaCell(quota) {
  if (!quota) return el("span", "not read (too many keys)", { class: "muted" });
  if (quota.buckets.length === 0) return el("span", "no limits", { class: "muted" });
  const list = el("div");
  for (const b of quota.buckets) {
    const left = b.level + b.held;
    const low = b.capacity > 0 && left / b.capacity < 0.1;
    list.append(el("div", bucketText(b), { class: low ? "warn" : "", title: `refills ${b.refill}` }));
  }
  return list;
}

function spendText(spend) {
  if (!spend) return "—";
  const period = `this ${spend.period} (UTC)`;
  const spent = `${usd(spend.spent_usd)} ${period}`;
  return spend.budget_usd === null
    ? `${spent}, no budget`
    : `${spent} of ${usd(spend.budget_usd)}; ${usd(spend.remaining_usd)} left`;
}

function renderKeys(keys, details) {
  const rows = keys.map((k, i) => {
    const tone = k.status === "active" ? "ok" : k.status === "disabled" ? "warn" : "bad";
    return row(
      [
        el("td", k.id, { class: "mono" }),
        k.name,
        badge(k.status, tone),
        k.allowed_routes.length ? k.allowed_routes.join(", ") : "all",
        quotaCell(details[i]?.quota),
        spendText(details[i]?.spend),
      ],
      { "data-key-id": k.id },
    );
  });
  if (rows.length === 0) rows.push(row([el("td", "no keys yet", { colspan: 6, class: "muted" })]));
  $("keys").tBodies[0].replaceChildren(...rows);
}

// ----- usage -----------------------------------------------------------------

function refreshUsage() {
  return guarded("usage-error", async () => {
    // Windows aligned to whole minutes (the roll-ups' resolution), so no
    // minute is counted in two windows.
    const end = Math.ceil(Date.now() / 60000) * 60000;
    const starts = Array.from({ length: WINDOWS }, (_, i) => end - (WINDOWS - i) * WINDOW_MS);
    const reports = await Promise.all(
      starts.map((from) => {
        const q = new URLSearchParams({
          group_by: "route",
          from: new Date(from).toISOString(),
          to: new Date(from + WINDOW_MS).toISOString(),
          consistency: "stale",
        });
        return getJson(`/admin/v1/usage?${q}`);
      }),
    );
    renderUsage(starts, reports);
  });
}

function renderUsage(starts, reports) {
  const series = [...new Set(reports.flatMap((r) => r.groups.map((g) => g.group)))].sort();
  const windows = (field) =>
    reports.map((r, i) => ({
      label: clock(starts[i], false),
      values: Object.fromEntries(r.groups.map((g) => [g.group, g[field]])),
    }));
  stackedBars($("chart-requests"), windows("requests"), series);
  stackedBars($("chart-tokens"), windows("total_tokens"), series);
  legend($("chart-legend"), series);
  const totals = new Map(
    series.map((s) => [s, { requests: 0, refused: 0, upstream: 0, tokens: 0, cost: 0, latency: 0 }]),
  );
  for (const r of reports) {
    for (const g of r.groups) {
      const t = totals.get(g.group);
      t.requests += g.requests;
      t.refused += g.refused ?? 0;
      t.upstream += g.upstream_errors ?? g.errors;
      t.tokens += g.total_tokens;
      t.cost += g.cost_micro_usd;
      t.latency += g.latency_ms_sum;
    }
  }
  const rows = series.map((s) => {
    const t = totals.get(s);
    return row(
      [
        el("td", s, { class: "mono" }),
        t.requests,
        t.refused,
        t.upstream,
        t.tokens,
        usd(t.cost / 1e6),
        t.requests ? (t.latency / t.requests).toFixed(1) : "—",
      ],
      { "data-usage-route": s },
    );
  });
  if (rows.length === 0) rows.push(row([el("td", "no usage in the last hour", { colspan: 7, class: "muted" })]));
  $("usage").tBodies[0].replaceChildren(...rows);
}

// ----- wiring ----------------------------------------------------------------

$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", () => {
  forgetToken();
  showLogin(null);
});
if (token()) start();
else showLogin(null);
