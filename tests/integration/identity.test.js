// modelgate — identity: API keys (CLI + database), bearer JWTs (negative
// matrix against a loopback token minter), hung IdP, DB down.
//
// Needs PostgreSQL binaries (tests/integration/lib/pg.js); skipped without.
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { execFileSync, spawnSync } = require('node:child_process');
const path = require('node:path');
const h = require('./lib/harness');
const pgLib = require('./lib/pg');
const { startMinter } = require('../idp/minter');

const HAVE_PG = pgLib.available();
let pg, mock, minter, gw;

function cfgFor(issuer, dbUrl) {
  return {
    database: dbUrl ? { url: dbUrl } : undefined,
    oidc: {
      issuer, client_id: 'modelgate', client_secret: 'test-secret',
      scopes: ['openid', 'email', 'groups'], audiences: ['modelgate'],
      claims: { groups: 'groups', email: 'email', cost_center: 'department' },
    },
    session: { secret: 'x'.repeat(40), lifetime: '1h' },
  };
}

function cli(args, o = {}) {
  const r = spawnSync(h.gatewayBin(), [...args, '-c', gw.configPath], { encoding: 'utf8', ...o });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const models = (auth, extra = {}) => h.request(gw, { path: '/v1/models', auth, ...extra });

before(async () => {
  minter = await startMinter();
  mock = await h.startMock();
  if (HAVE_PG) pg = await pgLib.startPg();
  // public_url turns browser SSO on (its redirect is checked at the end).
  gw = await h.startGateway({
    mock,
    configOverrides: (cfg, ctx) => h.deepMerge(cfg, { ...cfgFor(minter.issuer, pg && pg.url), public_url: `https://127.0.0.1:${ctx.httpsPort}` }),
  });
  if (HAVE_PG) {
    const m = cli(['migrate']);
    assert.equal(m.code, 0, `migrate failed: ${m.stderr}`);
  }
});

after(async () => {
  await h.cleanup();
  if (minter) await minter.close();
  if (pg) pg.destroy();
});

/* ------------------------------------------------------------ API keys */

test('keys create prints the key alone on stdout; only its hash is stored', { skip: !HAVE_PG }, async () => {
  const r = cli(['keys', 'create', '--user', 'bob@example.com', '--role', 'engineer', '--name', 'ci']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^mgk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}\n$/);
  const key = r.stdout.trim();
  const id = key.slice(4, 20);
  assert.match(r.stderr, new RegExp(`id=${id}`));
  assert.ok(!r.stderr.includes(key.slice(21)), 'secret must not be repeated on stderr');
  const sha = crypto.createHash('sha256').update(key).digest('hex');
  assert.equal(pg.sql(`SELECT hash FROM api_keys WHERE id = '${id}'`), sha);
  const dump = pg.sql('SELECT row_to_json(k)::text FROM api_keys k');
  assert.ok(!dump.includes(key.slice(21)), 'raw secret found in the database');

  const list = cli(['keys', 'list']);
  assert.equal(list.code, 0);
  const line = list.stdout.split('\n').find((l) => l.startsWith(id));
  assert.ok(line, `id ${id} first on a line of keys list`);
  assert.match(line, /\tbob@example\.com\tengineer\tci\t.*\tactive\t/);

  // Bearer and x-api-key both work; the principal is the key's owner.
  const a = await models(key);
  assert.equal(a.status, 200, a.body);
  const b = await h.request(gw, { path: '/v1/models', headers: { 'x-api-key': key } });
  assert.equal(b.status, 200, b.body);
  await h.waitFor(() => gw.accessLog.some((l) => l.request_id === a.headers['x-request-id']));
  const log = gw.accessLog.find((l) => l.request_id === a.headers['x-request-id']);
  assert.equal(log.auth, 'api_key');
  assert.equal(log.subject, 'bob@example.com');
  assert.ok(!gw.stdout.includes(key) && !gw.stderr.includes(key), 'raw key in the gateway logs');

  // Same id, other secret: refused, and the error does not echo the key.
  const forged = key.slice(0, 21) + 'A'.repeat(43);
  const f = await models(forged);
  assert.equal(f.status, 401);
  assert.ok(!f.body.includes(forged.slice(21)));
  // Unknown id: 401 (the database answered "no such key").
  const u = await models('mgk_0123456789abcdef_' + 'B'.repeat(43));
  assert.equal(u.status, 401);
  h.assertErrorShape(u);
  assert.match(u.headers['www-authenticate'] || '', /Bearer/);

  // Revocation reaches the gateway within 5 s (cache hard TTL).
  const rv = cli(['keys', 'revoke', id]);
  assert.equal(rv.code, 0, rv.stderr);
  const t0 = Date.now();
  const gone = await h.waitFor(async () => (await models(key)).status === 401, 8000, 250);
  assert.ok(gone, 'revoked key still accepted after 8 s');
  assert.ok(Date.now() - t0 < 7000, `revocation took ${Date.now() - t0} ms`);
  assert.equal(cli(['keys', 'revoke', 'nothex']).code, 1);
  assert.equal(cli(['keys', 'revoke', 'ffffffffffffffff']).code, 1);
});

