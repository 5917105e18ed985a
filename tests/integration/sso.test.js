// modelgate — browser single sign-on against a real OpenID provider
// (oidc-provider, tests/idp/provider.js), driven by a small cookie-jar
// "browser" in node. Covers the liboauth2 1.4.5.4 defects the gateway works
// around (LIBOAUTH2.md): X-Forwarded-Proto ",https", unchecked nonce /
// state replay, undecoded query parameters (%2B), IdP error without a
// response, expired sessions, no logout; and a stale state (a sign-in older
// than session.login_timeout, on a second gateway with a 2 s timeout).
//
// Uses PostgreSQL for sessions when available (tests/integration/lib/pg.js);
// otherwise the gateway keeps sessions in memory and the server-side
// logout check runs against that.
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const https = require('node:https');
const crypto = require('node:crypto');
const { spawnSync, execFileSync } = require('node:child_process');
const path = require('node:path');
const h = require('./lib/harness');
const pgLib = require('./lib/pg');

const IDP_DIR = path.join(__dirname, '..', 'idp');
execFileSync(path.join(IDP_DIR, 'ensure.sh'), { stdio: 'inherit' });
const { startProvider } = require('../idp/provider');

const HAVE_PG = pgLib.available();
let pg, mock, idp, gw, gwPort, origin;

/* ------------------------------------------------------------ a tiny browser */

class Browser {
  constructor(ca) { this.ca = ca; this.jar = new Map(); this.setCookies = []; }
  cookies(o) { return this.jar.get(o) || new Map(); }
  store(o, lines) {
    const m = this.cookies(o);
    for (const line of lines || []) {
      this.setCookies.push({ origin: o, line });
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => /^\s*max-age\s*=\s*0\s*$/i.test(a)) || value === '';
      if (expired) m.delete(name); else m.set(name, value);
    }
    this.jar.set(o, m);
  }
  cookieHeader(o) {
    return [...this.cookies(o)].map(([k, v]) => `${k}=${v}`).join('; ');
  }
  request(url, { method = 'GET', body, headers = {} } = {}) {
    const u = new URL(url);
    const lib = u.protocol === 'https:' ? https : http;
    const hdrs = { Accept: 'text/html', ...headers };
    const ck = this.cookieHeader(u.origin);
    if (ck && !('Cookie' in hdrs)) hdrs.Cookie = ck;
    if (body !== undefined) hdrs['Content-Type'] = hdrs['Content-Type'] || 'application/x-www-form-urlencoded';
    return new Promise((resolve, reject) => {
      const req = lib.request({
        host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: hdrs, agent: false,
        ...(u.protocol === 'https:' ? { ca: this.ca } : {}),
      }, (res) => {
        const chunks = [];
        res.on('data', (d) => chunks.push(d));
        res.on('end', () => {
          this.store(u.origin, res.headers['set-cookie']);
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), url });
        });
      });
      req.setTimeout(15000, () => req.destroy(new Error(`${method} ${url} timed out`)));
      req.on('error', reject);
      req.end(body);
    });
  }
  // GETs url and follows redirects; stopAt(url) may end the walk before a hop.
  async follow(url, { max = 15, stopAt } = {}) {
    const hops = [];
    for (let i = 0; i < max; i++) {
      if (stopAt && stopAt(url)) return { hops, next: url };
      const r = await this.request(url);
      hops.push(r);
      if (![301, 302, 303, 307].includes(r.status)) return { hops, last: r };
      url = new URL(r.headers.location, url).toString();
    }
    throw new Error('too many redirects');
  }
}

