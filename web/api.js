// The one door to the JSON API: unwraps the envelope `{success, data, message}` and turns every
// failure (envelope error, unexpected answer, network down) into an ApiError that reads in words.
// Uploads go through XMLHttpRequest because fetch cannot report upload progress.

export class ApiError extends Error {
  constructor({ status = 0, code = 'UNKNOWN', message, details = {}, retryAfter = null }) {
    super(message || 'Something went wrong.');
    this.status = status;
    this.code = code;
    this.details = details && typeof details === 'object' ? details : {};
    this.retryAfter = retryAfter;
  }

  /** The request field the server blamed (422), if any. */
  get field() {
    return typeof this.details.field === 'string' ? this.details.field : null;
  }
}

const FALLBACK = {
  0: 'Could not reach Auravita. Check your connection and try again.',
  401: 'You are not signed in, or your session has ended. Sign in again.',
  403: 'You are not allowed to do that.',
  404: 'That was not found. It may have been removed.',
  413: 'That is too large.',
  415: 'That type of file or data is not accepted.',
  429: 'Too many attempts. Wait a moment and try again.',
  500: 'Something went wrong on our side. Try again shortly.',
  503: 'Auravita is briefly unavailable. Try again shortly.',
};

function fallbackMessage(status) {
  return FALLBACK[status] || FALLBACK[status >= 500 ? 500 : 0] || `The server refused the request (HTTP ${status}).`;
}

function retryAfterOf(headerValue, details) {
  const fromDetails = details && Number(details.retry_after);
  if (Number.isFinite(fromDetails) && fromDetails > 0) return fromDetails;
  const n = Number(headerValue);
  return Number.isFinite(n) && n > 0 ? n : null;
}

/** Turns a status, headers getter and body text into data or an ApiError. */
function settle(status, getHeader, text) {
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (body && body.success === true) return body;
  if (body && body.success === false && body.error) {
    const e = body.error;
    throw new ApiError({
      status,
      code: e.code,
      message: e.message || fallbackMessage(status),
      details: e.details,
      retryAfter: retryAfterOf(getHeader('Retry-After'), e.details),
    });
  }
  if (status >= 200 && status < 300) {
    throw new ApiError({ status, code: 'BAD_RESPONSE', message: 'The server gave an answer this page does not understand.' });
  }
  throw new ApiError({ status, code: 'HTTP_' + status, message: fallbackMessage(status), retryAfter: retryAfterOf(getHeader('Retry-After')) });
}

const listeners = new Set();
/** Called with every ApiError whose status is 401 on a protected route (the session ended). */
export function onSignedOut(fn) {
  listeners.add(fn);
}

function notice(err, path) {
  if (err.status === 401 && path.startsWith('/protected/')) for (const fn of listeners) fn(err);
}

function withQuery(path, query) {
  if (!query) return path;
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => qs.append(k, x));
    else qs.append(k, String(v));
  }
  const s = qs.toString();
  return s ? `${path}?${s}` : path;
}

/** Returns the whole envelope (`{data, message}`); most callers want `call` below. */
export async function envelope(method, path, { body, query } = {}) {
  const url = withQuery(path, query);
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch {
    throw new ApiError({ status: 0, code: 'NETWORK', message: fallbackMessage(0) });
  }
  const text = await res.text().catch(() => '');
  try {
    return settle(res.status, (n) => res.headers.get(n), text);
  } catch (err) {
    notice(err, path);
    throw err;
  }
}

export async function call(method, path, opts) {
  return (await envelope(method, path, opts)).data;
}

export const get = (path, query) => call('GET', path, { query });
export const post = (path, body, query) => call('POST', path, { body, query });

/**
 * Multipart upload with progress. `onProgress(fraction)` gets 0..1 while the bytes go up.
 * Returns `{promise, abort}`.
 */
export function upload(path, formData, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open('POST', path);
    xhr.withCredentials = true;
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener('load', () => {
      try {
        resolve(settle(xhr.status, (n) => xhr.getResponseHeader(n), xhr.responseText).data);
      } catch (err) {
        notice(err, path);
        reject(err);
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError({ status: 0, code: 'NETWORK', message: fallbackMessage(0) })));
    xhr.addEventListener('abort', () => reject(new ApiError({ status: 0, code: 'ABORTED', message: 'The upload was cancelled.' })));
    xhr.send(formData);
  });
  return { promise, abort: () => xhr.abort() };
}

let routesPromise = null;
/**
 * The API paths this server serves, from its OpenAPI document. Screens whose routes are not
 * there say so instead of failing, so the client runs against any stage of the API.
 */
export function availableRoutes() {
  if (!routesPromise) {
    routesPromise = fetch('/openapi.json', { credentials: 'same-origin' })
      .then((r) => (r.ok ? r.json() : { paths: {} }))
      .then((doc) => new Set(Object.keys(doc.paths || {})))
      .catch(() => new Set());
  }
  return routesPromise;
}
