// modelgate — two gateway processes sharing one PostgreSQL and one policy:
// a token budget is held across both through leases (policy/lease.c), a
// lease a stopped instance held comes back, and a policy change made through
// one instance's admin API applies on the other within a second.
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
let gwA;
let gwB;
let dir;
const keys = {};

// Each request below reserves ~140 tokens (prompt estimate ~40 + max_tokens
// 100); 1450 tokens a day is N = 10 such reservations.
const N = 10;
const POLICY = {
  roles: {
    shared: { models: ['gpt-test'], limits: { tokens_per_day: 1450, max_tokens: 100 } },
    other: { models: ['gpt-test'], limits: { tokens_per_day: 1450, max_tokens: 100 } },
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
function psql(sql) {
  const r = spawnSync('psql', [pg.url, '-At', '-c', sql], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}
const withDb = (cfg) => {
  cfg.database = { url: pg.url };
  cfg.limits.upstream_first_byte_timeout = '10s';
  return cfg;
};
const chat = (gw, key, content) => h.request(gw, { path: '/v1/chat/completions', auth: key, body: h.chatBody(content) });

describe('two instances share budgets and policy', () => {
  before(async () => {
    pg = await pgl.startPg();
    dir = h.makeTmpDir('mg-instances-');
    const m = cli(['migrate']);
    assert.equal(m.status, 0, m.stderr);
    for (const role of ['shared', 'other']) {
      const k = cli(['keys', 'create', '--user', `${role}@example.com`, '--role', role]);
      assert.equal(k.status, 0, k.stderr);
      keys[role] = k.stdout.trim();
    }
    const f = path.join(dir, 'policy.json');
    fs.writeFileSync(f, JSON.stringify(POLICY));
    assert.equal(cli(['policy', 'import', f]).status, 0);
    mock = await h.startMock();
    gwA = await h.startGateway({ mock, configOverrides: withDb });
    gwB = await h.startGateway({ mock, configOverrides: withDb });
  });
  after(async () => {
    await h.cleanup();
    if (pg) pg.destroy();
  });

  it('a budget for N requests admits at most N across both instances, at least N minus one per instance', async () => {
    await mock.clear();
    // 60 simultaneous requests, alternating between the instances; the
    // upstream holds each 3 s so only reservations decide.
    const rs = await Promise.all(Array.from({ length: 60 }, (_, i) =>
      chat(i % 2 ? gwB : gwA, keys.shared, `[[mock:delay_ms=3000]] shared ${String(i).padStart(3, '0')}`)));
    const ok = rs.filter((r) => r.status === 200);
    const refused = rs.filter((r) => r.status === 429);
    assert.equal(ok.length + refused.length, 60, `statuses ${rs.map((r) => r.status)}`);
    // Each instance may strand less than one reservation of lease it cannot use.
    assert.ok(ok.length <= N && ok.length >= N - 2, `${ok.length} admitted of a budget for ${N}`);
    for (const r of refused) {
      assert.equal(r.json.error.code, 'budget_exceeded');
      assert.ok(Number(r.headers['retry-after']) >= 1);
    }
    assert.equal((await mock.requests()).length, ok.length, 'only admitted requests reached the upstream');
    // The database never handed out more than the limit.
    const [spent, leased] = psql("SELECT spent, leased FROM budget_counters WHERE scope = 'u:shared@example.com' AND slot = 'tokens_day'").split('|').map(Number);
    assert.ok(spent + leased <= 1450, `spent ${spent} + leased ${leased}`);
  });

  it('usage settles into the shared counter, and a stopped instance returns its lease', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await chat(gwA, keys.other, `settle ${i}`)).status, 200);
    for (let i = 0; i < 3; i++) assert.equal((await chat(gwB, keys.other, `settle ${i}`)).status, 200);
    const row = () => psql("SELECT spent, leased FROM budget_counters WHERE scope = 'u:other@example.com' AND slot = 'tokens_day'").split('|').map(Number);
    const settled = await h.waitFor(() => row()[0] > 0, 5000, 100);
    assert.ok(settled, 'usage reached budget_counters.spent');
    const before = psql("SELECT count(*) FROM budget_leases WHERE scope = 'u:other@example.com' AND amount > 0");
    assert.equal(before, '2', 'both instances hold a lease');
    await gwB.stop();
    const mine = psql("SELECT coalesce(sum(amount), 0) FROM budget_leases WHERE scope = 'u:other@example.com' AND amount > 0");
    const [spent, leased] = row();
    assert.equal(leased, Number(mine), 'the stopped instance gave its unused lease back');
    // mock usage: a few words per request, far below the reservations
    assert.ok(spent >= 6 && spent < 200, `spent ${spent}`);
    gwB = await h.startGateway({ mock, configOverrides: withDb });
  });

  it('a policy change through one instance applies on the other within a second', async () => {
    const get = await h.request(gwA, { path: '/admin/v1/policy', auth: h.MASTER_KEY });
    assert.equal(get.status, 200, get.body);
    assert.equal((await chat(gwB, keys.other, 'before')).status, 200);
    const next = JSON.parse(get.body);
    next.roles.other.models = ['nothing-*'];
    const put = await h.request(gwA, { path: '/admin/v1/policy', auth: h.MASTER_KEY, method: 'PUT',
      body: next, headers: { 'if-match': get.headers.etag } });
    assert.equal(put.status, 200, put.body);
    const t0 = Date.now();
    const seen = await h.waitFor(async () => (await chat(gwB, keys.other, 'after')).status === 403, 3000, 50);
    assert.ok(seen, 'instance B applies the change');
    assert.ok(Date.now() - t0 < 1000, `propagation took ${Date.now() - t0} ms`);
  });
});
