// Circuit-breaker state from this node's Prometheus text (`/metrics` on the
// admin listener): the `sluice_proxy_breaker_state{provider, model}` gauge,
// 0 closed, 1 open, 2 half-open. Only that family is read.

const FAMILY = "sluice_proxy_breaker_state";
const STATES = { 0: "closed", 1: "open", 2: "half-open" };

/** Parses `{a="x",b="y\"z"}` label text into an object. */
export function parseLabels(text) {
  const labels = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  let m;
  while ((m = re.exec(text)) !== null) {
    labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
  }
  return labels;
}

/** Map from `provider\u0000model` to `closed` / `open` / `half-open`. */
export function breakerStates(text) {
  const states = new Map();
  for (const line of text.split("\n")) {
    if (!line.startsWith(FAMILY + "{")) continue;
    const close = line.lastIndexOf("}");
    if (close < 0) continue;
    const labels = parseLabels(line.slice(FAMILY.length + 1, close));
    const value = Number(line.slice(close + 1).trim().split(/\s+/)[0]);
    states.set(`${labels.provider}\u0000${labels.model}`, STATES[value] ?? `unknown (${value})`);
  }
  return states;
}
