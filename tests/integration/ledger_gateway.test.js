// modelgate — the usage ledger end to end through the real gateway: every
// forwarded request becomes exactly one row in a real PostgreSQL (plain,
// streamed, failed upstream), requests never forwarded leave none, token
// counts match what the client was told, the database going down never
// stops proxying and loses nothing, a SIGKILL right after answering loses
// nothing and double-counts nothing, and the admin report / CLI report add
// up to the ledger. Then the fault matrix of TESTING.md "Usage ledger", each
// case ending in a reconciliation of the client-side X-Request-Ids against
// the ledger (`modelgate usage reconcile --ids` + an exactly-once count):
// PostgreSQL restarted with `pg_ctl -m immediate` under load, a slow
// database (pg_sleep trigger), a hung one (shipper backend SIGSTOPped: until
// SIGCONT, and until the shipper's DB-call cut-off), client disconnect
// mid-stream, gateway SIGKILL with streams in flight (the cut streams keep
// their start record: one incomplete row each), journal disk full (never
// served-but-unrecorded). And a price change by SIGHUP: a new `prices` row,
// an audit entry, requests priced at the price in force when they started.
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync, execFile, execFileSync } = require('node:child_process');
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
const startGw = (env) => h.startGateway({ mock, configOverrides: withLedger, env });

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

// Waits for n rows of ids; with final (the default) only rows written by a
// final record count (a request still in flight has its start row, status 0).
async function waitRows(ids, n = ids.length, ms = 20000, final = true) {
  const t0 = Date.now();
  for (;;) {
    const r = rows(ids);
    if (r.filter((x) => !final || x.status !== 0).length >= n) return r;
    if (Date.now() - t0 > ms) throw new Error(`only ${r.length} of ${n} ledger rows after ${ms} ms`);
    await h.sleep(200);
  }
}

const chat = (content, extra = {}, g = gw) => h.request(g, { path: '/v1/chat/completions', auth: h.MASTER_KEY,
  body: h.chatBody(content, extra) });
const streamBody = (content) => h.chatBody(content, { stream: true, stream_options: { include_usage: true } });
const inList = (ids) => ids.map((i) => `'${i}'`).join(',');

// The reconciliation every fault case ends with: each id the client saw is
// in the ledger (`usage reconcile --ids` exits 0 with "missing 0") and in
// it exactly once.
let nrec = 0;
async function reconcile(ids, ms = 40000, final = true) {
  assert.ok(ids.length > 0);
  await waitRows(ids, ids.length, ms, final);
  const f = path.join(dir, `ids-${++nrec}.txt`);
  fs.writeFileSync(f, ids.join('\n') + '\n');
  const r = cli(['usage', 'reconcile', '--ids', f]);
  assert.equal(r.status, 0, `reconcile: ${r.stdout}${r.stderr}`);
  assert.match(r.stdout, new RegExp(`client ids ${ids.length}, missing 0`));
  assert.equal(Number(pg.sql(`SELECT count(*) FROM usage_events WHERE request_id IN (${inList(ids)})`)), ids.length,
    'exactly one row per request id');
}

// Timed chat request: { id, status, ms }.
async function timedChat(content, g = gw) {
  const t0 = Date.now();
  const r = await chat(content, {}, g);
  return { id: r.headers['x-request-id'], status: r.status, ms: Date.now() - t0, json: r.json };
}

// The shipper's backend: it connects as application_name modelgate-ledger.
// Waits until there is exactly one and it is idle (between batches, so it
// holds no locks when stopped).
async function shipperBackend() {
  const pid = await h.waitFor(() => {
    const r = pg.sql("SELECT pid || ' ' || state FROM pg_stat_activity WHERE application_name = 'modelgate-ledger'")
      .split('\n').filter(Boolean);
    if (r.length !== 1) return null;
    const [pid, state] = r[0].split(' ');
    return state === 'idle' ? Number(pid) : null;
  }, 20000, 100);
  assert.ok(pid, 'the shipper has one idle connection');
  return pid;
}

function pgCtl(args) {
  const bin = path.join(pgl.PGBIN, 'pg_ctl');
  const [file, argv] = process.getuid() === 0 ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  return new Promise((resolve, reject) => execFile(file, argv, (e, out, err) => (e ? reject(new Error(`${e.message} ${err}`)) : resolve(out))));
}

