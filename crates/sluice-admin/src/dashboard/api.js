// The admin API as the dashboard uses it: the admin token from this tab's
// session storage, sent as `Authorization: Bearer`, and the API's own error
// format (`{"error": {"type", "message", "field"}}`) turned into exceptions.

const TOKEN_KEY = "sluice.admin_token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** The admin token was refused: the caller must bring the login back. */
export class Unauthorized extends Error {}

/** Any other failed call, with the API's message when it sent one. */
export class ApiFailure extends Error {}

/** GET `path` (same origin) with the token; resolves to the parsed JSON. */
export async function getJson(path, tokenValue = token()) {
  let response;
  try {
    response = await fetch(path, {
      headers: { Authorization: `Bearer ${tokenValue ?? ""}`, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
  } catch (e) {
    throw new ApiFailure(`${path}: the node did not answer (${e.message})`);
  }
  if (response.status === 401) {
    throw new Unauthorized(await errorMessage(response));
  }
  if (!response.ok) {
    throw new ApiFailure(`${path}: ${response.status} ${await errorMessage(response)}`);
  }
  return response.json();
}

/** GET a public text document (`/metrics`). */
export async function getText(path) {
  const response = await fetch(path, { cache: "no-store", credentials: "omit" });
  if (!response.ok) {
    throw new ApiFailure(`${path}: ${response.status}`);
  }
  return response.text();
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    const e = body.error ?? {};
    return e.field ? `${e.type}: ${e.message} (field ${e.field})` : `${e.type}: ${e.message}`;
  } catch {
    return response.statusText;
  }
}
