// modelgate — policy storage against a real throwaway PostgreSQL: import /
// export round trip, dry runs, validation errors with JSON paths, ETag /
// If-Match (stale -> 412), one version + one audit entry per change (actor,
// before/after), part edits (roles, filters, role mappings), permissions,
// the filter "try it" endpoint, audit listing, tamper detection by
// `audit verify`, and propagation to two running store instances within a
// second (notify, lost notify, database outage). Drives tests/policy/
// store_driver (the policy module linked without the gateway).
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync, execFileSync } = require('node:child_process');
const pgl = require('./lib/pg');

const ROOT = path.resolve(__dirname, '../..');
const MG_BIN = process.env.MG_BIN || path.join(ROOT, 'build/modelgate');
const SAN = /asan/.test(MG_BIN);
const DRIVER = path.join(path.dirname(MG_BIN), 'policy', 'store_driver');

const SPEC_DOC = {
  roles: {
    engineer: {
      models: ['gpt-4o-mini', 'llama3*'],
      filters: ['pii', 'secrets'],
      limits: { requests_per_minute: 60, tokens_per_minute: 200000, tokens_per_day: 2000000,
        usd_per_day: 20, usd_per_month: 300, max_tokens: 4096 },
      team_limits: { usd_per_month: 5000 },
      permissions: [],
    },
    admin: { models: ['*'], permissions: ['policy:write', 'keys:write', 'usage:read', 'audit:read'] },
    finance: { models: [], permissions: ['usage:read'] },
  },
  role_mappings: [
    { claim: 'groups', equals: 'ai-users', role: 'engineer' },
    { claim: 'groups', equals: 'admins', role: 'admin' },
  ],
  filters: {
    pii: { detectors: ['email', 'phone', 'credit_card', 'ssn', 'iban'], action: 'redact', direction: 'input' },
    secrets: { detectors: ['api_key', 'private_key'], action: 'block', direction: 'both' },
    codenames: { patterns: ['(?i)\\bproject\\s+bluebird\\b'], action: 'block', direction: 'input' },
  },
};

// What the canonical export of a document looks like: every role lists its
// models, filters and permissions, even when empty.
function withDefaults(doc) {
  const d = structuredClone(doc);
  for (const r of Object.values(d.roles)) {
    r.models = r.models || [];
    r.filters = r.filters || [];
    r.permissions = r.permissions || [];
  }
  return d;
}

let pg;
let tmp;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function drv(args, env = {}) {
  const r = spawnSync(DRIVER, args, { cwd: ROOT, encoding: 'utf8', env: { ...process.env, POLICY_DB: pg.url, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
function writeDoc(name, doc) {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, typeof doc === 'string' ? doc : JSON.stringify(doc, null, 1));
  return f;
}
// One admin API call; perms default to policy:write + audit:read.
function admin(method, p, { body, ifMatch, actor = 'alice@example.com', perms = ['policy:write', 'audit:read'], query } = {}) {
  const args = ['admin', method, p, '--actor', actor];
  if (body !== undefined) args.push('--body', typeof body === 'string' ? body : JSON.stringify(body));
  if (ifMatch) args.push('--if-match', ifMatch);
  if (query) args.push('--query', query);
  for (const x of perms) args.push('--perm', x);
  const r = drv(args);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  out.json = out.body ? JSON.parse(out.body) : null;
  return out;
}
const versions = () => Number(pg.sql('SELECT count(*) FROM policy_versions'));
const audits = () => Number(pg.sql('SELECT count(*) FROM audit_log'));
const lastAudit = () => JSON.parse(pg.sql(
  "SELECT json_build_object('actor', actor, 'action', action, 'target', target, 'before', before, 'after', after, 'v', policy_version) FROM audit_log ORDER BY id DESC LIMIT 1"));

// A store instance: its lines as they arrive.
function watcher() {
  const child = spawn(DRIVER, ['watch', '--ms', '60000'], { cwd: ROOT, env: { ...process.env, POLICY_DB: pg.url } });
  const w = { child, states: [], stderr: '' };
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      w.states.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  });
  child.stderr.on('data', (d) => { w.stderr += d; });
  w.exited = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  w.until = async (pred, ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const s = w.states.find(pred);
      if (s) return s;
      await sleep(5);
    }
    return null;
  };
  w.stop = async () => { child.stdin.end(); return w.exited; };
  return w;
}