// Runs a whole login: gateway /auth/login -> IdP -> dev login form -> callback.
// Returns the callback response (and the hops). at / via: another gateway
// origin and its IdP (default: the shared ones).
async function login(b, returnTo = '/v1/models', user = 'alice', { stopBeforeCallback = false, at, via } = {}) {
  const gwOrigin = at || origin, p = via || idp;
  const start = `${gwOrigin}/auth/login?return_to=${encodeURIComponent(returnTo)}`;
  let r = await b.follow(start, { stopAt: (u) => u.startsWith(`${p.issuer}/interaction/`) });
  assert.ok(r.next, `login did not reach the IdP login form: ${JSON.stringify(r.hops.map((x) => [x.status, x.url]))}`);
  const uid = r.next.split('/interaction/')[1].split(/[/?]/)[0];
  const form = await b.request(r.next);
  assert.equal(form.status, 200, form.body);
  const post = await b.request(`${p.issuer}/interaction/${uid}`, {
    method: 'POST', body: `prompt=login&login=${user}&password=x`,
  });
  assert.ok([302, 303].includes(post.status), `login POST: ${post.status} ${post.body.slice(0, 300)}`);
  const isCb = (u) => u.startsWith(`${gwOrigin}/auth/callback`);
  r = await b.follow(new URL(post.headers.location, p.issuer).toString(), { stopAt: isCb });
  assert.ok(r.next, `IdP did not redirect to the callback: ${JSON.stringify(r.hops.map((x) => [x.status, x.url, x.body.slice(0, 200)]))}`);
  if (stopBeforeCallback) return { callbackUrl: r.next };
  const cb = await b.request(r.next);
  return { cb, callbackUrl: r.next };
}

const sessionOf = (b, o = origin) => b.cookies(o).get('__Host-mg_session');

// A gateway on port for the IdP p; session holds extra session keys.
function startSsoGateway(port, p, session = {}) {
  return h.startGateway({
    mock,
    configOverrides: (cfg, ctx) => {
      cfg.listen[0].address = `127.0.0.1:${port}`;
      cfg.public_url = `https://127.0.0.1:${port}`;
      if (pg) cfg.database = { url: pg.url };
      cfg.oidc = {
        issuer: p.issuer, client_id: 'modelgate', client_secret: 'test-secret',
        scopes: ['openid', 'email', 'profile', 'groups'], audiences: ['modelgate'],
        claims: { groups: 'groups', email: 'email', cost_center: 'department' },
      };
      cfg.session = { secret: 's'.repeat(40), lifetime: '1h', ...session };
      return cfg;
    },
  });
}

before(async () => {
  [gwPort] = await h.freePorts(1);
  origin = `https://127.0.0.1:${gwPort}`;
  idp = await startProvider({ redirectUri: `${origin}/auth/callback`, postLogoutRedirectUri: `${origin}/` });
  mock = await h.startMock();
  if (HAVE_PG) pg = await pgLib.startPg();
  gw = await startSsoGateway(gwPort, idp);
  if (HAVE_PG) {
    const m = spawnSync(h.gatewayBin(), ['migrate', '-c', gw.configPath], { encoding: 'utf8' });
    assert.equal(m.status, 0, `migrate failed: ${m.stderr}`);
  }
});

after(async () => {
  if (gw) gw.assertNoSanitizerReports();
  await h.cleanup();
  if (idp) await idp.close();
  if (pg) pg.destroy();
});

/* ------------------------------------------------------------ the happy path */

