// modelgate admin console — calls to the admin API.
// Same-origin credentials (the session cookie); every change carries
// X-Modelgate-CSRF: 1 (the browser adds Origin, which the gateway checks).
// SPDX-License-Identifier: Apache-2.0

export class ApiError extends Error {
  constructor(status, body, code, param) {
    super(body);
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

// Returns { status, etag, json, text }. Throws ApiError for >= 400 with the
// server's message (OpenAI error shape), so callers can show it as is.
export async function api(method, path, { body, etag, accept = 'application/json' } = {}) {
  const headers = { Accept: accept };
  if (method !== 'GET' && method !== 'HEAD') headers['X-Modelgate-CSRF'] = '1';
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (etag) headers['If-Match'] = etag;
  let res;
  try {
    res = await fetch(path, {
      method, headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, `The gateway could not be reached (${e.message}).`);
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* CSV or text */ }
  if (res.status >= 400) {
    const err = json && json.error ? json.error : {};
    let msg = err.message || `${res.status} ${res.statusText}`;
    if (res.status === 401) msg = 'Your session has ended. Sign in again to continue.';
    throw new ApiError(res.status, msg, err.code, err.param);
  }
  return { status: res.status, etag: res.headers.get('ETag'), json, text };
}

export const loginUrl = () => '/auth/login?return_to=%2Fadmin%2F';