describe('policy store (real PostgreSQL)', { skip: !pgl.available() && 'PostgreSQL binaries not installed' }, () => {
  before(async () => {
    execFileSync(path.join(ROOT, 'tests/policy/build.sh'), [DRIVER], {
      env: { ...process.env, MG_TEST_CFLAGS: SAN ? '-fsanitize=address,undefined -fno-omit-frame-pointer' : '' },
      stdio: 'inherit',
    });
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mgpolicy-'));
    pg = await pgl.startPg();
    const m = drv(['migrate']);
    assert.equal(m.code, 0, m.stderr);
  });
  after(() => {
    if (pg) pg.destroy();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('both tables are append-only', () => {
    pg.sql("INSERT INTO policy_versions (doc, etag, created_by) VALUES ('{}', 'x', 'test')");
    assert.throws(() => pg.sql("UPDATE policy_versions SET created_by = 'mallory'"), /append-only/);
    assert.throws(() => pg.sql('DELETE FROM policy_versions'), /append-only/);
    assert.throws(() => pg.sql('TRUNCATE audit_log'), /append-only/);
    // the test row is removed as the superuser would, to start clean
    pg.sql('ALTER TABLE policy_versions DISABLE TRIGGER USER; DELETE FROM policy_versions; ALTER TABLE policy_versions ENABLE TRIGGER USER');
  });

  it('nothing stored: export gives the empty policy', () => {
    const r = drv(['policy', 'export']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { roles: {}, role_mappings: [], filters: {} });
  });

  it('import with errors: each error names its JSON path, exit 1, nothing stored', () => {
    const bad = structuredClone(SPEC_DOC);
    bad.roles.engineer.limits.usd_per_day = 'lots';
    bad.role_mappings.push({ claim: 'groups', equals: 'x', role: 'nobody' });
    const f = writeDoc('bad.json', bad);
    const r = drv(['policy', 'import', f]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /roles\.engineer\.limits\.usd_per_day: must be a number/);
    assert.match(r.stderr, /role_mappings\[2\]\.role/);
    const s = drv(['policy', 'import', writeDoc('syntax.json', '{"roles": {')]);
    assert.equal(s.code, 1);
    assert.match(s.stderr, /invalid JSON/);
    assert.equal(versions(), 0);
    assert.equal(audits(), 0);
  });

  it('import --dry-run prints the diff and changes nothing', () => {
    const r = drv(['policy', 'import', writeDoc('spec.json', SPEC_DOC), '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\+ roles\.engineer\.models: /m);
    assert.match(r.stdout, /^\+ filters\.codenames/m);
    assert.match(r.stdout, /dry run: nothing changed/);
    assert.equal(versions(), 0);
    assert.equal(audits(), 0);
  });

  it('import, export, import the export: one version, one audit row, round trip exact', () => {
    const user = os.userInfo().username;
    const r = drv(['policy', 'import', writeDoc('spec.json', SPEC_DOC)]);
    assert.equal(r.code, 0, r.stderr);
    const m = r.stdout.match(/imported as version (\d+) \(etag "[0-9a-f]{32}"\)/);
    assert.ok(m, r.stdout);
    assert.equal(versions(), 1);
    assert.equal(audits(), 1);
    const a = lastAudit();
    assert.equal(a.actor, `cli:${user}`);
    assert.equal(a.action, 'policy.import');
    assert.equal(a.target, 'policy');
    assert.equal(a.before, null);
    assert.deepEqual(a.after.roles.engineer.models, SPEC_DOC.roles.engineer.models);
    assert.equal(a.v, Number(m[1]));

    const out = path.join(tmp, 'export.json');
    const e = drv(['policy', 'export', '-o', out]);
    assert.equal(e.code, 0, e.stderr);
    const exported = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.deepEqual(exported, withDefaults(SPEC_DOC), 'the export means the same as what was imported');
    const again = drv(['policy', 'import', out]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /no changes/);
    assert.equal(versions(), 1, 'an identical import stores nothing');
    assert.equal(audits(), 1);
    const stdoutExport = drv(['policy', 'export']);
    assert.equal(stdoutExport.stdout, fs.readFileSync(out, 'utf8'), 'stdout and -o give the same bytes');
  });

  it('GET/PUT /admin/v1/policy: ETag, stale If-Match -> 412, fresh -> new version with audit', () => {
    const g = admin('GET', '/admin/v1/policy', { perms: ['policy:read'] });
    assert.equal(g.status, 200);
    assert.match(g.etag, /^"[0-9a-f]{32}"$/);
    assert.deepEqual(g.json, withDefaults(SPEC_DOC));
    const v0 = Number(pg.sql('SELECT max(version) FROM policy_versions'));

    const doc = structuredClone(SPEC_DOC);
    doc.roles.finance.models = ['gpt-4o-mini'];
    const ok = admin('PUT', '/admin/v1/policy', { body: doc, ifMatch: g.etag, actor: 'alice@example.com' });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(ok.json.version, v0 + 1);
    assert.equal(ok.json.changed, true);
    assert.notEqual(ok.etag, g.etag);
    assert.equal(versions(), 2);
    assert.equal(audits(), 2);
    const a = lastAudit();
    assert.equal(a.actor, 'alice@example.com');
    assert.equal(a.action, 'policy.put');
    assert.deepEqual(a.before.roles.finance.models, []);
    assert.deepEqual(a.after.roles.finance.models, ['gpt-4o-mini']);

    // the old ETag is stale now
    doc.roles.finance.models = [];
    const stale = admin('PUT', '/admin/v1/policy', { body: doc, ifMatch: g.etag });
    assert.equal(stale.status, 412);
    assert.equal(stale.json.error.code, 'precondition_failed');
    assert.equal(versions(), 2);
    assert.equal(audits(), 2);
    // weak tags never match, a list with the current one does, * does
    assert.equal(admin('PUT', '/admin/v1/policy', { body: doc, ifMatch: `W/${ok.etag}` }).status, 412);
    const listed = admin('PUT', '/admin/v1/policy', { body: doc, ifMatch: `"0000", ${ok.etag}` });
    assert.equal(listed.status, 200, listed.body);
    assert.equal(listed.json.version, v0 + 2);
    const star = admin('PUT', '/admin/v1/policy', { body: SPEC_DOC, ifMatch: '*' });
    assert.equal(star.status, 200);
    assert.equal(star.json.changed, false, 'version 3 already is this document');
    doc.roles.finance.permissions = ['usage:read', 'audit:read'];
    const star2 = admin('PUT', '/admin/v1/policy', { body: doc, ifMatch: '*' });
    assert.equal(star2.status, 200);
    assert.equal(star2.json.changed, true);
    doc.roles.finance.permissions = ['usage:read'];
    assert.equal(admin('PUT', '/admin/v1/policy', { body: doc }).status, 200);
    assert.equal(versions(), 5);
    assert.equal(audits(), 5);
  });

  it('validation errors: 422 with the JSON path in message and param; bad JSON 400', () => {
    const doc = structuredClone(SPEC_DOC);
    doc.roles.engineer.limits.usd_per_day = 'x';
    const r = admin('PUT', '/admin/v1/policy', { body: doc });
    assert.equal(r.status, 422);
    assert.equal(r.json.error.type, 'invalid_request_error');
    assert.equal(r.json.error.param, 'roles.engineer.limits.usd_per_day');
    assert.match(r.json.error.message, /roles\.engineer\.limits\.usd_per_day: must be a number/);
    assert.equal(admin('PUT', '/admin/v1/policy', { body: '{"roles":' }).status, 400);
    const role = admin('PUT', '/admin/v1/roles/eng2', { body: { models: 'gpt' } });
    assert.equal(role.status, 422);
    assert.equal(role.json.error.param, 'roles.eng2.models');
    assert.equal(versions(), 5);
  });

  it('roles, filters, role mappings: each change is one version + one audit entry of the part', () => {
    let v = versions(), n = audits();
    const get = admin('GET', '/admin/v1/roles/engineer', { perms: ['policy:read'] });
    assert.equal(get.status, 200);
    assert.deepEqual(get.json.models, SPEC_DOC.roles.engineer.models);
    assert.equal(admin('GET', '/admin/v1/roles/nope').status, 404);

    const put = admin('PUT', '/admin/v1/roles/analyst', { body: { models: ['gpt-4o-mini'], permissions: ['usage:read'] }, actor: 'bob' });
    assert.equal(put.status, 200, put.body);
    assert.equal(versions(), ++v);
    assert.equal(audits(), ++n);
    let a = lastAudit();
    assert.equal(a.actor, 'bob');
    assert.equal(a.action, 'role.put');
    assert.equal(a.target, 'roles.analyst');
    assert.equal(a.before, null);
    assert.deepEqual(a.after.models, ['gpt-4o-mini']);

    // If-Match on a part is checked against the whole policy's ETag
    assert.equal(admin('PUT', '/admin/v1/roles/analyst', { body: { models: [] }, ifMatch: get.etag }).status, 412);
    const del = admin('DELETE', '/admin/v1/roles/analyst', { ifMatch: put.etag });
    assert.equal(del.status, 200, del.body);
    a = lastAudit();
    assert.equal(a.action, 'role.delete');
    assert.deepEqual(a.before.models, ['gpt-4o-mini']);
    assert.equal(a.after, null);
    assert.equal(versions(), ++v);
    assert.equal(admin('DELETE', '/admin/v1/roles/analyst').status, 404);
    // a role still named by a mapping cannot go: the whole document must validate
    const inUse = admin('DELETE', '/admin/v1/roles/admin');
    assert.equal(inUse.status, 422);
    assert.match(inUse.json.error.param, /^role_mappings\[1\]/);

    const f = admin('PUT', '/admin/v1/filters/codenames', { body: { patterns: ['(?i)\\bproject\\s+(bluebird|redwing)\\b'], action: 'block', direction: 'input' } });
    assert.equal(f.status, 200, f.body);
    a = lastAudit();
    assert.equal(a.target, 'filters.codenames');
    assert.deepEqual(a.before.patterns, SPEC_DOC.filters.codenames.patterns);
    assert.equal(admin('GET', '/admin/v1/filters/codenames').json.patterns.length, 1);

    const maps = [{ claim: 'groups', equals: 'ai-users', role: 'engineer' }];
    const m = admin('PUT', '/admin/v1/role-mappings', { body: maps });
    assert.equal(m.status, 200, m.body);
    assert.deepEqual(admin('GET', '/admin/v1/role-mappings').json, maps);
    a = lastAudit();
    assert.equal(a.target, 'role_mappings');
    assert.equal(a.before.length, 2);
    assert.equal(a.after.length, 1);
    v += 2; n += 3;
    assert.equal(versions(), v);
    assert.equal(audits(), n);
    // an unchanged part stores nothing
    const same = admin('PUT', '/admin/v1/role-mappings', { body: maps });
    assert.equal(same.json.changed, false);
    assert.equal(versions(), v);
    // every version row's etag is the ETag GET reports for it
    assert.equal(`${pg.sql('SELECT etag FROM policy_versions ORDER BY version DESC LIMIT 1')}`, admin('GET', '/admin/v1/policy').etag);
  });

  it('concurrent part edits: none lost, one version and one audit row each, chain intact', async () => {
    const v = versions(), n = audits();
    const put = (i) => new Promise((resolve) => {
      const ch = spawn(DRIVER, ['admin', 'PUT', `/admin/v1/roles/par${i}`, '--body', JSON.stringify({ models: [`m${i}`] }),
        '--perm', 'policy:write', '--actor', `admin${i}`], { env: { ...process.env, POLICY_DB: pg.url } });
      let out = '';
      ch.stdout.on('data', (d) => { out += d; });
      ch.on('close', () => resolve(JSON.parse(out)));
    });
    const rs = await Promise.all([1, 2, 3, 4, 5, 6].map(put));
    for (const r of rs) assert.equal(r.status, 200, r.body);
    const roles = Object.keys(admin('GET', '/admin/v1/policy').json.roles).filter((k) => k.startsWith('par'));
    assert.deepEqual(roles.sort(), ['par1', 'par2', 'par3', 'par4', 'par5', 'par6']);
    assert.equal(versions(), v + 6);
    assert.equal(audits(), n + 6);
    assert.equal(drv(['audit', 'verify']).code, 0);
    const doc = admin('GET', '/admin/v1/policy').json;
    for (let i = 1; i <= 6; i++) delete doc.roles[`par${i}`];
    assert.equal(admin('PUT', '/admin/v1/policy', { body: doc }).status, 200);
  });

  it('permissions: reads need policy:read or policy:write, writes policy:write, audit audit:read', () => {
    const n = versions();
    assert.equal(admin('GET', '/admin/v1/policy', { perms: [] }).status, 403);
    assert.equal(admin('GET', '/admin/v1/policy', { perms: ['usage:read'] }).status, 403);
    const ro = admin('PUT', '/admin/v1/roles/x', { body: { models: [] }, perms: ['policy:read'] });
    assert.equal(ro.status, 403);
    assert.equal(ro.json.error.type, 'permission_error');
    assert.match(ro.json.error.message, /policy:write/);
    assert.equal(admin('GET', '/admin/v1/audit', { perms: ['policy:write'] }).status, 403);
    assert.equal(admin('GET', '/admin/v1/audit', { perms: ['audit:read'] }).status, 200);
    assert.equal(versions(), n);
    const m = admin('POST', '/admin/v1/policy', { body: {} });
    assert.equal(m.status, 405);
    assert.equal(m.allow, 'GET, PUT');
    assert.equal(admin('GET', '/admin/v1/nothing').status, 404);
    assert.equal(admin('GET', '/admin/v1/roles/bad%20name').status, 400);
  });

  it('filter test: what the engine would redact or block', () => {
    const pii = admin('POST', '/admin/v1/filters/pii/test', { body: { text: 'write to jane@example.com today' }, perms: ['policy:read'] });
    assert.equal(pii.status, 200, pii.body);
    assert.equal(pii.json.blocked, false);
    assert.equal(pii.json.redactions, 1);
    assert.equal(pii.json.text, 'write to [EMAIL] today');
    const sec = admin('POST', '/admin/v1/filters/codenames/test', { body: { text: 'status of Project Redwing?' } });
    assert.equal(sec.json.blocked, true);
    assert.equal(sec.json.text, null);
    assert.match(sec.json.decision, /blocked:codenames/);
    // an unsaved definition can be tried too; its errors name paths
    const draft = admin('POST', '/admin/v1/filters/draft/test', { body: { text: 'call 555-0100', filter: { patterns: ['555-\\d{4}'], action: 'redact', direction: 'output' } } });
    assert.equal(draft.status, 200, draft.body);
    assert.equal(draft.json.direction, 'output');
    assert.equal(draft.json.text, 'call [REDACTED:draft]');
    const broken = admin('POST', '/admin/v1/filters/draft/test', { body: { text: 'x', filter: { action: 'explode' } } });
    assert.equal(broken.status, 422);
    assert.match(broken.json.error.message, /filters\.draft\.action/);
    assert.equal(admin('POST', '/admin/v1/filters/none/test', { body: { text: 'x' } }).status, 404);
  });

  it('GET /admin/v1/audit: who, what, when, before/after, with from/to', () => {
    const all = admin('GET', '/admin/v1/audit', { perms: ['audit:read'] });
    assert.equal(all.status, 200);
    assert.equal(all.json.entries.length, audits());
    const e = all.json.entries[0];
    assert.equal(e.action, 'policy.import');
    assert.equal(e.before, null);
    assert.ok(e.after.roles.engineer);
    assert.match(e.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    const today = new Date().toISOString().slice(0, 10);
    assert.equal(admin('GET', '/admin/v1/audit', { query: `from=${today}&to=${today}` }).json.entries.length, audits());
    assert.equal(admin('GET', '/admin/v1/audit', { query: 'to=2000-01-01' }).json.entries.length, 0);
    assert.equal(admin('GET', '/admin/v1/audit', { query: 'limit=2' }).json.entries.length, 2);
    assert.equal(admin('GET', '/admin/v1/audit', { query: 'from=yesterdayish' }).status, 400);
  });

  it('audit verify: intact chain passes; an altered or removed row is named', () => {
    const ok = drv(['audit', 'verify']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`intact: ${audits()} entries, head [0-9a-f]{64}`));

    const id = pg.sql('SELECT id FROM audit_log ORDER BY id OFFSET 2 LIMIT 1');
    const actor = pg.sql(`SELECT actor FROM audit_log WHERE id = ${id}`);
    const tamper = (sql) => pg.sql(`ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only; ${sql}; ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only`);
    tamper(`UPDATE audit_log SET actor = 'mallory' WHERE id = ${id}`);
    const bad = drv(['audit', 'verify']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, new RegExp(`audit row ${id}: content does not match its hash`));

    // before/after are covered too
    tamper(`UPDATE audit_log SET actor = '${actor}', after = jsonb_set(after, '{roles,admin,models}', '["*","x"]') WHERE id = ${id}`);
    assert.equal(drv(['audit', 'verify']).code, 1);
    tamper(`UPDATE audit_log SET after = (SELECT doc FROM policy_versions WHERE version = audit_log.policy_version) WHERE id = ${id}`);
    assert.equal(drv(['audit', 'verify']).code, 0, 'restored row verifies again');

    // removing a row breaks the next row's link
    const next = pg.sql(`SELECT id FROM audit_log WHERE id > ${id} ORDER BY id LIMIT 1`);
    const saved = pg.sql(`SELECT row_to_json(a)::text FROM audit_log a WHERE id = ${id}`);
    tamper(`DELETE FROM audit_log WHERE id = ${id}`);
    const gap = drv(['audit', 'verify']);
    assert.equal(gap.code, 1);
    assert.match(gap.stderr, new RegExp(`audit row ${next}: prev_hash does not match`));
    tamper(`INSERT INTO audit_log SELECT * FROM json_populate_record(NULL::audit_log, '${saved.replace(/'/g, "''")}')`);
    assert.equal(drv(['audit', 'verify']).code, 0);
  });

  it('two store instances see a new version within a second; a lost notify within ~1 s; an outage keeps the policy', async () => {
    const a = watcher(), b = watcher();
    const v0 = versions() > 0 ? Number(pg.sql('SELECT max(version) FROM policy_versions')) : 0;
    assert.ok(await a.until((s) => s.version === v0, 5000), a.stderr);
    assert.ok(await b.until((s) => s.version === v0, 5000), b.stderr);

    // 1. through the write path (NOTIFY)
    const doc = structuredClone(SPEC_DOC);
    doc.roles.newcomer = { models: ['gpt-4o-mini'] };
    const put = admin('PUT', '/admin/v1/policy', { body: doc });
    const committed = Date.now();
    assert.equal(put.status, 200, put.body);
    for (const w of [a, b]) {
      const s = await w.until((x) => x.version === put.json.version, 3000);
      assert.ok(s, `instance did not see version ${put.json.version}: ${w.stderr}`);
      assert.ok(s.roles.includes('newcomer'));
      assert.ok(s.t - committed < 1000, `seen after ${s.t - committed} ms`);
    }

    // 2. a version written without NOTIFY (a lost notification): the 1 s poll
    const canon = pg.sql('SELECT doc::text FROM policy_versions ORDER BY version DESC LIMIT 1');
    const d2 = JSON.parse(canon);
    d2.roles.polled = { models: [] };
    const inserted = Date.now();
    const v2 = Number(pg.sql(`INSERT INTO policy_versions (doc, etag, created_by) VALUES ('${JSON.stringify(d2)}', 'x', 'test') RETURNING version`));
    for (const w of [a, b]) {
      const s = await w.until((x) => x.version === v2, 3000);
      assert.ok(s, w.stderr);
      assert.ok(s.t - inserted < 1500, `poll took ${s.t - inserted} ms`);
    }

    // 3. database down: the last good policy stays; back up: changes flow again
    pg.stop('immediate');
    await sleep(1500);
    for (const w of [a, b]) {
      assert.equal(w.states[w.states.length - 1].version, v2);
      assert.equal(w.child.exitCode, null, 'still running');
    }
    pg.start();
    const put2 = admin('PUT', '/admin/v1/roles/after-outage', { body: { models: [] } });
    assert.equal(put2.status, 200, put2.body);
    for (const w of [a, b])
      assert.ok(await w.until((x) => x.version === put2.json.version, 5000), w.stderr);
    assert.equal(await a.stop(), 0, a.stderr);
    assert.equal(await b.stop(), 0, b.stderr);
  });

  it('database down: CLI exits 2, admin API answers 503', () => {
    const down = 'postgresql://postgres@127.0.0.1:1/mg';
    const r = drv(['policy', 'export'], { POLICY_DB: down });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /cannot connect/);
    assert.equal(drv(['audit', 'verify'], { POLICY_DB: down }).code, 2);
    const res = spawnSync(DRIVER, ['admin', 'GET', '/admin/v1/policy', '--perm', 'policy:read'],
      { encoding: 'utf8', env: { ...process.env, POLICY_DB: down } });
    const out = JSON.parse(res.stdout);
    assert.equal(out.status, 503);
    assert.equal(JSON.parse(out.body).error.code, 'database_unavailable');
  });
});
