// modelgate — the usage ledger end to end through the real gateway: every
// forwarded request becomes exactly one row in a real PostgreSQL (plain,
// streamed, failed upstream), requests never forwarded leave none, token
// counts match what the client was told, the database going down never
// stops proxying and loses nothing, a SIGKILL right after answering loses
// nothing and double-counts nothing, and the admin report / CLI report add
// up to the ledger.
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
let journal;

const today = new Date().toISOString().slice(0, 10);
const withLedger = (cfg) => {
  cfg.database = { url: pg.url };
  cfg.usage = { journal_dir: journal };
  cfg.models[0].price = { input_per_mtok: 1.5, output_per_mtok: 6 };
  cfg.models.push({ name: 'broken', deployments: [{ provider: 'mock', model: 'mock:status=500' }] });
  return cfg;
};
const startGw = () => h.startGateway({ mock, configOverrides: withLedger });

function cli(args) {
  const cfg = path.join(dir, 'cli.yaml');
  fs.writeFileSync(cfg, h.toYaml({
    listen: [{ address: '127.0.0.1:1' }],
    database: { url: pg.url },
    usage: { journal_dir: journal },
  }));
  return spawnSync(h.gatewayBin(), [...args, '-c', cfg], { encoding: 'utf8', cwd: h.ROOT });
}

const rows = (ids) => (ids.length ? pg.sql(
  `SELECT request_id, status, prompt_tokens, completion_tokens, stream, estimated, model FROM usage_events
   WHERE request_id IN (${ids.map((i) => `'${i}'`).join(',')}) ORDER BY request_id`)
  .split('\n').filter(Boolean).map((l) => {
    const [request_id, status, pt, ct, stream, estimated, model] = l.split('|');
    return { request_id, status: Number(status), pt: Number(pt), ct: Number(ct), stream: stream === 't', estimated: estimated === 't', model };
  }) : []);

async function waitRows(ids, n = ids.length, ms = 20000) {
  const t0 = Date.now();
  for (;;) {
    const r = rows(ids);
    if (r.length >= n) return r;
    if (Date.now() - t0 > ms) throw new Error(`only ${r.length} of ${n} ledger rows after ${ms} ms`);
    await h.sleep(200);
  }
}

const chat = (content, extra = {}) => h.request(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY,
  body: h.chatBody(content, extra) });