test('full login: cookie attributes, /auth/me, API call with the session, logout', async () => {
  const b = new Browser(gw.ca);
  // A browser without a session is sent to sign in (API clients get 401).
  const first = await b.request(`${origin}/v1/models?x=1`);
  assert.equal(first.status, 302);
  assert.equal(first.headers.location, '/auth/login?return_to=%2Fv1%2Fmodels%3Fx%3D1');
  const api = await h.request(gw, { port: gwPort, path: '/v1/models' });
  assert.equal(api.status, 401);

  const start = await b.request(`${origin}/auth/login?return_to=%2Fv1%2Fmodels`);
  assert.equal(start.status, 302);
  const az = new URL(start.headers.location);
  assert.equal(az.origin, idp.issuer);
  assert.equal(az.searchParams.get('redirect_uri'), `${origin}/auth/callback`);
  assert.equal(az.searchParams.get('code_challenge_method'), 'S256');
  assert.ok(az.searchParams.get('nonce') && az.searchParams.get('state'));
  const stateCookie = (start.headers['set-cookie'] || []).find((c) => c.startsWith('__Host-mg_state_'));
  assert.ok(stateCookie, 'state cookie set');
  assert.match(stateCookie, /Secure/);
  assert.match(stateCookie, /HttpOnly/);

  const { cb } = await login(b, '/v1/models');
  assert.equal(cb.status, 302, cb.body);
  assert.equal(cb.headers.location, '/v1/models');
  const sc = (cb.headers['set-cookie'] || []).find((c) => c.startsWith('__Host-mg_session='));
  assert.ok(sc, `no session cookie: ${JSON.stringify(cb.headers['set-cookie'])}`);
  assert.match(sc, /^__Host-mg_session=[A-Za-z0-9_-]{43}; /);
  assert.match(sc, /; Path=\/(;|$)/);
  assert.match(sc, /; Secure(;|$)/);
  assert.match(sc, /; HttpOnly(;|$)/);
  assert.match(sc, /; SameSite=Lax(;|$)/);
  assert.doesNotMatch(sc, /Domain=/i);
  // liboauth2's own session cookie never reaches the browser.
  assert.ok(!(cb.headers['set-cookie'] || []).some((c) => c.startsWith('mg_oidc_tmp')), 'internal cookie leaked');
  const sid = sessionOf(b);

  if (pg) {
    const hash = crypto.createHash('sha256').update(sid).digest('hex');
    assert.equal(pg.sql(`SELECT subject FROM auth_sessions WHERE id_hash = '${hash}'`), 'alice');
    const dump = pg.sql('SELECT row_to_json(s)::text FROM auth_sessions s');
    assert.ok(!dump.includes(sid), 'raw session id stored in the database');
  }

  const me = await b.request(`${origin}/auth/me`);
  assert.equal(me.status, 200, me.body);
  const j = JSON.parse(me.body);
  assert.equal(j.kind, 'session');
  assert.equal(j.subject, 'alice');
  assert.equal(j.email, 'alice@example.com');
  assert.equal(j.name, 'Alice Example');
  assert.deepEqual(j.groups, ['ai-users', 'admins']);
  assert.equal(j.cost_center, 'cc-42');

  // An API call with the session: works, and the upstream never sees the cookie.
  await mock.clear();
  const chat = await h.request(gw, {
    port: gwPort, path: '/v1/chat/completions', body: h.chatBody('hello'),
    headers: { Cookie: `other=1; __Host-mg_session=${sid}` },
  });
  assert.notEqual(chat.status, 401, chat.body);
  assert.notEqual(chat.status, 500, chat.body);
  const seen = await mock.requests();
  for (const r of seen) {
    const hdrs = JSON.stringify(r.headers || r).toLowerCase();
    assert.ok(!hdrs.includes(sid.toLowerCase()), 'session id reached the upstream');
    assert.ok(!hdrs.includes('mg_session'), 'session cookie reached the upstream');
  }
  const models = await h.request(gw, { port: gwPort, path: '/v1/models', headers: { Cookie: `__Host-mg_session=${sid}` } });
  assert.equal(models.status, 200, models.body);

  // A second login gets a new session id.
  const b2 = new Browser(gw.ca);
  const again = await login(b2, '/');
  assert.equal(again.cb.status, 302);
  assert.notEqual(sessionOf(b2), sid);

  // Logout: server-side, cookie cleared, then the IdP's end-session endpoint.
  const out = await b.request(`${origin}/auth/logout`);
  assert.equal(out.status, 302);
  const loc = new URL(out.headers.location);
  assert.equal(`${loc.origin}${loc.pathname}`, `${idp.issuer}/session/end`);
  assert.equal(loc.searchParams.get('post_logout_redirect_uri'), `${origin}/`);
  assert.ok((out.headers['set-cookie'] || []).some((c) => /^__Host-mg_session=;.*Max-Age=0/.test(c)));
  // The old cookie is dead everywhere (not only in this browser).
  const old = await h.request(gw, { port: gwPort, path: '/auth/me', headers: { Cookie: `__Host-mg_session=${sid}` } });
  assert.equal(old.status, 401);
  const oldApi = await h.request(gw, { port: gwPort, path: '/v1/models', headers: { Cookie: `__Host-mg_session=${sid}` } });
  assert.equal(oldApi.status, 401);
  if (pg) {
    const hash = crypto.createHash('sha256').update(sid).digest('hex');
    assert.equal(pg.sql(`SELECT revoked_at IS NOT NULL FROM auth_sessions WHERE id_hash = '${hash}'`), 't');
  }
  // POST logout works too.
  const pout = await b2.request(`${origin}/auth/logout`, { method: 'POST', body: '' });
  assert.equal(pout.status, 302);
});

