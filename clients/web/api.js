// Talking to the server: relative URLs (the page may sit behind a proxy prefix) and the ?token= bearer token.

const TOKEN_PARAM = "token";
const TOKEN_STORAGE_KEY = "swapstream.token";

/**
 * Read ?token= once, keep it for this tab (sessionStorage, so a reload still works), and take it out of the
 * address bar and the history entry: a token in the URL ends up in screenshots, shared links and history.
 * Other query parameters (such as ?watch=) stay.
 */
function takeTokenFromUrl() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get(TOKEN_PARAM);
  if (fromUrl === null) {
    try { return window.sessionStorage.getItem(TOKEN_STORAGE_KEY); } catch (_) { return null; }
  }
  try { window.sessionStorage.setItem(TOKEN_STORAGE_KEY, fromUrl); } catch (_) { /* storage off: memory only */ }
  url.searchParams.delete(TOKEN_PARAM);
  window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
  return fromUrl;
}

const TOKEN = takeTokenFromUrl();

/** The bearer token the page was opened with (?token=..., read once), or null. */
export function pageToken() {
  return TOKEN;
}

/** Headers for a request, with Authorization when the page URL carries a token. */
export function authHeaders(extra = {}) {
  const token = pageToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : { ...extra };
}

/** An error the page can show as is. */
export class ServerError extends Error {}

/** fetch() that turns network failures and error statuses into ServerError with a readable message. */
export async function request(path, init = {}) {
  let response;
  try {
    response = await fetch(path, { ...init, headers: authHeaders(init.headers || {}) });
  } catch (err) {
    throw new ServerError(`The server is unreachable (${new URL(path, window.location.href).origin}): ${err.message}`);
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = body.error || JSON.stringify(body);
    } catch (_) { /* not JSON: keep the status text */ }
    const hint = response.status === 401 ? " Open the page with ?token=YOUR_TOKEN." : "";
    throw new ServerError(`The server answered ${response.status}: ${detail}.${hint}`);
  }
  return response;
}

/** GET a JSON document. */
export async function getJSON(path) {
  return (await request(path)).json();
}

/** POST a JSON body and return the JSON answer. */
export async function postJSON(path, body) {
  const response = await request(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return response.json();
}