test('keys create validates input; expired keys are refused', { skip: !HAVE_PG }, async () => {
  assert.equal(cli(['keys', 'create', '--role', 'x']).code, 1);
  assert.equal(cli(['keys', 'create', '--user', 'a@b', '--role', 'bad role']).code, 1);
  assert.equal(cli(['keys', 'create', '--user', 'a@b', '--role', 'r', '--expires', 'soon']).code, 1);
  const r = cli(['keys', 'create', '--user', 'exp@example.com', '--role', 'r', '--expires', '90d']);
  assert.equal(r.code, 0, r.stderr);
  const key = r.stdout.trim();
  assert.equal((await models(key)).status, 200);
  pg.sql(`UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = '${key.slice(4, 20)}'`);
  assert.ok(await h.waitFor(async () => (await models(key)).status === 401, 8000, 250));
});

test('database down: cached keys keep working, unknown keys get 503 (not 401)', { skip: !HAVE_PG }, async () => {
  const key = cli(['keys', 'create', '--user', 'carol@example.com', '--role', 'r']).stdout.trim();
  assert.equal((await models(key)).status, 200);
  pg.stop('immediate');
  try {
    for (let i = 0; i < 5; i++) {
      const r = await models(key, { timeoutMs: 8000 });
      assert.equal(r.status, 200, `cached key refused while the DB is down: ${r.body}`);
      await h.sleep(1500);   // well past the 5 s hard TTL by the end
    }
    const t0 = Date.now();
    const u = await models('mgk_00000000000000aa_' + 'C'.repeat(43), { timeoutMs: 8000 });
    assert.equal(u.status, 503, u.body);
    assert.ok(Date.now() - t0 < 4000);
  } finally {
    pg.start();
  }
});

/* ------------------------------------------------------------ bearer JWTs */

test('/readyz checks the IdP metadata when oidc is configured', async () => {
  // The test before stops and restarts PostgreSQL: the policy store
  // reconnects within a second or two, and readyz follows it.
  const ready = async () => { const x = await h.request(gw, { path: '/readyz', tls: false }); return x.status === 200 ? x : null; };
  const r = (await h.waitFor(ready, 15000, 200)) || await h.request(gw, { path: '/readyz', tls: false });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.checks.idp, true);
  assert.equal(r.json.checks.database, HAVE_PG ? true : null);
});

test('valid IdP tokens (RS256, PS256, ES256, EdDSA) authenticate; claims become the principal', async () => {
  for (const [key, alg] of [[minter.keys.rsa, 'RS256'], [minter.keys.rsa, 'PS256'], [minter.keys.ec, 'ES256'], [minter.keys.ed, 'EdDSA']]) {
    const tok = minter.token({ sub: `user-${alg}`, department: 'cc-42' }, { key, alg });
    const r = await models(tok);
    assert.equal(r.status, 200, `${alg}: ${r.body}`);
    await h.waitFor(() => gw.accessLog.some((l) => l.request_id === r.headers['x-request-id']));
    const log = gw.accessLog.find((l) => l.request_id === r.headers['x-request-id']);
    assert.equal(log.auth, 'jwt');
    assert.equal(log.subject, `user-${alg}`);
  }
  // Several audiences are fine when azp names us.
  const multi = minter.token({ aud: ['modelgate', 'other'], azp: 'modelgate' });
  assert.equal((await models(multi)).status, 200);
});