/* ------------------------------------------------------------ negative cases */

const noSessionCookie = (r) => !(r.headers['set-cookie'] || []).some((c) => /^__Host-mg_session=[^;]/.test(c));

test('missing, wrong and replayed state: error page, no session cookie', async () => {
  const b = new Browser(gw.ca);
  const { callbackUrl } = await login(b, '/', 'alice', { stopBeforeCallback: true });
  const u = new URL(callbackUrl);

  // No state parameter.
  const noState = new URL(u); noState.searchParams.delete('state');
  let r = await b.request(noState.toString());
  assert.equal(r.status, 400);
  assert.match(r.headers['content-type'], /text\/html/);
  assert.match(r.body, /href="\/auth\/login\?return_to=%2F"/);
  assert.ok(noSessionCookie(r));

  // A state this browser never started.
  const bad = new URL(u); bad.searchParams.set('state', 'forgedstate123');
  r = await b.request(bad.toString());
  assert.equal(r.status, 400);
  assert.ok(noSessionCookie(r));

  // The state cookie missing (another browser).
  r = await new Browser(gw.ca).request(callbackUrl);
  assert.equal(r.status, 400);
  assert.ok(noSessionCookie(r));

  // The real one works once...
  const saved = b.cookieHeader(origin);
  r = await b.request(callbackUrl);
  assert.equal(r.status, 302, r.body);
  assert.ok(sessionOf(b));
  // ...and a replay with the same state cookie and code is refused.
  r = await b.request(callbackUrl, { headers: { Cookie: saved } });
  assert.equal(r.status, 400);
  assert.match(r.body, /already used/);
  assert.ok(noSessionCookie(r));
});

