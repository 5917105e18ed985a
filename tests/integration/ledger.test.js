// modelgate — usage ledger against a real throwaway PostgreSQL: migrations,
// journal -> shipper -> rows exactly once (SIGKILL after answering, a kill
// between commit and checkpoint, random kill -9 while shipping), DB down at
// start, a bad row in a batch, a torn journal tail, reports and CSV, export,
// drop and reconcile; the daily rollup equals a scan of the events for every
// report format and stays exact through replays. Drives tests/usage/ledger_driver (journal + shipper +
// CLI functions linked without the gateway).
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');
const pgl = require('./lib/pg');

const ROOT = path.resolve(__dirname, '../..');
const MG_BIN = process.env.MG_BIN || path.join(ROOT, 'build/modelgate');
const SAN = /asan/.test(MG_BIN);
const DRIVER = path.join(path.dirname(MG_BIN), 'usage', 'ledger_driver');

let pg;
let tmp;
let jseq = 0;
const NO_DB = { LEDGER_DB: '' };   // journal only: the writer ships nothing
const newJournal = () => path.join(tmp, `journal-${++jseq}`);

function run(args, { journal, env = {}, killAfterMs } = {}) {
  return new Promise((resolve) => {
    const child = spawn(DRIVER, args, {
      cwd: ROOT,
      env: { ...process.env, LEDGER_DB: pg.url, LEDGER_JOURNAL: journal || newJournal(), ...env },
    });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    if (killAfterMs !== undefined) setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}
function canUnshare() {
  try { execFileSync('unshare', ['-m', 'true'], { stdio: 'ignore' }); return true; } catch (_) { return false; }
}
const stats = (r) => JSON.parse(r.stdout.trim().split('\n').pop());
const count = (prefix) => Number(pg.sql(`SELECT count(*) FROM usage_events WHERE request_id LIKE '${prefix}-%'`));
const distinct = (prefix) => Number(pg.sql(`SELECT count(DISTINCT request_id) FROM usage_events WHERE request_id LIKE '${prefix}-%'`));

describe('usage ledger (real PostgreSQL)', { skip: !pgl.available() && 'PostgreSQL binaries not installed' }, () => {
  before(async () => {
    execFileSync(path.join(ROOT, 'tests/usage/build.sh'), [DRIVER], {
      env: { ...process.env, MG_TEST_CFLAGS: SAN ? '-fsanitize=address,undefined -fno-omit-frame-pointer' : '' },
      stdio: 'inherit',
    });
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mgledger-'));
    pg = await pgl.startPg();
  });
  after(() => {
    if (pg) pg.destroy();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('migrate: two instances at once, then again: each file applied once', async () => {
    const [a, b] = await Promise.all([run(['migrate']), run(['migrate'])]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const files = fs.readdirSync(path.join(ROOT, 'migrations')).filter((f) => /^\d+_.*\.sql$/.test(f));
    assert.equal(Number(pg.sql('SELECT count(*) FROM schema_migrations')), files.length);
    assert.match(a.stdout + b.stdout, /applied 0001_usage_ledger\.sql/);
    assert.match(a.stdout + b.stdout, /schema up to date/);
    const c = await run(['migrate']);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /schema up to date/);
    assert.equal(Number(pg.sql('SELECT count(*) FROM schema_migrations')), files.length);
  });

  it('migrate: database down -> exit 2', async () => {
    const r = await new Promise((resolve) => {
      const ch = spawn(DRIVER, ['migrate'], { cwd: ROOT, env: { ...process.env, LEDGER_DB: 'postgresql://postgres@127.0.0.1:1/mg' } });
      let err = '';
      ch.stderr.on('data', (d) => { err += d; });
      ch.on('close', (code) => resolve({ code, err }));
    });
    assert.equal(r.code, 2);
    assert.match(r.err, /cannot connect/);
  });

  it('journal -> shipper -> one row per record, price seeded once', async () => {
    const r = await run(['write', '3000', '--prefix', 'basic', '--workers', '3']);
    assert.equal(r.code, 0, r.stderr);
    const s = stats(r);
    assert.equal(s.written, 3000);
    assert.equal(s.pending, 0);
    assert.equal(count('basic'), 3000);
    assert.equal(distinct('basic'), 3000);
    // tokens as written: 10 + n % 17 and 5 + n % 11
    let p = 0, c = 0;
    for (let n = 0; n < 3000; n++) { p += 10 + (n % 17); c += 5 + (n % 11); }
    assert.equal(pg.sql("SELECT sum(prompt_tokens) || ',' || sum(completion_tokens) FROM usage_events WHERE request_id LIKE 'basic-%'"), `${p},${c}`);
    await run(['write', '1', '--prefix', 'basic2']);
    assert.equal(pg.sql("SELECT count(*) FROM prices WHERE model = 'gpt-test'"), '1', 'unchanged price is not re-inserted');
  });

  it('SIGKILL right after answering: the journal ships on restart', async () => {
    const journal = newJournal();
    const w = await run(['write', '2000', '--prefix', 'kill', '--exit-now'], { journal, env: NO_DB });
    assert.equal(w.code, 0, w.stderr);
    assert.equal(count('kill'), 0, 'nothing shipped before the kill');
    const before = fs.readdirSync(journal).filter((f) => f.endsWith('.mgj'));
    const s = await run(['ship'], { journal });
    assert.equal(s.code, 0, s.stderr);
    assert.equal(count('kill'), 2000);
    assert.equal(distinct('kill'), 2000);
    // fully shipped closed segments are deleted
    const left = fs.readdirSync(journal).filter((f) => before.includes(f));
    assert.deepEqual(left, []);
  });

  it('kill between DB commit and checkpoint: replay does not double count', async () => {
    const journal = newJournal();
    // batches are 5,000 records (usage/shipper.c BATCH_RECORDS)
    await run(['write', '12000', '--prefix', 'replay', '--workers', '1', '--exit-now'], { journal, env: NO_DB });
    const crash = await run(['ship'], { journal, env: { MODELGATE_TEST_CRASH_AFTER_COMMITS: '1' } });
    assert.equal(crash.signal, 'SIGKILL', `exit ${crash.code}: ${crash.stderr}`);
    assert.equal(count('replay'), 5000, 'the first batch committed');
    const s = await run(['ship'], { journal });
    assert.equal(s.code, 0, s.stderr);
    assert.equal(count('replay'), 12000);
    assert.equal(distinct('replay'), 12000);
    assert.ok(stats(s).duplicate >= 5000, s.stdout);
  });

  it('start records: the final replaces the start, a start alone stays as an incomplete row, replay changes nothing', async () => {
    // 3,000 requests: a start record each, its final 200 requests later (so
    // many finals land in a later batch than their start, and replace a row
    // already committed); every 7th request never gets its final (the
    // process "died"); a quarter of the starts name another provider than
    // their final (a fallback), which moves the rollup between groups.
    const journal = newJournal();
    const w = await run(['write', '6000', '--prefix', 'sf', '--workers', '2', '--starts', '--finals-every', '7',
      '--month', '2023-05', '--exit-now'], { journal, env: NO_DB });
    assert.equal(w.code, 0, w.stderr);
    const s1 = await run(['ship'], { journal });
    assert.equal(s1.code, 0, s1.stderr);
    const byKind = () => pg.sql(`SELECT incomplete, status, estimated, count(*), count(DISTINCT request_id)
      FROM usage_events WHERE request_id LIKE 'sf-%' GROUP BY 1, 2, 3 ORDER BY 1`);
    const cut = Math.floor(3000 / 7);   // n % 7 == 6 for n < 3000
    assert.equal(byKind(), `f|200|f|${3000 - cut}|${3000 - cut}\nt|0|t|${cut}|${cut}`,
      'one row per request: the final where there was one, else the start (status 0, estimated)');
    assert.equal(pg.sql("SELECT count(*) FROM usage_events WHERE request_id LIKE 'sf-%' AND provider = 'first-try' AND NOT incomplete"), '0');
    assert.equal(pg.sql("SELECT count(*) FROM usage_request_ids WHERE request_id LIKE 'sf-%' AND incomplete"), String(cut));
    assert.equal(pg.sql("SELECT prompt_tokens || '/' || completion_tokens || '/' || cost_usd FROM usage_events WHERE request_id = 'sf-6'"),
      '12/0/0.0000300000', 'a start alone is billed at the estimate');
    const roll = () => pg.sql(`SELECT (SELECT sum(requests) || '/' || sum(prompt_tokens) || '/' || sum(completion_tokens) || '/' || sum(cost_usd)
      FROM usage_rollup_daily WHERE day >= '2023-05-01' AND day < '2023-06-01') || ' ' || (SELECT count(*) || '/' || sum(prompt_tokens)
      || '/' || sum(completion_tokens) || '/' || sum(cost_usd) FROM usage_events WHERE ts >= '2023-05-01Z' AND ts < '2023-06-01Z')`).split(' ');
    const [r1, e1] = roll();
    assert.equal(r1, e1, 'the rollup moved by exactly the difference');
    assert.equal(pg.sql("SELECT count(*) FROM usage_rollup_daily WHERE requests = 0"), '0', 'no group left at zero');
    // the same journal again from the start (a lost checkpoint): nothing changes
    const again = newJournal();
    await run(['write', '6000', '--prefix', 'sf', '--workers', '2', '--starts', '--finals-every', '7',
      '--month', '2023-05', '--exit-now'], { journal: again, env: NO_DB });
    const s2 = await run(['ship'], { journal: again });
    assert.equal(s2.code, 0, s2.stderr);
    assert.equal(stats(s2).shipped, 0, s2.stdout);
    assert.equal(byKind(), `f|200|f|${3000 - cut}|${3000 - cut}\nt|0|t|${cut}|${cut}`);
    assert.deepEqual(roll(), [r1, e1]);
  });

  it('start records: left out when the final is in the same batch, replaced when it comes a batch later; counters add up', async () => {
    // One worker, 6,000 requests = 12,000 records, shipped in batches of 5,000:
    // most finals share their start's batch (the shipper leaves the start out
    // of the COPY), the 200 starts before each of the two batch boundaries are
    // committed first and replaced by their final in the next batch.
    const journal = newJournal();
    const w = await run(['write', '12000', '--prefix', 'co', '--workers', '1', '--starts', '--month', '2023-08',
      '--exit-now'], { journal, env: NO_DB });
    assert.equal(w.code, 0, w.stderr);
    const s = await run(['ship'], { journal });
    assert.equal(s.code, 0, s.stderr);
    const st = stats(s);
    assert.equal(st.shipped, 6400, `6,000 new rows + 400 finals replacing a committed start: ${s.stdout}`);
    assert.equal(st.shipped + st.duplicate, 12000, 'every record is a new row, a replacing final or a superseded start');
    assert.equal(pg.sql(`SELECT count(*) || '/' || count(DISTINCT request_id) || '/' || count(*) FILTER (WHERE incomplete OR status <> 200)
      FROM usage_events WHERE request_id LIKE 'co-%'`), '6000/6000/0', 'one final row per request');
    assert.equal(pg.sql("SELECT count(*) FROM usage_request_ids WHERE request_id LIKE 'co-%' AND incomplete"), '0');
    const roll = () => pg.sql(`SELECT (SELECT sum(requests) || '/' || sum(prompt_tokens) || '/' || sum(cost_usd)
      FROM usage_rollup_daily WHERE day >= '2023-08-01' AND day < '2023-09-01') || ' ' || (SELECT count(*) || '/'
      || sum(prompt_tokens) || '/' || sum(cost_usd) FROM usage_events WHERE ts >= '2023-08-01Z' AND ts < '2023-09-01Z')`).split(' ');
    const [r1, e1] = roll();
    assert.equal(r1, e1);
    // written and shipped by one process: records_pending returns to 0 with
    // the left-out starts acknowledged (the writer exits 0 only then)
    const w2 = await run(['write', '2000', '--prefix', 'co2', '--workers', '2', '--starts', '--month', '2023-08']);
    assert.equal(w2.code, 0, w2.stdout + w2.stderr);
    assert.equal(stats(w2).written, 2000);
    assert.equal(stats(w2).pending, 0);
    assert.equal(stats(w2).shipped + stats(w2).duplicate, 2000);
    assert.equal(pg.sql("SELECT count(*) || '/' || count(*) FILTER (WHERE incomplete) FROM usage_events WHERE request_id LIKE 'co2-%'"), '1000/0');
    const [r2, e2] = roll();
    assert.equal(r2, e2);
  });

  it('kill -9 at random moments while shipping: exactly once', async () => {
    const journal = newJournal();
    await run(['write', '20000', '--prefix', 'chaos', '--workers', '2', '--exit-now'], { journal, env: NO_DB });
    for (const ms of [150, 400, 700]) {
      const k = await run(['ship'], { journal, killAfterMs: ms });
      assert.ok(k.signal === 'SIGKILL' || k.code === 0, `${k.code} ${k.signal} ${k.stderr}`);
    }
    const s = await run(['ship'], { journal });
    assert.equal(s.code, 0, s.stderr);
    assert.equal(count('chaos'), 20000);
    assert.equal(distinct('chaos'), 20000);
  });

  it('database down at start, then up: every row arrives', async () => {
    pg.stop('immediate');
    const p = run(['write', '500', '--prefix', 'down', '--wait-ms', '30000']);
    await new Promise((r) => setTimeout(r, 1500));
    pg.start();
    const r = await p;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(count('down'), 500);
  });

  it('one bad row goes to usage_dead_letter, the rest of the batch commits', async () => {
    const r = await run(['write', '1000', '--prefix', 'bad', '--bad-every', '100']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(stats(r).dead, 10);
    assert.equal(count('bad'), 990);
    const dl = pg.sql("SELECT count(*) FROM usage_dead_letter WHERE convert_from(raw, 'UTF8') LIKE '%\"bad-%' AND error LIKE '%check%'");
    assert.equal(dl, '10');
  });

  it('torn tail from a crash mid-write is skipped; later appends are intact', async () => {
    const journal = newJournal();
    await run(['write', '300', '--prefix', 'torn', '--workers', '1', '--exit-now'], { journal, env: NO_DB });
    const seg = fs.readdirSync(journal).filter((f) => f.endsWith('.mgj')).sort()[0];
    // a record header promising 400 bytes, then only 20 of them
    const hdr = Buffer.from([0xff, 0x4d, 0x47, 0x4a, 0x90, 0x01, 0, 0, 1, 2, 3, 4]);
    fs.appendFileSync(path.join(journal, seg), Buffer.concat([hdr, Buffer.from('{"ts":"2026-01-01T0')]));
    const r = await run(['write', '200', '--prefix', 'torn2', '--workers', '1'], { journal });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(count('torn'), 300);
    assert.equal(count('torn2'), 200);
    assert.equal(stats(r).corrupt, 12 + 19, r.stdout);   // exactly the torn bytes
  });

  it('journal disk full: write fails, healthy goes false, everything written ships', { skip: !canUnshare() && 'needs unshare -m (root)' }, async () => {
    const mnt = path.join(tmp, 'tiny');
    fs.mkdirSync(mnt);
    const script = `mount -t tmpfs -o size=256k none ${mnt} && ` +
      `LEDGER_DB= LEDGER_JOURNAL=${mnt}/j ${DRIVER} write 100000 --prefix full --workers 1; echo "rc=$?"; ` +
      `LEDGER_JOURNAL=${mnt}/j ${DRIVER} ship`;
    const r = await new Promise((resolve) => {
      const ch = spawn('unshare', ['-m', 'sh', '-c', script], { env: { ...process.env, LEDGER_DB: pg.url } });
      let out = '', err = '';
      ch.stdout.on('data', (d) => { out += d; });
      ch.stderr.on('data', (d) => { err += d; });
      ch.on('close', (code) => resolve({ code, out, err }));
    });
    const lines = r.out.trim().split('\n');
    const w = JSON.parse(lines[0]);
    assert.match(lines[1], /^rc=4$/, r.err);
    assert.equal(w.healthy, false);
    assert.equal(w.write_errors, 1);
    assert.ok(w.written > 100 && w.written < 100000, lines[0]);
    assert.equal(r.code, 0, r.err);
    assert.equal(count('full'), w.written, 'every record written before the disk filled is in the ledger');
    assert.equal(distinct('full'), w.written);
  });

  it('report: totals equal SELECT sum(...), CSV columns exact', async () => {
    const r = await run(['write', '600', '--prefix', 'rep', '--month', '2025-03']);
    assert.equal(r.code, 0, r.stderr);
    const csv = await run(['usage', '--from', '2025-03-01', '--to', '2025-03-31', '--group-by', 'model,user', '--format', 'csv']);
    assert.equal(csv.code, 0, csv.stderr);
    const lines = csv.stdout.trim().split('\n');
    assert.equal(lines[0], 'model,user,requests,prompt_tokens,completion_tokens,total_tokens,cost_usd');
    const expect = pg.sql("SELECT model || ',' || email || ',' || count(*) || ',' || sum(prompt_tokens) || ',' || sum(completion_tokens) || ',' || sum(prompt_tokens + completion_tokens) || ',' || sum(cost_usd) FROM usage_events WHERE ts >= '2025-03-01Z' AND ts < '2025-04-01Z' GROUP BY model, email ORDER BY model, email");
    assert.deepEqual(lines.slice(1), expect.split('\n'));
    const j = await run(['usage', '--from', '2025-03-01', '--to', '2025-03-31', '--group-by', 'day', '--format', 'json']);
    const doc = JSON.parse(j.stdout);
    const tot = pg.sql("SELECT count(*) || ' ' || sum(cost_usd) FROM usage_events WHERE ts >= '2025-03-01Z' AND ts < '2025-04-01Z'").split(' ');
    assert.equal(doc.totals.requests, Number(tot[0]));
    assert.equal(doc.rows.reduce((a, x) => a + x.requests, 0), 600);
    assert.equal(j.stdout.match(/"totals":\{.*"cost_usd":([0-9.]+)\}/)[1], tot[1], 'exact decimal total');
    const f = await run(['usage', '--from', '2025-03-01', '--to', '2025-03-31', '--group-by', 'role', '--filter', 'model=gpt-test', '--format', 'csv']);
    assert.equal(f.code, 0, f.stderr);
    assert.match(f.stdout, /^role,requests/);
    assert.match(f.stdout, /\n"dev,admin",\d+/);   // CSV quoting of a comma
    const t = await run(['usage', '--from', '2025-03-01', '--to', '2025-03-31', '--group-by', 'cost_center']);
    assert.match(t.stdout, /TOTAL\s+600\s/);
    const bad = await run(['usage', '--from', '2025-03-01', '--to', '2025-03-31', '--group-by', 'nope']);
    assert.equal(bad.code, 1);
    const baddate = await run(['usage', '--from', '2025-02-30', '--to', '2025-03-31']);
    assert.equal(baddate.code, 1);
  });

  it('CSV: text cells a spreadsheet would run as a formula are defused', async () => {
    // Claims and key names come from outside; a cell starting with = + - @
    // must not become a formula in finance's spreadsheet.
    pg.sql(`INSERT INTO usage_events (request_id, ts, subject, email, cost_center, model, provider, status,
             prompt_tokens, completion_tokens, cost_usd)
            VALUES ('csv-inj-1', '2025-03-31T12:00:00Z', 'x', '=HYPERLINK("http://evil")', '@SUM(A1)', 'gpt-test',
                    'mock', 200, 1, 2, 0.5)`);
    try {
      const r = await run(['usage', '--from', '2025-03-31', '--to', '2025-03-31', '--group-by', 'user,cost_center',
        '--filter', 'cost_center=@SUM(A1)', '--format', 'csv'], { env: { MODELGATE_USAGE_NO_ROLLUP: '1' } });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trimEnd().split('\n'), [
        'user,cost_center,requests,prompt_tokens,completion_tokens,total_tokens,cost_usd',
        `"'=HYPERLINK(""http://evil"")","'@SUM(A1)",1,1,2,3,0.5000000000`,
      ]);
      // JSON keeps the value as it is
      const j = await run(['usage', '--from', '2025-03-31', '--to', '2025-03-31', '--group-by', 'user',
        '--filter', 'cost_center=@SUM(A1)', '--format', 'json'], { env: { MODELGATE_USAGE_NO_ROLLUP: '1' } });
      assert.equal(JSON.parse(j.stdout).rows[0].user, '=HYPERLINK("http://evil")');
    } finally {
      pg.sql("DELETE FROM usage_events WHERE request_id = 'csv-inj-1'");
    }
  });

  it('rollup: every report format equals SELECT ... FROM usage_events GROUP BY (many group-bys and filters)', async () => {
    // 3000 records 41.7 min apart: June..August 2025, NULL e-mails / cost centers / key ids
    const w = await run(['write', '3000', '--prefix', 'roll', '--month', '2025-06', '--step-ms', '2500000', '--varied', '--workers', '3']);
    assert.equal(w.code, 0, w.stderr);
    assert.equal(count('roll'), 3000);
    const RAW = {
      user: 'coalesce(email, subject)', role: 'roles', model: 'model', provider: 'provider',
      day: "((ts AT TIME ZONE 'UTC')::date)::text", month: "to_char(date_trunc('month', ts AT TIME ZONE 'UTC'), 'YYYY-MM')",
      cost_center: 'cost_center', key: 'key_id', status: 'status::text', served_model: 'served_model', email: 'email',
    };
    const q = (v) => `'${v.replace(/'/g, "''")}'`;
    const expected = (from, to, groups, filters) => {
      const sel = groups.map((g) => RAW[g]);
      const where = [`ts >= '${from}T00:00:00Z'`, `ts < ('${to}'::date + 1)::timestamp AT TIME ZONE 'UTC'`]
        .concat(filters.map(([k, v]) => `${RAW[k]} = ${q(v)}`));
      const sql = `SELECT ${sel.concat(['count(*)', 'coalesce(sum(prompt_tokens), 0)', 'coalesce(sum(completion_tokens), 0)',
        'coalesce(sum(prompt_tokens + completion_tokens), 0)', 'coalesce(sum(cost_usd), 0)::numeric(30,10)']).join(', ')}
        FROM usage_events WHERE ${where.join(' AND ')}
        ${groups.length ? `GROUP BY ${groups.map((_, i) => i + 1).join(', ')} ORDER BY ${groups.map((_, i) => i + 1).join(', ')}` : ''}`;
      return pg.sql(sql).split('\n').filter((l) => l !== '').map((l) => l.split('|'));
    };
    const csvField = (v, i, groups) => {
      const formula = i < groups && /^[=+\-@\t\r]/.test(v);
      const t = formula ? `'${v}` : v;
      return formula || /[,"\r\n]/.test(v) || /^ | $/.test(v) ? `"${t.replace(/"/g, '""')}"` : t;
    };
    const cases = [
      [[], []], [['user'], []], [['role'], []], [['model'], []], [['provider'], []], [['day'], []],
      [['month'], []], [['cost_center'], []], [['key'], []], [['model', 'day'], []],
      [['user', 'role', 'key'], []], [['cost_center', 'month', 'provider'], []],
      [['day'], [['user', 'alice@example.com']]], [['month', 'role'], [['cost_center', 'cc-1'], ['provider', 'other']]],
      [['model'], [['email', 'bob@example.com']]],
      // not rollup dimensions: these scan usage_events
      [['model'], [['status', '200']]], [['user'], [['served_model', 'claude-test']]],
    ];
    let groupsSeen = 0;
    for (const [from, to] of [['2025-06-01', '2025-08-31'], ['2025-06-15', '2025-07-03'], ['2025-07-31', '2025-07-31']]) {
      for (const [groups, filters] of cases) {
        const args = ['usage', '--from', from, '--to', to];
        if (groups.length) args.push('--group-by', groups.join(','));
        for (const [k, v] of filters) args.push('--filter', `${k}=${v}`);
        const exp = expected(from, to, groups, filters);
        const what = `${from}..${to} by [${groups}] where ${JSON.stringify(filters)}`;
        groupsSeen += exp.length;
        // CSV: byte for byte what SQL says
        const csv = await run([...args, '--format', 'csv']);
        assert.equal(csv.code, 0, csv.stderr);
        const want = [groups.concat(['requests', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'cost_usd']).join(',')]
          .concat(exp.map((r) => r.map((v, i) => csvField(v, i, groups.length)).join(',')));
        assert.deepEqual(csv.stdout.trimEnd().split('\n'), want, `csv ${what}`);
        // the same report forced through the event scan is identical
        const scan = await run([...args, '--format', 'csv'], { env: { MODELGATE_USAGE_NO_ROLLUP: '1' } });
        assert.equal(scan.stdout, csv.stdout, `rollup vs scan ${what}`);
        // JSON: rows and exact decimal totals
        const js = await run([...args, '--format', 'json']);
        assert.equal(js.code, 0, js.stderr);
        const doc = JSON.parse(js.stdout);
        assert.equal(doc.rows.length, groups.length ? exp.length : 1, `json rows ${what}`);
        doc.rows.forEach((row, i) => {
          groups.forEach((g, k) => assert.equal(row[g], exp[i][k] === '' ? null : exp[i][k], `json ${what} row ${i} ${g}`));
          const m = exp[i].slice(groups.length);
          assert.deepEqual([row.requests, row.prompt_tokens, row.completion_tokens, row.total_tokens], m.slice(0, 4).map(Number), `json ${what} row ${i}`);
        });
        const tot = pg.sql(`SELECT count(*) || '|' || coalesce(sum(prompt_tokens), 0) || '|' || coalesce(sum(cost_usd), 0)::numeric(30,10) FROM usage_events
          WHERE ts >= '${from}T00:00:00Z' AND ts < ('${to}'::date + 1)::timestamp AT TIME ZONE 'UTC'
          ${filters.map(([k, v]) => ` AND ${RAW[k]} = ${q(v)}`).join('')}`).split('|');
        assert.equal(doc.totals.requests, Number(tot[0]), `json totals ${what}`);
        assert.equal(doc.totals.prompt_tokens, Number(tot[1]), `json totals ${what}`);
        assert.equal(js.stdout.match(/"totals":\{.*"cost_usd":([0-9.]+)\}/)[1], tot[2], `json exact cost total ${what}`);
        // table: rows as SQL (NULL shown as -), TOTAL row
        const tb = await run(args);
        assert.equal(tb.code, 0, tb.stderr);
        const lines = tb.stdout.trimEnd().split('\n').map((l) => l.trim().split(/\s+/));
        const body = lines.slice(1, groups.length ? -1 : undefined);
        assert.deepEqual(body, exp.map((r) => r.map((v, k) => (k < groups.length && v === '' ? '-' : v))), `table ${what}`);
        if (groups.length) assert.deepEqual(lines[lines.length - 1], ['TOTAL', tot[0]].concat(lines[lines.length - 1].slice(2)), `table total ${what}`);
        if (groups.length) assert.equal(lines[lines.length - 1].pop(), tot[2], `table cost total ${what}`);
      }
    }
    assert.ok(groupsSeen > 500, `the cases cover many groups (${groupsSeen})`);

    // The rollup really is what answers: skew it and the rollup-only reports move ...
    pg.sql("UPDATE usage_rollup_daily SET requests = requests + 1 WHERE day >= '2025-06-01' AND day < '2025-09-01'");
    const skewed = await run(['usage', '--from', '2025-06-01', '--to', '2025-08-31', '--format', 'csv']);
    const scanned = await run(['usage', '--from', '2025-06-01', '--to', '2025-08-31', '--format', 'csv'], { env: { MODELGATE_USAGE_NO_ROLLUP: '1' } });
    assert.notEqual(skewed.stdout, scanned.stdout, 'the report read the rollup');
    // ... and usage_rollup_rebuild() puts it back exactly
    pg.sql("SELECT usage_rollup_rebuild('2025-06-01', '2025-09-01')");
    const fixed = await run(['usage', '--from', '2025-06-01', '--to', '2025-08-31', '--format', 'csv']);
    assert.equal(fixed.stdout, scanned.stdout);
  });

  it('reconcile: client ids vs ledger, missing and extra', async () => {
    await run(['write', '50', '--prefix', 'rec', '--month', '2025-05']);
    const ids = path.join(tmp, 'ids.txt');
    const list = Array.from({ length: 49 }, (_, i) => `rec-${i + 1}`).concat(['rec-never']);
    fs.writeFileSync(ids, list.join('\n') + '\n');
    const r = await run(['usage', 'reconcile', '--ids', ids, '--from', '2025-05-01', '--to', '2025-05-31']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /^missing rec-never$/m);
    assert.match(r.stdout, /^extra rec-0$/m);
    assert.match(r.stdout, /missing 1, extra 1/);
  });

  it('retention: export a month to CSV, drop only with --confirm', async () => {
    await run(['write', '120', '--prefix', 'old', '--month', '2024-01']);
    const out = path.join(tmp, 'jan.csv');
    const e = await run(['usage', 'export', '--month', '2024-01', '-o', out]);
    assert.equal(e.code, 0, e.stderr);
    const rows = fs.readFileSync(out, 'utf8').trim().split('\n');
    assert.equal(rows.length, 121);
    assert.match(rows[0], /^request_id,ts,/);
    const noconfirm = await run(['usage', 'drop', '--month', '2024-01']);
    assert.equal(noconfirm.code, 1);
    assert.equal(count('old'), 120);
    const d = await run(['usage', 'drop', '--month', '2024-01', '--confirm']);
    assert.equal(d.code, 0, d.stderr);
    assert.equal(count('old'), 0);
    assert.equal(pg.sql("SELECT to_regclass('usage_events_2024_01') IS NULL"), 't');
    const cur = new Date().toISOString().slice(0, 7);
    assert.equal((await run(['usage', 'drop', '--month', cur, '--confirm'])).code, 1, 'never the current month');
  });

  it('after replays, kills, dead letters and a dropped month the rollup still sums to exactly the events', () => {
    const KEY = "(ts AT TIME ZONE 'UTC')::date, subject, email, roles, key_id, cost_center, model, provider";
    const diff = pg.sql(`
      WITH ev AS (SELECT ${KEY}, count(*) AS n, sum(prompt_tokens) AS pt, sum(completion_tokens) AS ct, sum(cost_usd) AS c
                  FROM usage_events GROUP BY 1, 2, 3, 4, 5, 6, 7, 8),
           ro AS (SELECT day, subject, email, roles, key_id, cost_center, model, provider,
                         requests AS n, prompt_tokens AS pt, completion_tokens AS ct, cost_usd AS c FROM usage_rollup_daily)
      SELECT (SELECT count(*) FROM (TABLE ev EXCEPT TABLE ro) a) || ' ' || (SELECT count(*) FROM (TABLE ro EXCEPT TABLE ev) b)
             || ' ' || (SELECT count(*) FROM ev)`).split(' ').map(Number);
    assert.equal(diff[0], 0, 'every event group is in the rollup with the same sums');
    assert.equal(diff[1], 0, 'the rollup has nothing the events do not');
    assert.ok(diff[2] > 100, `many groups compared (${diff[2]})`);
    assert.equal(pg.sql("SELECT count(*) FROM usage_rollup_daily WHERE day >= '2024-01-01' AND day < '2024-02-01'"), '0',
      'the dropped month left no rollup rows');
  });
});
