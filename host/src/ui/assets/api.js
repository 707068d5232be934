// The agent's JSON API as the pages use it: every request carries the saved ACL token, and
// every failure becomes an ApiError whose message says what to do about it.

const TOKEN_KEY = "allocd.token";

export function savedToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function saveToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

/** What a 403 on this API path means in Nomad's ACL terms. */
function capabilityFor(path) {
  if (path.startsWith("/v1/client/stats")) return "node:read";
  if (path.startsWith("/v1/client/fs/logs")) return "read-logs (or read-fs)";
  if (path.startsWith("/v1/client/fs/")) return "read-fs";
  return "read-job";
}

export class ApiError extends Error {
  constructor(status, body, path) {
    const text = body.trim() || `HTTP ${status}`;
    let message = `${text} (${status})`;
    if (status === 403) {
      const why = savedToken() ? "the saved ACL token does not allow" : "no ACL token is saved, and this needs";
      message = `Permission denied (403): ${why} ${capabilityFor(path)}. ` +
        "Enter a token that allows it in the ACL token field at the top.";
    }
    super(message);
    this.status = status;
  }
}

/** Fetches an API path with the token; resolves to the Response, rejects with ApiError. */
export async function request(path, { signal } = {}) {
  const headers = {};
  const token = savedToken();
  if (token) headers["X-Nomad-Token"] = token;
  const response = await fetch(path, { headers, signal, cache: "no-store" });
  if (!response.ok) throw new ApiError(response.status, await response.text(), path);
  return response;
}

export async function getJson(path, options) {
  return (await request(path, options)).json();
}

/** Runs `step` now and then once a `periodMs` after each start, until the returned stop is called. */
export function every(periodMs, step, onError) {
  const controller = new AbortController();
  let timer = null;
  const run = async () => {
    const started = performance.now();
    try {
      await step(controller.signal);
    } catch (error) {
      if (controller.signal.aborted) return;
      onError(error);
    }
    if (!controller.signal.aborted) {
      timer = setTimeout(run, Math.max(0, periodMs - (performance.now() - started)));
    }
  };
  run();
  return () => {
    controller.abort();
    clearTimeout(timer);
  };
}

export const enc = encodeURIComponent;