describe('usage ledger through the gateway', () => {
  before(async () => {
    pg = await pgl.startPg();
    dir = h.makeTmpDir('mg-ledger-');
    journal = path.join(dir, 'journal');
    const m1 = cli(['migrate']);
    assert.equal(m1.status, 0, m1.stderr);
    const m2 = cli(['migrate']);
    assert.equal(m2.status, 0, `migrate is idempotent: ${m2.stderr}`);
    mock = await h.startMock();
    gw = await startGw();
  });
  after(async () => {
    await h.cleanup();
    if (pg) pg.destroy();
  });

  it('every forwarded request is one row with the counts the client saw; refused ones leave none', async () => {
    const ids = [];
    const usage = new Map();
    for (let i = 0; i < 12; i++) {
      const r = await chat(`plain request number ${i} with a few words`);
      assert.equal(r.status, 200, r.body);
      ids.push(r.headers['x-request-id']);
      usage.set(r.headers['x-request-id'], r.json.usage);
    }
    for (let i = 0; i < 3; i++) {
      const s = await h.stream(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY,
        body: h.chatBody(`stream ${i} please`, { stream: true, stream_options: { include_usage: true } }) });
      assert.equal(s.status, 200);
      const u = s.events.find((e) => e.json?.usage && e.json.choices?.length === 0);
      ids.push(s.headers['x-request-id']);
      usage.set(s.headers['x-request-id'], u.json.usage);
    }
    const failed = await h.request(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY,
      body: h.chatBody('this upstream fails', { model: 'broken' }) });
    assert.equal(failed.status, 502);
    ids.push(failed.headers['x-request-id']);
    const refused = await h.request(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY,
      body: h.chatBody('no such model', { model: 'nope' }) });
    assert.equal(refused.status, 404);
    const unauth = await h.request(gw, { path: '/v1/chat/completions', auth: 'wrong',
      body: h.chatBody('who am i') });
    assert.equal(unauth.status, 401);

    const got = await waitRows(ids);
    assert.equal(got.length, ids.length, 'one row per forwarded request');
    for (const row of got) {
      const u = usage.get(row.request_id);
      if (u) {
        assert.equal(row.status, 200);
        assert.equal(row.pt, u.prompt_tokens, `prompt tokens of ${row.request_id}`);
        assert.equal(row.ct, u.completion_tokens, `completion tokens of ${row.request_id}`);
        assert.equal(row.estimated, false);
      } else {
        assert.equal(row.status, 502);
      }
    }
    assert.equal(got.filter((r) => r.stream).length, 3);
    assert.deepEqual(rows([refused.headers['x-request-id'], unauth.headers['x-request-id']]), [],
      'requests never forwarded have no row');
    assert.equal(Number(pg.sql(`SELECT count(*) - count(DISTINCT request_id) FROM usage_events`)), 0);
  });

  it('the database going down never stops proxying, and nothing is lost', async () => {
    pg.stop('immediate');
    const ids = [];
    for (let i = 0; i < 8; i++) {
      const r = await chat(`while the database is down ${i}`);
      assert.equal(r.status, 200, r.body);
      ids.push(r.headers['x-request-id']);
    }
    pg.start();
    const got = await waitRows(ids, ids.length, 30000);
    assert.equal(got.length, 8);
  });

  it('a SIGKILL right after answering loses nothing and counts nothing twice', async () => {
    const ids = [];
    for (let i = 0; i < 10; i++) {
      const r = await chat(`answered just before the kill ${i}`);
      assert.equal(r.status, 200);
      ids.push(r.headers['x-request-id']);
    }
    const killed = gw;
    killed.proc.kill('SIGKILL');
    await killed.stop({ expectCode: null });   // a deliberate kill: no exit status to check
    await h.sleep(300);
    gw = await startGw();     // same journal directory: replays what was not shipped
    const got = await waitRows(ids, ids.length, 30000);
    assert.equal(got.length, 10);
    await h.sleep(1500);      // let any replay finish
    assert.equal(Number(pg.sql(`SELECT count(*) - count(DISTINCT request_id) FROM usage_events`)), 0,
      'replay never double counts');
  });

  it('the admin report and the CLI report agree with the ledger to the cent', async () => {
    await h.sleep(500);
    const q = `from=${today}&to=${today}&group_by=model&format=csv`;
    const denied = await h.request(gw, { path: `/admin/v1/usage?${q}`, auth: 'wrong' });
    assert.equal(denied.status, 401);
    const api = await h.request(gw, { path: `/admin/v1/usage?${q}`, auth: h.MASTER_KEY });
    assert.equal(api.status, 200, api.body);
    assert.match(api.headers['content-type'], /text\/csv/);
    const lines = api.body.trim().split('\n');
    assert.equal(lines[0], 'model,requests,prompt_tokens,completion_tokens,total_tokens,cost_usd');
    const total = lines.slice(1).reduce((a, l) => a + Number(l.split(',')[1]), 0);
    assert.equal(total, Number(pg.sql(`SELECT count(*) FROM usage_events WHERE ts::date = '${today}'`)));
    const c = cli(['usage', '--from', today, '--to', today, '--group-by', 'model', '--format', 'csv']);
    assert.equal(c.status, 0, c.stderr);
    assert.equal(c.stdout.trim(), api.body.trim(), 'CSV from the API equals the CLI');
    const bad = await h.request(gw, { path: '/admin/v1/usage?from=yesterday', auth: h.MASTER_KEY });
    assert.equal(bad.status, 400);
    h.assertErrorShape(bad);
  });
});
