// modelgate — role policies end to end: a policy imported into PostgreSQL
// with `modelgate policy import`, API keys issued for roles, and the gateway
// deciding on every request: model allowlists (and /v1/models), input
// filters (block / redact) on every API surface, output filters on plain and
// streamed replies (a match split across chunks included), rate limits and
// hard budgets under concurrency, admin permissions, and a new policy
// version reaching the running gateway without a restart. Every deny path
// asserts that the mock upstream received nothing (or only redacted text).
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const h = require('./lib/harness');
const pgl = require('./lib/pg');

let pg;
let mock;
let gw;
let dir;
const keys = {};

const POLICY = {
  roles: {
    engineer: {
      models: ['gpt-*'], filters: ['pii', 'secrets', 'codenames'],
      limits: { requests_per_minute: 1000, max_tokens: 256 }, permissions: [],
    },
    limited: { models: ['gpt-test'], filters: [], limits: { requests_per_minute: 3 }, permissions: [] },
    tight: { models: ['gpt-test'], filters: [], limits: { tokens_per_day: 2000, max_tokens: 100 }, permissions: [] },
    // Each request below reserves about 140 tokens (prompt estimate ~40 +
    // max_tokens 100), so 770 a day admits exactly 5 whatever the estimate's
    // last few tokens (anything from 129 to 154 per request gives 5).
    five: { models: ['gpt-test'], filters: [], limits: { tokens_per_day: 770, max_tokens: 100 }, permissions: [] },
    finance: { models: [], permissions: ['usage:read'] },
    // team_limits: all of the role's users together (one ~140-token
    // reservation fits in 200, two do not)
    team: { models: ['gpt-test'], filters: [], limits: { max_tokens: 100 }, team_limits: { tokens_per_day: 200 }, permissions: [] },
    meter: {
      models: ['gpt-test'], filters: ['pii'],
      limits: { requests_per_minute: 50, tokens_per_day: 100000, max_tokens: 64 },
      team_limits: { usd_per_month: 10 }, permissions: [],
    },
  },
  role_mappings: [{ claim: 'groups', equals: 'ai-users', role: 'engineer' }],
  filters: {
    pii: { detectors: ['email', 'credit_card'], action: 'redact', direction: 'both' },
    secrets: { detectors: ['api_key', 'private_key'], action: 'block', direction: 'both' },
    codenames: { patterns: ['(?i)\\bproject\\s+bluebird\\b'], action: 'block', direction: 'input' },
  },
};

function cfgFile() {
  const f = path.join(dir, 'cli.yaml');
  fs.writeFileSync(f, h.toYaml({ listen: [{ address: '127.0.0.1:1' }], database: { url: pg.url } }));
  return f;
}
function cli(args) {
  return spawnSync(h.gatewayBin(), [...args, '-c', cfgFile()], { encoding: 'utf8', cwd: h.ROOT });
}
function importPolicy(doc) {
  const f = path.join(dir, `policy-${Date.now()}.json`);
  fs.writeFileSync(f, JSON.stringify(doc));
  const r = cli(['policy', 'import', f]);
  assert.equal(r.status, 0, `policy import: ${r.stderr}`);
}
const withDb = (cfg) => {
  cfg.database = { url: pg.url };
  cfg.usage = { journal_dir: path.join(dir, 'journal') };   // the ledger's decision column is checked
  cfg.limits.upstream_first_byte_timeout = '10s';   // the budget test holds replies 4 s
  cfg.models.push({ name: 'llama-local', deployments: [{ provider: 'mock', model: 'llama' }] });
  return cfg;
};
const chatAs = (key, content, extra = {}) => h.request(gw, {
  path: '/v1/chat/completions', auth: key, body: h.chatBody(content, extra) });
const lastUpstreamBody = async () => {
  const r = await mock.requests();
  return r.length ? r[r.length - 1].body : null;
};

