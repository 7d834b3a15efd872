// Values as the dashboard shows them to people: times in one format (a
// 24-hour UTC clock, like the CLI's and the API's UTC times), dollars with
// their cents, and quotas in the words the API gives them.

const pad = (n) => String(n).padStart(2, "0");

/** `14:05:09 UTC` (or `14:05` with `seconds` false: chart labels, whose caption says UTC). */
export function clock(ms, seconds = true) {
  const d = new Date(ms);
  const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  return seconds ? `${hm}:${pad(d.getUTCSeconds())} UTC` : hm;
}

/**
 * Dollars for people: `$12.50`, `$0.00`; an amount under a cent keeps two
 * significant digits (`$0.0042`) so that small spend does not read as none.
 */
export function usd(dollars) {
  if (dollars === null || dollars === undefined) return "—";
  if (dollars === 0) return "$0.00";
  if (Math.abs(dollars) < 0.01) return `$${Number(dollars.toPrecision(2))}`;
  return `$${dollars.toFixed(2)}`;
}

/** Where a bucket applies: the whole key, or the key on one route. */
export function scopeName(scope) {
  return scope.startsWith("route:") ? `on route ${scope.slice("route:".length)}` : "whole key";
}

/**
 * One quota bucket in words: its limit as the API words it (`600 requests
 * a minute`, `$25.00 a month (UTC)`) and what is left of it.
 */
export function bucketText(b) {
  return `${scopeName(b.scope)}: ${b.limit}; ${b.remaining} left`;
}