describe('usage ledger through the gateway', () => {
  before(async () => {
    pg = await pgl.startPg();
    dir = h.makeTmpDir('mg-ledger-');
    journal = path.join(dir, 'journal');
    const m1 = cli(['migrate']);
    assert.equal(m1.status, 0, m1.stderr);
    // Production setting (pg.js turns it off for speed): with
    // synchronous_commit=off a commit the shipper was told about can vanish
    // in a crash of PostgreSQL, after the journal checkpoint moved past it.
    pg.sql('ALTER DATABASE mg SET synchronous_commit = on');
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
    const ready = () => h.request(gw, { path: '/readyz', tls: false });
    const up = await ready();
    assert.equal(up.status, 200, up.body);
    assert.deepEqual(up.json.checks, { upstream: true, database: true, idp: null, usage_journal: true });
    pg.stop('immediate');
    // /readyz says which check failed (SPEC §4: the database reachable) ...
    const down = await h.waitFor(async () => { const r = await ready(); return r.status === 503 ? r : null; }, 8000);
    assert.ok(down, 'readyz stayed 200 with the database down');
    assert.equal(down.json.status, 'not_ready');
    assert.equal(down.json.checks.database, false);
    assert.equal(down.json.checks.upstream, true);
    const ids = [];
    for (let i = 0; i < 8; i++) {
      const r = await chat(`while the database is down ${i}`);
      assert.equal(r.status, 200, r.body);
      ids.push(r.headers['x-request-id']);
    }
    pg.start();
    const got = await waitRows(ids, ids.length, 30000);
    assert.equal(got.length, 8);
    // ... and ready again once it is back.
    assert.ok(await h.waitFor(async () => (await ready()).status === 200, 15000), 'readyz did not recover');
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

  it('fault: PostgreSQL restarted with pg_ctl -m immediate under load: proxying never stops, reconciles', async () => {
    const done = [];
    let stop = false;
    let restarting = false;
    let duringRestart = 0;
    const loop = async (k) => {
      for (let i = 0; !stop; i++) {
        const during = restarting;
        const r = await timedChat(`load ${k}/${i} across a database restart`);
        done.push(r);
        if (during && restarting) duringRestart++;
      }
    };
    const loops = [0, 1, 2].map(loop);
    await h.sleep(700);
    restarting = true;
    const hardStop = setTimeout(() => { stop = true; }, 40000);   // never an endless loop
    // same server options as the last start; -l so the server does not keep pg_ctl's stdout open
    await pgCtl(['restart', '-D', pg.data, '-l', path.join(pg.dir, 'log'), '-m', 'immediate', '-w', '-t', '30']);
    restarting = false;
    await h.sleep(1000);
    stop = true;
    clearTimeout(hardStop);
    await Promise.all(loops);
    const bad = done.filter((r) => r.status !== 200);
    assert.deepEqual(bad.map((r) => `${r.status} ${JSON.stringify(r.json)}`), [], 'every request answered during the restart');
    assert.ok(duringRestart >= 1, `requests flowed while PostgreSQL restarted (${duringRestart})`);
    assert.ok(done.length >= 20, `load ran (${done.length} requests)`);
    await reconcile(done.map((r) => r.id));
  });

  it('fault: slow database (pg_sleep(2) on every insert): rows arrive, proxying latency unaffected', async () => {
    pg.sql(`CREATE TABLE mg_test_slow_hits (t timestamptz DEFAULT clock_timestamp());
      CREATE FUNCTION mg_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO mg_test_slow_hits DEFAULT VALUES; PERFORM pg_sleep(2); RETURN NULL; END $$;
      CREATE TRIGGER mg_test_slow BEFORE INSERT ON usage_request_ids FOR EACH STATEMENT EXECUTE FUNCTION mg_test_slow()`);
    try {
      const done = [];
      for (let i = 0; i < 12; i++) {       // ~3 s of traffic: spans more than one slowed batch
        done.push(await timedChat(`while the database is slow ${i}`));
        await h.sleep(250);
      }
      assert.deepEqual(done.filter((r) => r.status !== 200), []);
      const worst = Math.max(...done.map((r) => r.ms));
      assert.ok(worst < 1000, `a 2 s database statement never delays a response (worst ${worst} ms)`);
      await reconcile(done.map((r) => r.id));
      assert.ok(Number(pg.sql('SELECT count(*) FROM mg_test_slow_hits')) >= 2, 'the batches really went through the slow trigger');
    } finally {
      pg.sql('DROP TRIGGER mg_test_slow ON usage_request_ids; DROP FUNCTION mg_test_slow(); DROP TABLE mg_test_slow_hits');
    }
  });

  it('fault: hung database (shipper backend SIGSTOPped): proxying continues, everything arrives after SIGCONT', async () => {
    const pid = await shipperBackend();
    const done = [];
    process.kill(pid, 'SIGSTOP');
    try {
      for (let i = 0; i < 8; i++) done.push(await timedChat(`while the database hangs ${i}`));
      assert.deepEqual(done.filter((r) => r.status !== 200), []);
      const worst = Math.max(...done.map((r) => r.ms));
      assert.ok(worst < 1000, `a hung database never delays a response (worst ${worst} ms)`);
      await h.sleep(1000);
      assert.deepEqual(rows(done.map((r) => r.id)), [], 'nothing can arrive while the backend is stopped');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await reconcile(done.map((r) => r.id));
  });

  it('fault: hung database left hung: the shipper cuts the call off (MODELGATE_LEDGER_DB_TIMEOUT_MS) and ships on a new connection', async () => {
    // The same cut-off as the 30 s default, shortened so the suite stays quick.
    await gw.stop();
    gw = await startGw({ MODELGATE_LEDGER_DB_TIMEOUT_MS: '2500' });
    const warm = await timedChat('connect the shipper');
    assert.equal(warm.status, 200);
    await waitRows([warm.id]);
    const pid = await shipperBackend();
    const done = [];
    process.kill(pid, 'SIGSTOP');
    try {
      const t0 = Date.now();
      for (let i = 0; i < 6; i++) done.push(await timedChat(`while the database stays hung ${i}`));
      assert.deepEqual(done.filter((r) => r.status !== 200), []);
      await reconcile(done.map((r) => r.id), 30000);   // arrives with the old backend still stopped
      assert.ok(Date.now() - t0 >= 2000, 'not before the cut-off');
      const others = pg.sql(`SELECT count(*) FROM pg_stat_activity WHERE application_name = 'modelgate-ledger' AND pid <> ${pid}`);
      assert.equal(others, '1', 'the shipper reconnected');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  });

  it('fault: client disconnects mid-stream: one row, client_gone, estimated tokens > 0', async () => {
    let n = 0;
    const s = await h.stream(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY,
      body: streamBody('[[mock:chunks=40,chunk_delay_ms=100]] a long answer the client walks away from'),
      onEvent: (ev, ctl) => { if (++n === 4) ctl.abort(); } });
    assert.equal(s.status, 200);
    assert.ok(s.aborted);
    const id = s.headers['x-request-id'];
    await reconcile([id]);
    const [cg, est, pt, ct, status] = pg.sql(`SELECT client_gone, estimated, prompt_tokens, completion_tokens, status
      FROM usage_events WHERE request_id = '${id}'`).split('|');
    assert.equal(cg, 't', 'client_gone');
    assert.equal(est, 't', 'token counts are estimated (the usage chunk never came)');
    assert.ok(Number(pt) > 0, `estimated prompt tokens ${pt}`);
    assert.ok(Number(ct) > 0, `estimated completion tokens for what was generated: ${ct}`);
    assert.ok(Number(status) > 0);
  });

  it('fault: gateway SIGKILL with streams in flight: every answered request exactly once, every cut stream one incomplete row', async () => {
    const answered = [];
    for (let i = 0; i < 5; i++) {
      const r = await timedChat(`answered before the kill ${i}`);
      assert.equal(r.status, 200);
      answered.push(r.id);
    }
    const full = await h.stream(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY, body: streamBody('a short stream, complete before the kill') });
    assert.ok(full.complete && full.status === 200);
    answered.push(full.headers['x-request-id']);
    const started = [];
    const cut = [0, 1, 2].map((k) => h.stream(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY,
      body: streamBody(`[[mock:chunks=60,chunk_delay_ms=100]] stream ${k} cut by the kill`),
      onEvent: (ev) => { if (ev.json && !started.includes(k)) started.push(k); } }));
    assert.ok(await h.waitFor(() => started.length === 3, 10000, 20), 'all three streams are flowing');
    const killed = gw;
    killed.proc.kill('SIGKILL');
    await killed.stop({ expectCode: null });
    const cutRes = await Promise.all(cut);
    for (const c of cutRes) assert.equal(c.complete, false, 'the stream was cut');
    const cutIds = cutRes.map((c) => c.headers['x-request-id']);
    gw = await startGw();                       // replays the journal
    // Every client-side id that reached the upstream is in the ledger, once.
    await reconcile(answered.concat(cutIds), 40000, false);
    await h.sleep(1500);                        // any replay has landed by now
    const cutRows = rows(cutIds);
    assert.equal(cutRows.length, 3);
    for (const r of cutRows) {
      assert.equal(r.status, 0, 'a start record: no status was ever final');
      assert.ok(r.stream && r.estimated, 'streamed, tokens estimated');
      assert.ok(r.pt > 0, 'billed at the estimated prompt tokens');
    }
    assert.equal(pg.sql(`SELECT count(*) FROM usage_events WHERE incomplete AND request_id IN (${inList(cutIds)})`), '3');
    // the completed ones are final rows, counted once, not replaced by their start
    const done = rows(answered);
    assert.equal(done.length, answered.length);
    assert.ok(done.every((r) => r.status === 200 && !r.estimated), JSON.stringify(done));
    assert.equal(pg.sql(`SELECT count(*) FROM usage_events WHERE incomplete AND request_id IN (${inList(answered)})`), '0');
    const f = path.join(dir, 'ids-cut.txt');
    fs.writeFileSync(f, cutIds.join('\n') + '\n');
    const rc = cli(['usage', 'reconcile', '--ids', f]);
    assert.match(rc.stdout, /incomplete 3/, 'reconcile names the incomplete rows');
    assert.equal(Number(pg.sql('SELECT count(*) - count(DISTINCT request_id) FROM usage_events')), 0);
  });

  it('a price change by SIGHUP: new prices row (old one kept), audited, requests priced at the price in force', async () => {
    const before = await timedChat('priced before the change');
    assert.equal(before.status, 200);
    await waitRows([before.id]);
    const model = pg.sql(`SELECT served_model FROM usage_events WHERE request_id = '${before.id}'`);
    const nAudit = Number(pg.sql("SELECT count(*) FROM audit_log WHERE action = 'price.change'"));
    gw.reload({ mock, configOverrides: (cfg) => {
      withLedger(cfg);
      cfg.models[0].price = { input_per_mtok: 3, output_per_mtok: 12 };
      return cfg;
    } });
    const after = await h.waitFor(async () => {
      const r = await timedChat('priced after the change');
      if (r.status !== 200) return null;
      await waitRows([r.id]);
      return pg.sql(`SELECT input_per_mtok FROM usage_events WHERE request_id = '${r.id}'`) === '3.0000000000' ? r : null;
    }, 10000, 200);
    assert.ok(after, 'a request after the reload is priced at the new price');
    const priced = (id) => pg.sql(`SELECT input_per_mtok || '/' || output_per_mtok || '/' ||
      (cost_usd = round((prompt_tokens * input_per_mtok + completion_tokens * output_per_mtok) / 1e6, 10))
      FROM usage_events WHERE request_id = '${id}'`);
    assert.equal(priced(before.id), '1.5000000000/6.0000000000/true');
    assert.equal(priced(after.id), '3.0000000000/12.0000000000/true');
    const prices = await h.waitFor(() => {
      const r = pg.sql(`SELECT input_per_mtok || '/' || output_per_mtok || '/' || effective_from FROM prices
        WHERE model = '${model}' ORDER BY effective_from`).split('\n').filter(Boolean);
      return r.length >= 2 ? r : null;
    }, 10000, 200);
    assert.ok(prices, 'the new price is a new row');
    const last = prices[prices.length - 1].split('/');
    const prev = prices[prices.length - 2].split('/');
    assert.deepEqual([prev[0], prev[1]], ['1.5000000000', '6.0000000000'], 'the old row is kept as it was');
    assert.deepEqual([last[0], last[1]], ['3.0000000000', '12.0000000000']);
    const tsOf = (id) => pg.sql(`SELECT ts FROM usage_events WHERE request_id = '${id}'`);
    assert.equal(pg.sql(`SELECT '${tsOf(before.id)}'::timestamptz < '${last[2]}'::timestamptz
      AND '${last[2]}'::timestamptz <= '${tsOf(after.id)}'::timestamptz`), 't',
      'the request before the change started before the new price took effect, the one after at or after it');
    const audit = await h.waitFor(() => {
      const r = pg.sql(`SELECT actor || '|' || target || '|' || before::text || '|' || after::text FROM audit_log
        WHERE action = 'price.change' ORDER BY id DESC LIMIT 1`);
      return Number(pg.sql("SELECT count(*) FROM audit_log WHERE action = 'price.change'")) > nAudit ? r : null;
    }, 10000, 200);
    assert.ok(audit, 'the change is in the audit log');
    const [actor, target, b, a] = audit.split('|');
    assert.match(actor, /^config@/);
    assert.equal(target, model);
    assert.equal(JSON.parse(b).input_per_mtok, 1.5);
    assert.equal(JSON.parse(a).input_per_mtok, 3);
    assert.equal(JSON.parse(a).output_per_mtok, 12);
    const v = cli(['audit', 'verify']);
    assert.equal(v.status, 0, `the audit hash chain verifies with the price entry in it: ${v.stdout}${v.stderr}`);
    assert.throws(() => pg.sql(`UPDATE prices SET input_per_mtok = 0 WHERE model = '${model}'`), /append-only/,
      'prices rows are never rewritten');
    // back to the suite's price for the tests that follow
    gw.reload({ mock, configOverrides: withLedger });
    assert.ok(await h.waitFor(async () => {
      const r = await timedChat('priced after changing back');
      if (r.status !== 200) return false;
      await waitRows([r.id]);
      return pg.sql(`SELECT input_per_mtok FROM usage_events WHERE request_id = '${r.id}'`) === '1.5000000000';
    }, 10000, 200));
  });

  it('fault: journal disk full: 503 usage_journal_unavailable, earlier rows intact, recovers when space is freed',
    { skip: process.getuid() !== 0 && 'needs root to mount a tmpfs' }, async () => {
      const mnt = path.join(dir, 'tiny');
      fs.mkdirSync(mnt);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'mgtest', mnt]);
      let g2;
      try {
        g2 = await h.startGateway({ mock, configOverrides: (cfg) => {
          withLedger(cfg);
          cfg.usage.journal_dir = path.join(mnt, 'journal');
          return cfg;
        } });
        const before = [];
        for (let i = 0; i < 5; i++) {
          const r = await timedChat(`before the disk fills ${i}`, g2);
          assert.equal(r.status, 200);
          before.push(r.id);
        }
        // fill the file system to the last byte
        const filler = path.join(mnt, 'filler');
        const fd = fs.openSync(filler, 'w');
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        try { for (;;) fs.writeSync(fd, chunk); } catch (e) { assert.equal(e.code, 'ENOSPC'); }
        try { for (;;) fs.writeSync(fd, chunk.subarray(0, 512)); } catch (e) { assert.equal(e.code, 'ENOSPC'); }
        fs.closeSync(fd);
        const after = [];
        let refused = null;
        for (let i = 0; i < 60 && !refused; i++) {   // the segments' last pages have some slack
          const r = await h.request(g2, { path: '/v1/chat/completions', auth: h.MASTER_KEY, body: h.chatBody(`disk full ${i}`) });
          if (r.status === 503) refused = r;
          else after.push({ id: r.headers['x-request-id'], status: r.status });
        }
        assert.ok(refused, 'requests are refused once the journal cannot write');
        h.assertErrorShape(refused);
        assert.equal(refused.json.error.code, 'usage_journal_unavailable');
        assert.ok(after.every((a) => a.status === 200), JSON.stringify(after));
        // Never served-but-unrecorded: the final record is journalled before
        // the body is sent, so every request answered 200 after the disk
        // filled has its final row; the first refused one was refused
        // either before forwarding (its start record failed: no row) or
        // after (its final failed: its start record is its row, incomplete).
        const again = await h.request(g2, { path: '/v1/chat/completions', auth: h.MASTER_KEY, body: h.chatBody('still full') });
        assert.equal(again.status, 503, 'stays refused while the disk is full');
        await reconcile(before.concat(after.map((a) => a.id)));   // rows written before the disk filled are intact
        fs.unlinkSync(filler);
        const back = await h.waitFor(async () => {
          const r = await timedChat('space is back', g2);
          return r.status === 200 ? r : null;
        }, 10000, 300);
        assert.ok(back, 'requests succeed again within seconds of space being freed');
        const later = [back.id];
        for (let i = 0; i < 3; i++) {
          const r = await timedChat(`after space was freed ${i}`, g2);
          assert.equal(r.status, 200);
          later.push(r.id);
        }
        await reconcile(later);
        const served = rows(after.map((a) => a.id));
        assert.ok(served.every((r) => r.status === 200 && !r.estimated), `served ones have their final row: ${JSON.stringify(served)}`);
        const refusedId = refused.headers['x-request-id'];
        const rr = rows([refusedId]);
        assert.ok(rr.length === 0 || rr[0].status === 0 || rr[0].status === 503, `the refused one: ${JSON.stringify(rr)}`);
      } finally {
        if (g2) await g2.stop();
        spawnSync('umount', ['-l', mnt]);
      }
    });

  it('after the fault matrix the daily rollup still sums to exactly the ledger', () => {
    const [ev, ro] = pg.sql(`SELECT (SELECT count(*) || '/' || sum(prompt_tokens) || '/' || sum(cost_usd) FROM usage_events)
      || ' ' || (SELECT sum(requests) || '/' || sum(prompt_tokens) || '/' || sum(cost_usd) FROM usage_rollup_daily)`).split(' ');
    assert.equal(ro, ev);
  });
});