test('stale state (session.login_timeout: 2s): error page, no session, then a fresh login works', async () => {
  // A gateway of its own (with its own IdP client, whose redirect URI names
  // that gateway), so the short login timeout does not race the other tests.
  const [port] = await h.freePorts(1);
  const o = `https://127.0.0.1:${port}`;
  const p = await startProvider({ redirectUri: `${o}/auth/callback`, postLogoutRedirectUri: `${o}/` });
  let g;
  try {
    g = await startSsoGateway(port, p, { login_timeout: '2s' });
    const countSessions = () => Number(pg.sql('SELECT count(*) FROM auth_sessions'));

    // The state cookie carries the configured timeout to the browser too.
    const b = new Browser(g.ca);
    const start = await b.request(`${o}/auth/login?return_to=%2F`);
    assert.equal(start.status, 302, start.body);
    const sc = (start.headers['set-cookie'] || []).find((c) => c.startsWith('__Host-mg_state_'));
    assert.ok(sc, 'state cookie set');
    assert.match(sc, /Max-Age=2(;|$)/i);

    // The whole IdP side done, then the user waits past the timeout. The
    // browser here keeps the state cookie regardless of its Max-Age, as a
    // stolen or replayed one would be: the gateway itself must refuse it.
    const b2 = new Browser(g.ca);
    const { callbackUrl } = await login(b2, '/', 'alice', { stopBeforeCallback: true, at: o, via: p });
    const state = new URL(callbackUrl).searchParams.get('state');
    assert.ok(b2.cookies(o).has(`__Host-mg_state_${state}`), 'state cookie not kept by the test browser');
    const before = pg ? countSessions() : 0;
    await h.sleep(3200);
    const r = await b2.request(callbackUrl);
    assert.equal(r.status, 400, r.body);
    assert.match(r.headers['content-type'], /text\/html/);
    assert.match(r.body, /took too long and has expired/);
    assert.match(r.body, /href="\/auth\/login\?return_to=%2F"/);
    assert.ok(noSessionCookie(r), `session cookie set: ${JSON.stringify(r.headers['set-cookie'])}`);
    assert.equal(sessionOf(b2, o), undefined);
    // The stale state cookie is cleared.
    assert.ok((r.headers['set-cookie'] || []).some((c) => c.startsWith(`__Host-mg_state_${state}=;`) && /Max-Age=0/.test(c)),
      `state cookie not cleared: ${JSON.stringify(r.headers['set-cookie'])}`);
    if (pg) assert.equal(countSessions(), before, 'a session row was created for a stale state');
    const me = await b2.request(`${o}/auth/me`, { headers: { Accept: 'application/json' } });
    assert.equal(me.status, 401, me.body);

    // A fresh login in the same browser, within the timeout, works (the
    // IdP still knows the user: straight back to the callback).
    const walk = await b2.follow(`${o}/auth/login?return_to=%2Fv1%2Fmodels`,
      { stopAt: (u) => u.startsWith(`${o}/auth/callback`) });
    assert.ok(walk.next, `no callback: ${JSON.stringify(walk.hops.map((x) => [x.status, x.url]))}`);
    const cb = await b2.request(walk.next);
    assert.equal(cb.status, 302, cb.body);
    assert.equal(cb.headers.location, '/v1/models');
    const sid = sessionOf(b2, o);
    assert.ok(sid, 'no session after a fresh login');
    if (pg) assert.equal(countSessions(), before + 1);
    const me2 = await b2.request(`${o}/auth/me`);
    assert.equal(me2.status, 200, me2.body);
    assert.equal(JSON.parse(me2.body).subject, 'alice');
    await g.stop();
  } finally {
    if (g && !g.stopped) await g.kill();
    await p.close();
  }
});

test('IdP error on the callback: error page with a sign-in link, no cookie', async () => {
  const b = new Browser(gw.ca);
  const r = await b.request(`${origin}/auth/callback?error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E&state=x`);
  assert.equal(r.status, 400);
  assert.match(r.body, /access_denied/);
  assert.doesNotMatch(r.body, /<script>/);
  assert.match(r.body, /Sign in again/);
  assert.ok(noSessionCookie(r));
});

test('open redirects in return_to are refused (end on "/")', async () => {
  for (const evil of ['//evil.example', '/\\evil.example', '/%09/evil.example', 'https:evil.example',
    'javascript:alert(1)', 'https://evil.example/', '/auth/logout', '%2F%2Fevil.example']) {
    const b = new Browser(gw.ca);
    const r = await b.request(`${origin}/auth/login?return_to=${encodeURIComponent(evil)}`);
    assert.equal(r.status, 302, `${evil}: ${r.status}`);
    assert.ok(r.headers.location.startsWith(`${idp.issuer}/`), `${evil}: ${r.headers.location}`);
  }
  // Full round trip with a hostile target: lands on "/".
  const b = new Browser(gw.ca);
  const { cb } = await login(b, '//evil.example/x');
  assert.equal(cb.status, 302);
  assert.equal(cb.headers.location, '/');
});

