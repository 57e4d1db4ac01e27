// The JSON API as the pages use it: the session's CSRF token on every write, RFC 9457
// problems turned into errors that keep their status, reason and Retry-After, and the
// retry policy every client of a busy room must follow (full jitter, Retry-After honoured).

const CSRF_COOKIE = "podium_csrf";

export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.retryAfter = retryAfter;
  }

  get reason() {
    return this.problem.reason || "";
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

/** The CSRF token of the browser session, or "" when signed out. */
export function csrfToken() {
  return cookie(CSRF_COOKIE);
}

export function forgetSession() {
  document.cookie = `${CSRF_COOKIE}=; Max-Age=0; path=/; SameSite=Lax`;
}

function retryAfterOf(response, body) {
  const header = Number(response.headers.get("Retry-After"));
  if (Number.isFinite(header) && header > 0) return header;
  const field = body && Number(body.retry_after_s);
  return Number.isFinite(field) && field > 0 ? field : null;
}

/**
 * One request. Resolves to {status, data, headers} for any 2xx answer; rejects with an
 * ApiError (or a TypeError when the network fails) otherwise.
 */
export async function request(path, options = {}) {
  const {method = "GET", body, headers = {}, signal, cache = "default"} = options;
  const sent = {...headers};
  let payload = body;
  if (body !== undefined && typeof body !== "string") {
    sent["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  if (method !== "GET" && method !== "HEAD") {
    const token = csrfToken();
    if (token) sent["X-CSRF-Token"] = token;
  }
  const response = await fetch(path, {
    method, body: payload, headers: sent, signal, cache, credentials: "same-origin",
  });
  const type = response.headers.get("Content-Type") || "";
  let data = null;
  if (type.includes("json")) {
    data = await response.json().catch(() => null);
  } else if (response.status !== 204) {
    data = await response.text();
  }
  if (!response.ok && response.status !== 304) {
    throw new ApiError(response.status, typeof data === "object" ? data : null,
      retryAfterOf(response, data));
  }
  return {status: response.status, data, headers: response.headers};
}

/** Like request(), resolving to the body only. */
export async function api(path, options) {
  return (await request(path, options)).data;
}

export function sleep(seconds, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, Math.max(0, seconds) * 1000);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(new DOMException("aborted", "AbortError"));
    }, {once: true});
  });
}

/**
 * How long to wait before retry number `attempt` (0-based): full jitter over an
 * exponential window (so a crowd refused together does not come back together), never
 * sooner than the server's Retry-After.
 */
export function backoff(attempt, retryAfter = null, base = 1, cap = 30) {
  const window = Math.min(cap, base * 2 ** attempt);
  return (retryAfter || 0) + Math.random() * window;
}

/** Whether an error is worth retrying: the network, overload, rate limits, 5xx. */
export function retryable(error) {
  if (!(error instanceof ApiError)) return error.name !== "AbortError";
  return error.status === 429 || error.status >= 500;
}