test('bad tokens are refused with 401 and never reach the upstream', async () => {
  const now = Math.floor(Date.now() / 1000);
  const rsaPub = minter.keys.rsa;
  const cases = {
    'wrong iss': [minter.token({ iss: 'http://127.0.0.1:1/evil' }), /issuer/],
    'aud not ours': [minter.token({ aud: 'someone-else' }), /audience/],
    'several aud, no azp': [minter.token({ aud: ['modelgate', 'other'] }), /azp/],
    'several aud, foreign azp': [minter.token({ aud: ['modelgate', 'other'], azp: 'other' }), /azp/],
    expired: [minter.token({ exp: now - 120 }), /expired/],
    'no exp': [minter.token({ exp: undefined }), /exp/],
    'nbf in the future': [minter.token({ nbf: now + 300 }), /not valid yet/],
    'iat in the future': [minter.token({ iat: now + 300 }), /future/],
    'alg none': [minter.token({}, { alg: 'none' }), /not valid/],
    'alg none with a signature': [minter.token({}, { alg: 'none' }) + 'AAAA', /alg none/],
    'HS256 keyed with the RSA public key': [minter.token({}, { alg: 'HS256-pub', key: rsaPub }), /HMAC/],
    'bad signature': [minter.token({}, { tamper: true }), /signature/],
    'ES256 header on an RSA key': [minter.token({}, { header: { alg: 'ES256', kid: 'rsa-1' } }), /signature/],
    'id_token (nonce, typ JWT)': [minter.token({ nonce: 'n-1', aud: 'modelgate' }, { header: { typ: 'JWT' } }), /id_token/],
    'token_use id': [minter.token({ token_use: 'id' }, { header: { typ: 'JWT' } }), /id_token/],
    'no sub': [minter.token({ sub: undefined }), /subject/],
    garbage: ['eyJhbGciOiJSUzI1NiJ9.e30.!!!', /not valid/],
  };
  await mock.clear();
  for (const [name, [tok, why]] of Object.entries(cases)) {
    const r = await h.request(gw, { path: '/v1/chat/completions', auth: tok, body: h.chatBody('hi') });
    assert.equal(r.status, 401, `${name}: got ${r.status} ${r.body}`);
    h.assertErrorShape(r, name);
    assert.match(r.json.error.message, why, name);
    assert.equal(r.headers['set-cookie'], undefined, `${name}: cookie set`);
    assert.equal(r.headers['www-authenticate'], 'Bearer realm="modelgate", error="invalid_token"', name);
  }
  // no credentials at all: the bare challenge (RFC 6750 §3.1)
  const none = await h.request(gw, { path: '/v1/chat/completions', auth: null, body: h.chatBody('hi') });
  assert.equal(none.status, 401);
  assert.equal(none.headers['www-authenticate'], 'Bearer realm="modelgate"');
  assert.equal((await mock.requests()).length, 0, 'a refused token reached the upstream');
});

test('unknown kid: one throttled JWKS refetch, not one per request', async () => {
  const before = minter.jwksFetches;
  const rs = await Promise.all(Array.from({ length: 20 }, (_, i) =>
    models(minter.token({}, { header: { kid: `rotated-${i}` } }))));
  for (const r of rs) assert.equal(r.status, 401);
  assert.ok(minter.jwksFetches - before <= 1, `${minter.jwksFetches - before} JWKS fetches for 20 unknown kids`);
});

test('a hung IdP does not delay requests that are already authenticated', async () => {
  const hung = await startMinter();
  // The IdP hangs from the start: the gateway's start-up metadata fetch times
  // out (logged, not fatal), so the first token has to fetch it in the auth pool.
  hung.hang(true);
  const gw2 = await h.startGateway({ mock, configOverrides: cfgFor(hung.issuer, null), startTimeoutMs: 30000 });
  try {
    // This one waits on the (hung) IdP in the auth pool...
    const slow = h.request(gw2, { path: '/v1/models', auth: hung.token(), timeoutMs: 20000 });
    await h.sleep(200);
    // ...while master-key requests on every worker answer at once.
    const t0 = Date.now();
    const fast = await Promise.all(Array.from({ length: 8 }, () => h.request(gw2, { path: '/v1/models', auth: h.MASTER_KEY })));
    const took = Date.now() - t0;
    for (const r of fast) assert.equal(r.status, 200);
    assert.ok(took < 1000, `authenticated requests took ${took} ms behind a hung IdP`);
    const s = await slow;
    assert.equal(s.status, 503, `token check against a hung IdP: ${s.status} ${s.body}`);
  } finally {
    hung.hang(false);
    await gw2.stop();
    await hung.close();
  }
});

test('API clients without credentials get 401 + WWW-Authenticate; browsers are sent to sign in', async () => {
  const api = await models(undefined);
  assert.equal(api.status, 401);
  assert.match(api.headers['www-authenticate'] || '', /^Bearer /);
  assert.equal(api.headers.location, undefined);
  // A browser (GET, Accept: text/html) is redirected to /auth/login with
  // its own path as return_to (tests/integration/sso.test.js does the rest).
  const br = await h.request(gw, { path: '/v1/models?x=1', headers: { Accept: 'text/html,application/xhtml+xml' } });
  assert.equal(br.status, 302);
  assert.equal(br.headers.location, '/auth/login?return_to=%2Fv1%2Fmodels%3Fx%3D1');
  // Not for POSTs or non-HTML clients.
  const post = await h.request(gw, { path: '/v1/chat/completions', body: h.chatBody('hi'), headers: { Accept: 'text/html' } });
  assert.equal(post.status, 401);
  const json = await h.request(gw, { path: '/v1/models', headers: { Accept: 'application/json' } });
  assert.equal(json.status, 401);
});