test('X-Forwarded-Proto ",https" and hostile Host do not reach liboauth2', async () => {
  const b = new Browser(gw.ca);
  for (const hdrs of [{ 'X-Forwarded-Proto': ',https' }, { 'X-Forwarded-Host': 'evil.example', 'X-Forwarded-Port': '1' },
    { 'X-Forwarded-Proto': ',https', 'X-Forwarded-Host': ',', Forwarded: 'proto=,https' }]) {
    const r = await b.request(`${origin}/auth/login?return_to=%2F`, { headers: hdrs });
    assert.equal(r.status, 302);
    assert.equal(new URL(r.headers.location).searchParams.get('redirect_uri'), `${origin}/auth/callback`);
    const c = await b.request(`${origin}/auth/callback?code=abc&state=zzz`, { headers: hdrs });
    assert.equal(c.status, 400);
  }
  assert.equal((await h.request(gw, { port: gwPort, path: '/healthz' })).status, 200);
  assert.equal(gw.exited(), null, 'gateway died');
});

test('a code containing %2B is decoded before the exchange', async () => {
  const b = new Browser(gw.ca);
  const { callbackUrl } = await login(b, '/', 'alice', { stopBeforeCallback: true });
  const u = new URL(callbackUrl);
  // Encode the code's characters (oidc-provider codes are base64url: the
  // decoded value must be what the IdP issued).
  const code = u.searchParams.get('code');
  const enc = [...code].map((ch) => `%${ch.charCodeAt(0).toString(16).padStart(2, '0').toUpperCase()}`).join('');
  const r = await b.request(`${origin}/auth/callback?code=${enc}&state=${u.searchParams.get('state')}`);
  assert.equal(r.status, 302, `fully percent-encoded code: ${r.status} ${r.body}`);
  assert.ok(sessionOf(b));
  // A code with a literal "+" (%2B) is handed to the IdP as "+": the IdP
  // refuses it (no such code) and the user gets the error page, not a crash.
  const b2 = new Browser(gw.ca);
  const second = await login(b2, '/', 'alice', { stopBeforeCallback: true });
  const u2 = new URL(second.callbackUrl);
  const r2 = await b2.request(`${origin}/auth/callback?code=a%2Bb${u2.searchParams.get('code')}&state=${u2.searchParams.get('state')}`);
  assert.equal(r2.status, 400);
  assert.ok(noSessionCookie(r2));
});

test('expired or unknown session: browsers re-login (302), API clients 401, never 500', async () => {
  const b = new Browser(gw.ca);
  const { cb } = await login(b, '/');
  assert.equal(cb.status, 302);
  const sid = sessionOf(b);
  if (pg) {
    const hash = crypto.createHash('sha256').update(sid).digest('hex');
    pg.sql(`UPDATE auth_sessions SET expires_at = now() - interval '1 second' WHERE id_hash = '${hash}'`);
    await h.sleep(5500);   // past the gateway's session re-check interval
  } else {
    b.jar.get(origin).set('__Host-mg_session', 'A'.repeat(43));
  }
  const r = await b.request(`${origin}/v1/models`);
  assert.equal(r.status, 302, r.body);
  assert.match(r.headers.location, /^\/auth\/login\?return_to=/);
  assert.ok((r.headers['set-cookie'] || []).some((c) => /^__Host-mg_session=;/.test(c)), 'stale cookie not cleared');
  const api = await h.request(gw, { port: gwPort, path: '/v1/models', headers: { Cookie: `__Host-mg_session=${sid}` } });
  assert.equal(api.status, 401);
  const junk = await h.request(gw, { port: gwPort, path: '/v1/models', headers: { Cookie: '__Host-mg_session=../../x' } });
  assert.equal(junk.status, 401);
  // And signing in again works.
  const again = await login(new Browser(gw.ca), '/');
  assert.equal(again.cb.status, 302);
});