describe('role policies', () => {
  before(async () => {
    pg = await pgl.startPg();
    dir = h.makeTmpDir('mg-policy-');
    const m = cli(['migrate']);
    assert.equal(m.status, 0, m.stderr);
    for (const role of ['engineer', 'limited', 'tight', 'five', 'finance', 'meter', 'team']) {
      const k = cli(['keys', 'create', '--user', `${role}@example.com`, '--role', role]);
      assert.equal(k.status, 0, k.stderr);
      keys[role] = k.stdout.trim();
    }
    const t2 = cli(['keys', 'create', '--user', 'team-two@example.com', '--role', 'team']);
    assert.equal(t2.status, 0, t2.stderr);
    keys.team2 = t2.stdout.trim();
    importPolicy(POLICY);
    mock = await h.startMock();
    gw = await h.startGateway({ mock, configOverrides: withDb });
    await h.waitFor(async () => (await chatAs(keys.engineer, 'warm up')).status === 200, 10000);
  });
  after(async () => {
    await h.cleanup();
    if (pg) pg.destroy();
  });

  it('model allowlists: allowed, denied (upstream sees nothing), and /v1/models lists only allowed', async () => {
    assert.equal((await chatAs(keys.engineer, 'hello')).status, 200);
    await mock.clear();
    const denied = await chatAs(keys.engineer, 'hello', { model: 'llama-local' });
    assert.equal(denied.status, 403);
    assert.equal(denied.json.error.code, 'model_not_allowed');
    assert.equal((await mock.requests()).length, 0);
    const list = await h.request(gw, { path: '/v1/models', auth: keys.engineer });
    assert.deepEqual(list.json.data.map((m) => m.id).sort(), ['gpt-test']);
    const fin = await h.request(gw, { path: '/v1/models', auth: keys.finance });
    assert.deepEqual(fin.json.data, []);
  });

  it('input filters block on every surface and in the whole history; the upstream sees nothing', async () => {
    await mock.clear();
    const secret = 'sk-proj-' + 'a1B2c3D4e5F6g7H8i9J0'.repeat(2);
    const cases = [
      h.request(gw, { path: '/v1/chat/completions', auth: keys.engineer, body: { model: 'gpt-test',
        messages: [{ role: 'system', content: `use ${secret}` }, { role: 'user', content: 'hi' }] } }),
      h.request(gw, { path: '/v1/chat/completions', auth: keys.engineer, body: { model: 'gpt-test',
        messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'ok' },
          { role: 'user', content: [{ type: 'text', text: 'about Project  Bluebird' }] }] } }),
      h.request(gw, { path: '/v1/messages', headers: { 'x-api-key': keys.engineer },
        body: { model: 'gpt-test', max_tokens: 50, messages: [{ role: 'user', content: `key ${secret}` }] } }),
      h.request(gw, { path: '/v1/embeddings', auth: keys.engineer, body: { model: 'gpt-test', input: ['fine', `x ${secret}`] } }),
    ];
    for (const r of await Promise.all(cases)) {
      assert.equal(r.status, 403, r.body);
      assert.ok(!r.body.includes(secret) && !/bluebird/i.test(r.body), 'the denial never echoes the content');
    }
    assert.equal((await mock.requests()).length, 0, 'nothing blocked reached the upstream');
  });

  it('input redaction: the upstream gets placeholders, on both surfaces', async () => {
    await mock.clear();
    const r = await chatAs(keys.engineer, 'write to bob@example.com about card 4111 1111 1111 1111');
    assert.equal(r.status, 200, r.body);
    const body = await lastUpstreamBody();
    assert.ok(!body.includes('bob@example.com') && !body.includes('4111 1111'), body);
    assert.match(body, /\[EMAIL\]/);
    assert.match(body, /\[CREDIT_CARD\]/);
    const a = await h.request(gw, { path: '/v1/messages', headers: { 'x-api-key': keys.engineer },
      body: { model: 'gpt-test', max_tokens: 50, system: 'reply to carol@example.org', messages: [{ role: 'user', content: 'hi' }] } });
    assert.equal(a.status, 200, a.body);
    const b2 = await lastUpstreamBody();
    assert.ok(!b2.includes('carol@example.org'), b2);
    assert.match(JSON.parse(b2).max_tokens.toString(), /^(50|256)$/);
  });

  it('a \\u0000 in a string is refused: filters must read what the upstream reads', async () => {
    // cJSON ended strings at \u0000, so filters saw "hi" while the upstream
    // got the client's bytes, address included.
    await mock.clear();
    const r = await chatAs(keys.engineer, 'hi\u0000 write to bob@example.com');
    assert.equal(r.status, 400, r.body);
    assert.equal(r.json.error.code, 'invalid_json');
    assert.match(r.json.error.message, /u0000/);
    assert.equal((await mock.requests()).length, 0, 'the upstream saw nothing');
    // Output: a reply the filters cannot read does not reach the client.
    const reply = encodeURIComponent('ok\u0000 reach dana.smith@example.net');
    const plain = await chatAs(keys.engineer, `[[mock:reply=${reply}]] hi`);
    assert.equal(plain.status, 403, plain.body);
    assert.equal(plain.json.error.code, 'content_unverifiable');
    assert.ok(!plain.body.includes('dana.smith'));
    const s = await h.stream(gw, { path: '/v1/chat/completions', auth: keys.engineer,
      body: h.chatBody(`[[mock:chunks=4,reply=${reply}]] hi`, { stream: true }) });
    assert.ok(!s.raw.includes('dana.smith'), 'the address never left the gateway');
    assert.ok(s.events.some((e) => e.json?.error?.code === 'content_unverifiable'), s.raw);
  });

  it('the ledger records input and output filter decisions together, each rule once', async () => {
    const decision = async (id) => {
      for (let i = 0; i < 100; i++) {
        const d = pg.sql(`SELECT decision FROM usage_events WHERE request_id = '${id}' AND status <> 0`).trim();
        if (d) return d.startsWith('"') ? JSON.parse(d) : d;   // a JSON string column
        await h.sleep(200);
      }
      return null;
    };
    // Redacted on the way in, nothing on the way out: the input's decision stays.
    const a = await chatAs(keys.engineer, 'mail bob@example.com please');
    assert.equal(a.status, 200, a.body);
    // Nothing on the way in, redacted on the way out.
    const reply = encodeURIComponent('reach dana.smith@example.net');
    const b = await chatAs(keys.engineer, `[[mock:reply=${reply}]] hi`);
    assert.equal(b.json.choices[0].message.content, 'reach [EMAIL]');
    // Both ways: one entry for the rule.
    const c = await chatAs(keys.engineer, `[[mock:reply=${reply}]] and carol@example.org`);
    assert.equal(c.status, 200, c.body);
    // Neither.
    const d = await chatAs(keys.engineer, 'plain words');
    assert.equal(await decision(a.headers['x-request-id']), 'redacted:pii');
    assert.equal(await decision(b.headers['x-request-id']), 'redacted:pii');
    assert.equal(await decision(c.headers['x-request-id']), 'redacted:pii');
    assert.equal(await decision(d.headers['x-request-id']), 'allowed');
  });

  it('output filters: plain replies and streams, a match split across chunks included', async () => {
    const reply = encodeURIComponent('you can reach the team at dana.smith@example.net any time');
    const plain = await chatAs(keys.engineer, `[[mock:reply=${reply}]] hi`);
    assert.equal(plain.status, 200);
    assert.equal(plain.json.choices[0].message.content, 'you can reach the team at [EMAIL] any time');
    for (const chunks of [3, 17, 40]) {
      const s = await h.stream(gw, { path: '/v1/chat/completions', auth: keys.engineer,
        body: h.chatBody(`[[mock:chunks=${chunks},reply=${reply}]] hi`, { stream: true }) });
      assert.equal(s.status, 200);
      const text = s.events.filter((e) => e.json?.choices?.[0]?.delta?.content).map((e) => e.json.choices[0].delta.content).join('');
      assert.equal(text, 'you can reach the team at [EMAIL] any time', `${chunks} chunks`);
      assert.ok(!s.raw.includes('dana.smith'), 'the address never left the gateway');
      assert.equal(s.events[s.events.length - 1].data, '[DONE]');
    }
    const leaked = encodeURIComponent('here: sk-proj-' + 'Zz9Yy8Xx7Ww6Vv5Uu4Tt'.repeat(2));
    const blocked = await h.stream(gw, { path: '/v1/chat/completions', auth: keys.engineer,
      body: h.chatBody(`[[mock:chunks=8,reply=${leaked}]] hi`, { stream: true }) });
    assert.ok(!blocked.raw.includes('Zz9Yy8Xx7'), 'a blocked secret never reaches the client');
    assert.ok(blocked.events.some((e) => e.json?.error), 'the stream ends with an error event');
  });

  it('rate limits answer 429 with Retry-After', async () => {
    const codes = [];
    for (let i = 0; i < 5; i++) codes.push((await chatAs(keys.limited, `hi ${i}`)).status);
    assert.deepEqual(codes, [200, 200, 200, 429, 429]);
    const r = await chatAs(keys.limited, 'again');
    assert.equal(r.json.error.code, 'rate_limited');
    assert.ok(Number(r.headers['retry-after']) >= 1);
  });

  it('budgets are hard caps under concurrency: 200 simultaneous requests against a budget for 5', async () => {
    await mock.clear();
    // The upstream holds every request 4 s, so all 200 are in flight at once
    // and only the worst-case reservations decide (real usage is far smaller
    // and would let more through once settled).
    const rs = await Promise.all(Array.from({ length: 200 }, (_, i) =>
      chatAs(keys.five, `[[mock:delay_ms=4000]] budget ${String(i).padStart(3, '0')}`)));
    const ok = rs.filter((r) => r.status === 200).length;
    const over = rs.filter((r) => r.status === 429);
    assert.equal(ok, 5, `${ok} requests were admitted (statuses ${[...new Set(rs.map((r) => r.status))]})`);
    assert.equal(over.length, 195);
    for (const r of over) {
      assert.equal(r.json.error.code, 'budget_exceeded');
      assert.ok(Number(r.headers['retry-after']) >= 1);
    }
    assert.equal((await mock.requests()).length, 5, 'only admitted requests reached the upstream');
  });

  it('the budget reservation counts every completion asked for (n); n above 128 is refused', async () => {
    await mock.clear();
    // tight: 2000 tokens a day, max_tokens 100. One completion fits; 50 of
    // them (50 x 100 + the prompt) cannot, whatever was spent before.
    const many = await chatAs(keys.tight, 'fifty ways', { max_tokens: 100, n: 50 });
    assert.equal(many.status, 429, many.body);
    assert.equal(many.json.error.code, 'budget_exceeded');
    const absurd = await chatAs(keys.tight, 'too many', { n: 1000 });
    assert.equal(absurd.status, 400, absurd.body);
    assert.equal(absurd.json.error.code, 'invalid_n');
    assert.equal((await mock.requests()).length, 0, 'the upstream saw neither');
  });

  it('team_limits: the role\'s users share one budget; with it reserved by one member, another is refused', async () => {
    await mock.clear();
    // One member's request is held upstream, so its worst-case reservation
    // (~140 tokens) stays on the team's 200 while the other member asks.
    // Neither user has a limit of their own: the team cap decides. The hold
    // outlasts the second request's waits for lease rounds.
    const held = chatAs(keys.team, '[[mock:delay_ms=8000]] first member');
    if (!await h.waitFor(async () => (await mock.requests()).length === 1, 15000)) {
      const r = await held;
      assert.fail(`the held request did not arrive: ${r.status} ${r.body.slice(0, 300)}`);
    }
    const c = await chatAs(keys.team2, 'second member');
    assert.equal(c.status, 429, c.body);
    assert.equal(c.json.error.code, 'budget_exceeded');
    assert.match(c.json.error.message, /team_limits\.tokens_per_day of role team/, 'the message names the rule that decided');
    assert.ok(Number(c.headers['retry-after']) >= 1);
    assert.equal((await held).status, 200);
    assert.equal((await mock.requests()).length, 1, 'the refused request never reached the upstream');
    // settled with real usage (a few tokens), the team has room again
    const d = await chatAs(keys.team2, 'room again');
    assert.equal(d.status, 200, d.body);
  });

  it('max_tokens above the cap is clamped and says so in X-Modelgate-Max-Tokens; below it, no header', async () => {
    await mock.clear();
    const above = await chatAs(keys.tight, 'clamp me', { max_tokens: 500 });
    assert.equal(above.status, 200, above.body);
    assert.equal(above.headers['x-modelgate-max-tokens'], '100');
    assert.equal(JSON.parse(await lastUpstreamBody()).max_tokens, 100, 'the upstream got the clamped value');
    const below = await chatAs(keys.tight, 'leave me', { max_tokens: 50 });
    assert.equal(below.status, 200, below.body);
    assert.equal(below.headers['x-modelgate-max-tokens'], undefined);
    assert.equal(JSON.parse(await lastUpstreamBody()).max_tokens, 50);
    // streamed and error replies carry it too
    const s = await h.stream(gw, { path: '/v1/chat/completions', auth: keys.tight,
      body: h.chatBody('stream me', { stream: true, max_completion_tokens: 1000 }) });
    assert.equal(s.status, 200);
    assert.equal(s.headers['x-modelgate-max-tokens'], '100');
    assert.equal(JSON.parse(await lastUpstreamBody()).max_completion_tokens, 100);
    const failed = await chatAs(keys.tight, '[[mock:status=400]] upstream says no', { max_tokens: 900 });
    assert.ok(failed.status >= 400, failed.body);
    assert.equal(failed.headers['x-modelgate-max-tokens'], '100');
  });

  it('/auth/me answers any credential with the effective policy and what is left of each limit', async () => {
    const lim = (me, scope, name) => me.policy.limits.find((l) => l.scope === scope && l.limit === name);
    const none = await h.request(gw, { path: '/auth/me', auth: null });
    assert.equal(none.status, 401, none.body);
    const bad = await h.request(gw, { path: '/auth/me', auth: 'mgk_0000000000000000_' + 'x'.repeat(43) });
    assert.equal(bad.status, 401, bad.body);

    const before = await h.request(gw, { path: '/auth/me', auth: keys.meter });
    assert.equal(before.status, 200, before.body);
    const b = before.json;
    assert.equal(b.kind, 'api_key');
    assert.equal(b.subject, 'meter@example.com');
    assert.deepEqual(b.roles, ['meter']);
    assert.deepEqual(b.allowed_models, ['gpt-test']);
    // the secret is everything after the id; base64url may put '_' inside it
    assert.ok(!JSON.stringify(b).includes(keys.meter.split('_').slice(2).join('_')), 'the key secret is echoed');
    assert.deepEqual(b.policy.roles, ['meter']);
    assert.deepEqual(b.policy.models, ['gpt-test']);
    assert.deepEqual(b.policy.filters, [{ name: 'pii', action: 'redact', direction: 'both' }]);
    const rpm0 = lim(b, 'user', 'requests_per_minute');
    assert.equal(rpm0.value, 50);
    assert.equal(rpm0.used, 0);
    assert.equal(rpm0.left, 50);
    assert.equal(lim(b, 'user', 'max_tokens').value, 64);
    const tpd0 = lim(b, 'user', 'tokens_per_day');
    assert.equal(tpd0.value, 100000);
    assert.equal(tpd0.used, 0);
    assert.ok(tpd0.resets_in_s > 0 && tpd0.resets_in_s <= 86400, JSON.stringify(tpd0));
    const team0 = lim(b, 'role:meter', 'usd_per_month');
    assert.equal(team0.value, 10);

    const r = await chatAs(keys.meter, 'count me');
    assert.equal(r.status, 200, r.body);
    const after = await h.request(gw, { path: '/auth/me', auth: keys.meter });
    assert.equal(after.status, 200, after.body);
    const rpm1 = lim(after.json, 'user', 'requests_per_minute');
    assert.equal(rpm1.used, 1);
    assert.equal(rpm1.left, 49);
    const tpd1 = lim(after.json, 'user', 'tokens_per_day');
    const spent = r.json.usage.total_tokens;
    assert.ok(spent > 0, r.body);
    assert.equal(tpd1.used, spent, JSON.stringify(tpd1));
    assert.ok(tpd1.left <= 100000 - spent, JSON.stringify(tpd1));

    // The break-glass key sees itself as such.
    const master = await h.request(gw, { path: '/auth/me', auth: h.MASTER_KEY });
    assert.equal(master.status, 200, master.body);
    assert.equal(master.json.kind, 'master_key');
    assert.equal(master.json.policy.master, true);
  });

  it('admin permissions come from roles', async () => {
    const today = new Date().toISOString().slice(0, 10);
    const q = `/admin/v1/usage?from=${today}&to=${today}`;
    assert.equal((await h.request(gw, { path: q, auth: keys.engineer })).status, 403);
    const fin = await h.request(gw, { path: q, auth: keys.finance });
    assert.equal(fin.status, 200, fin.body);
  });

  it('API keys through the admin API: create (shown once), list, revoke, audited', async () => {
    const denied = await h.request(gw, { path: '/admin/v1/keys', auth: keys.engineer });
    assert.equal(denied.status, 403);
    const created = await h.request(gw, { path: '/admin/v1/keys', auth: h.MASTER_KEY, method: 'POST',
      body: { user: 'erin@example.com', role: 'engineer', name: 'ci', expires: '30d' } });
    assert.equal(created.status, 201, created.body);
    const key = created.json.key;
    assert.match(key, /^mgk_[0-9a-f]{16}_/);
    assert.equal((await chatAs(key, 'hello with a new key')).status, 200);
    const list = await h.request(gw, { path: '/admin/v1/keys', auth: h.MASTER_KEY });
    assert.equal(list.status, 200);
    const row = list.json.data.find((k) => k.id === created.json.id);
    assert.equal(row.state, 'active');
    assert.equal(row.role, 'engineer');
    assert.ok(!list.body.includes(key.split('_').slice(2).join('_')), 'the secret is never listed');
    const bad = await h.request(gw, { path: '/admin/v1/keys', auth: h.MASTER_KEY, method: 'POST', body: { role: 'engineer' } });
    assert.equal(bad.status, 400);
    // a key for a role the policy does not define could do nothing: refused
    const ghost = await h.request(gw, { path: '/admin/v1/keys', auth: h.MASTER_KEY, method: 'POST',
      body: { user: 'ghost@example.com', role: 'nosuchrole' } });
    assert.equal(ghost.status, 422, ghost.body);
    assert.equal(ghost.json.error.code, 'unknown_role');
    const ghostCli = cli(['keys', 'create', '--user', 'ghost@example.com', '--role', 'nosuchrole']);
    assert.equal(ghostCli.status, 1, ghostCli.stderr);
    assert.match(ghostCli.stderr, /no role "nosuchrole"/);
    assert.equal(ghostCli.stdout, '', 'no key printed');
    const del = await h.request(gw, { path: `/admin/v1/keys/${created.json.id}`, auth: h.MASTER_KEY, method: 'DELETE' });
    assert.equal(del.status, 200, del.body);
    const gone = await h.waitFor(async () => (await chatAs(key, 'after revoke')).status === 401, 8000, 250);
    assert.ok(gone, 'a revoked key stops working within seconds');
    const audit = await h.request(gw, { path: '/admin/v1/audit', auth: h.MASTER_KEY });
    assert.equal(audit.status, 200, audit.body);
    assert.ok(audit.body.includes('key.create') && audit.body.includes('key.revoke'), 'key changes are audited');
    assert.ok(!audit.body.includes(key), 'the key never lands in the audit log');
  });

  it('a new policy version reaches the running gateway within seconds', async () => {
    assert.equal((await chatAs(keys.engineer, 'hi', { model: 'llama-local' })).status, 403);
    const next = JSON.parse(JSON.stringify(POLICY));
    next.roles.engineer.models.push('llama-*');
    importPolicy(next);
    const t0 = Date.now();
    await h.waitFor(async () => (await chatAs(keys.engineer, 'hi', { model: 'llama-local' })).status === 200, 8000, 100);
    // NOTIFY makes it immediate; the 1 s poll is the backstop. Generous here
    // because CI runs this under ASan on a loaded machine.
    assert.ok(Date.now() - t0 < 5000, `propagation took ${Date.now() - t0} ms`);
  });
});
