// modelgate — the admin web console (/admin/) end to end in headless
// Chromium (playwright-core driving Debian's /usr/bin/chromium): SSO login
// through the test IdP (oidc-provider), editing a role's model allowlist in
// the UI and seeing the role's API key go from allowed to denied, a
// concurrent edit detected (412) and explained, the filter "try it" box,
// creating / revoking an API key, the usage CSV download compared byte for
// byte with `modelgate usage --format csv`, the audit view, and cross-origin
// mutating requests refused. Screenshots of each page go to
// build/artifacts/console/.
//
// Skipped (not failed) when Chromium or PostgreSQL is missing.
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const http = require('node:http');
const path = require('node:path');
const { spawnSync, execFileSync } = require('node:child_process');
const h = require('./lib/harness');
const pgl = require('./lib/pg');

const IDP_DIR = path.join(__dirname, '..', 'idp');
const CHROMIUM = process.env.MG_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(h.ROOT, 'build', 'artifacts', 'console');
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const skip = !fs.existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM} (apt-get install chromium)`
  : !pgl.available() ? 'PostgreSQL binaries not installed' : false;

const POLICY = {
  roles: {
    engineer: { models: ['gpt-test', 'embed-test'], filters: ['pii'], limits: { requests_per_minute: 1000 }, permissions: [] },
    analyst: { models: ['gpt-test'], filters: [], permissions: [] },
    admin: { models: ['*'], permissions: ['policy:write', 'keys:write', 'usage:read', 'audit:read'] },
  },
  role_mappings: [{ claim: 'groups', equals: 'admins', role: 'admin' }],
  filters: { pii: { detectors: ['email', 'credit_card'], action: 'redact', direction: 'input' } },
};

let pg, mock, idp, gw, origin, dir, browser, page, context, attacker;
const keys = {};
const cspViolations = [];

function cfgFile() {
  const f = path.join(dir, 'cli.yaml');
  fs.writeFileSync(f, h.toYaml({ listen: [{ address: '127.0.0.1:1' }], database: { url: pg.url } }));
  return f;
}
const cli = (args) => spawnSync(h.gatewayBin(), [...args, '-c', cfgFile()], { encoding: 'utf8', cwd: h.ROOT });
const chatAs = (key, model = 'gpt-test') => h.request(gw, { path: '/v1/chat/completions', auth: key, body: h.chatBody('hello', { model }) });
const today = () => new Date().toISOString().slice(0, 10);
const shot = (name) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });

async function goto(hash, heading) {
  await page.goto(`${origin}/admin/#/${hash}`);
  await page.getByRole('heading', { level: 1, name: heading }).waitFor();
}

describe('admin console in a real browser', { skip }, () => {
  before(async () => {
    execFileSync(path.join(IDP_DIR, 'ensure.sh'), { stdio: 'inherit' });
    if (!fs.existsSync(path.join(IDP_DIR, 'node_modules', 'playwright-core'))) {
      execFileSync('npm', ['ci', '--prefix', IDP_DIR, '--no-audit', '--no-fund', '--loglevel=error'], { stdio: 'inherit' });
    }
    const { startProvider } = require('../idp/provider');
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    dir = h.makeTmpDir('mg-console-');
    pg = await pgl.startPg();
    assert.equal(cli(['migrate']).status, 0);
    for (const [role, user] of [['engineer', 'eng@example.com'], ['analyst', 'ana@example.com']]) {
      const k = cli(['keys', 'create', '--user', user, '--role', role, '--name', `${role}-ci`]);
      assert.equal(k.status, 0, k.stderr);
      keys[role] = k.stdout.trim();
    }
    const pf = path.join(dir, 'policy.json');
    fs.writeFileSync(pf, JSON.stringify(POLICY));
    const imp = cli(['policy', 'import', pf]);
    assert.equal(imp.status, 0, imp.stderr);

    const [port] = await h.freePorts(1);
    origin = `https://127.0.0.1:${port}`;
    idp = await startProvider({ redirectUri: `${origin}/auth/callback`, postLogoutRedirectUri: `${origin}/` });
    mock = await h.startMock();
    gw = await h.startGateway({
      mock,
      env: { MODELGATE_CONSOLE_DIR: path.join(h.ROOT, 'admin') },
      configOverrides: (cfg) => {
        cfg.listen[0].address = `127.0.0.1:${port}`;
        cfg.public_url = origin;
        cfg.database = { url: pg.url };
        cfg.usage = { journal_dir: path.join(dir, 'journal') };
        cfg.models[0].price = { input_per_mtok: 1.5, output_per_mtok: 6 };
        cfg.oidc = {
          issuer: idp.issuer, client_id: 'modelgate', client_secret: 'test-secret',
          scopes: ['openid', 'email', 'profile', 'groups'], audiences: ['modelgate'],
          claims: { groups: 'groups', email: 'email', cost_center: 'department' },
        };
        cfg.session = { secret: 's'.repeat(40), lifetime: '1h' };
        return cfg;
      },
    });
    gw.httpsPort = port;   // h.request() goes to the listener public_url names
    // Some usage in the ledger: two users, two models.
    assert.ok(await h.waitFor(async () => (await chatAs(keys.engineer)).status === 200, 10000), 'policy loaded');
    for (let i = 0; i < 4; i++) assert.equal((await chatAs(keys.engineer)).status, 200);
    for (let i = 0; i < 2; i++) assert.equal((await chatAs(keys.analyst)).status, 200);
    const emb = await h.request(gw, { path: '/v1/embeddings', auth: keys.engineer, body: { model: 'embed-test', input: 'x' } });
    assert.equal(emb.status, 200, emb.body);
    assert.ok(await h.waitFor(() => Number(pg.sql('SELECT count(*) FROM usage_events')) >= 8, 15000), 'ledger rows shipped');

    const { chromium } = require(path.join(IDP_DIR, 'node_modules', 'playwright-core'));
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    // TLS (the test CA) is covered by the other suites; here the browser just trusts it.
    context = await browser.newContext({ ignoreHTTPSErrors: true, acceptDownloads: true, viewport: { width: 1366, height: 768 } });
    page = await context.newPage();
    page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });
    page.on('pageerror', (e) => cspViolations.push(`page error: ${e.message}`));
  });

  after(async () => {
    if (browser) await browser.close();
    if (attacker) attacker.close();
    if (gw) gw.assertNoSanitizerReports();
    await h.cleanup();
    if (idp) await idp.close();
    if (pg) pg.destroy();
  });

  it('is behind SSO: no session -> /auth/login?return_to=/admin/, then the IdP login form, then the console', async () => {
    const noSession = await h.request(gw, { path: '/admin/', headers: { Accept: 'text/html' } });
    assert.equal(noSession.status, 302);
    assert.equal(noSession.headers.location, '/auth/login?return_to=%2Fadmin%2F');
    const asset = await h.request(gw, { path: '/admin/app.js' });
    assert.equal(asset.status, 401, 'assets need a session too');
    const ctxApi = await h.request(gw, { path: '/admin/v1/console' });
    assert.equal(ctxApi.status, 401);

    await page.goto(`${origin}/admin/`);
    await page.waitForURL((u) => u.href.startsWith(`${idp.issuer}/interaction/`));
    await page.locator('input[name=login]').fill('alice');
    await page.locator('input[name=password]').fill('x');
    await page.locator('button[type=submit]').first().click();
    await page.waitForURL((u) => u.href.startsWith(`${origin}/admin/`), { timeout: 15000 });
    await page.getByRole('heading', { level: 1, name: 'Roles' }).waitFor();
    assert.match(await page.locator('#who').textContent(), /alice@example\.com/);

    const cookies = await context.cookies(origin);
    const sid = cookies.find((c) => c.name === '__Host-mg_session');
    assert.ok(sid, 'signed in');
    const r = await h.request(gw, { path: '/admin/', headers: { Cookie: `__Host-mg_session=${sid.value}` } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-security-policy'], CSP);
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    assert.equal(r.headers['cache-control'], 'no-store');   // set for every response
    assert.match(r.headers['content-type'], /^text\/html/);
    const js = await h.request(gw, { path: '/admin/app.js', headers: { Cookie: `__Host-mg_session=${sid.value}` } });
    assert.match(js.headers['content-type'], /^text\/javascript/);
    assert.equal(js.body, fs.readFileSync(path.join(h.ROOT, 'admin', 'app.js'), 'utf8'));
    for (const bad of ['/admin/../etc/passwd', '/admin/.hidden', '/admin/nope.js', '/admin/v1/nope']) {
      const x = await h.request(gw, { path: bad, headers: { Cookie: `__Host-mg_session=${sid.value}` } });
      assert.ok([400, 404].includes(x.status), `${bad}: ${x.status}`);
    }
    // Nothing in the page is loaded from anywhere else, and the CSP holds.
    const html = fs.readFileSync(path.join(h.ROOT, 'admin', 'index.html'), 'utf8');
    assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//);
    await shot('roles');
  });

  it('edits a role\'s model allowlist: diff first, then the role\'s API key is denied that model', async () => {
    assert.equal((await chatAs(keys.engineer, 'embed-test')).status, 200);
    await goto('roles', 'Roles');
    await page.getByRole('button', { name: 'Edit role engineer' }).click();
    const models = page.getByRole('group', { name: 'Models' });
    const box = models.getByLabel('embed-test', { exact: true });
    assert.equal(await box.isChecked(), true);
    await box.uncheck();
    await page.getByRole('button', { name: 'Review changes' }).click();
    const diff = page.getByRole('list', { name: 'Changes' });
    await diff.waitFor();
    assert.deepEqual(await diff.locator('li code').allTextContents(), ['- roles.engineer.models: "embed-test"']);
    await shot('roles-review');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.getByText('Role engineer saved.').waitFor();
    await h.waitFor(async () => (await chatAs(keys.engineer, 'embed-test')).status === 403, 5000);
    const denied = await chatAs(keys.engineer, 'embed-test');
    assert.equal(denied.json.error.code, 'model_not_allowed');
    assert.equal((await chatAs(keys.engineer, 'gpt-test')).status, 200, 'the other model is still allowed');
    const audit = pg.sql("SELECT actor || ' ' || action FROM audit_log ORDER BY id DESC LIMIT 1");
    assert.equal(audit, 'session:alice@example.com role.put');
  });

  it('a concurrent edit is detected (412) and explained, never overwritten', async () => {
    await goto('roles', 'Roles');
    await page.getByRole('button', { name: 'Edit role analyst' }).click();
    await page.getByRole('group', { name: 'Models' }).getByLabel('embed-test', { exact: true }).check();
    await page.getByRole('button', { name: 'Review changes' }).click();
    // Meanwhile someone else changes the policy.
    const other = await h.request(gw, { method: 'PUT', path: '/admin/v1/roles/analyst', auth: h.MASTER_KEY,
      body: { models: ['gpt-test'], filters: ['pii'], permissions: [] } });
    assert.equal(other.status, 200, other.body);
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.getByText('someone else changed the policy').waitFor();
    await shot('roles-conflict');
    const now = await h.request(gw, { path: '/admin/v1/roles/analyst', auth: h.MASTER_KEY });
    assert.deepEqual(now.json.filters, ['pii'], 'their change is still there');
    assert.deepEqual(now.json.models, ['gpt-test']);
    // Reload: the draft is shown against the current version, then saves.
    await page.getByRole('button', { name: 'Reload the current version' }).click();
    await page.getByRole('button', { name: 'Review changes' }).click();
    const lines = await page.getByRole('list', { name: 'Changes' }).locator('li code').allTextContents();
    assert.ok(lines.includes('+ roles.analyst.models: "embed-test"'), lines.join('\n'));
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.getByText('Role analyst saved.').waitFor();
  });

  it('filters: the "try it" box runs the server\'s engine; role mappings page', async () => {
    await goto('filters', 'Filters');
    await page.getByRole('button', { name: 'Edit filter pii' }).click();
    await page.getByLabel('Sample text').fill('mail jane@example.com please');
    await page.getByRole('button', { name: 'Test' }).click();
    await page.locator('pre.sample').waitFor();
    assert.equal(await page.locator('pre.sample').textContent(), 'mail [EMAIL] please');
    await shot('filters');
    await goto('mappings', 'Role mappings');
    assert.equal(await page.getByLabel('Mapping 1: value').inputValue(), 'admins');
    await shot('mappings');
  });

  it('API keys: created and shown once with a copy button, listed, revoked', async () => {
    await goto('keys', 'API keys');
    await page.getByLabel('Owner (email)').fill('carol@example.com');
    await page.getByLabel('Role', { exact: true }).selectOption('analyst');
    await page.getByLabel('Name').fill('console-test');
    await page.getByRole('button', { name: 'Create key' }).click();
    const keyIn = page.getByLabel('New key');
    await keyIn.waitFor();
    const key = await keyIn.inputValue();
    assert.ok(key.length > 20);
    await page.getByRole('button', { name: 'Copy key' }).waitFor();
    await shot('keys');
    assert.equal((await chatAs(key)).status, 200);
    const id = (await h.request(gw, { path: '/admin/v1/keys', auth: h.MASTER_KEY })).json.data.find((k) => k.name === 'console-test').id;
    await page.getByRole('button', { name: `Revoke key ${id} (console-test)` }).click();
    await page.getByRole('button', { name: 'Revoke now' }).click();
    await page.getByText(`Key ${id} revoked.`).waitFor();
    await h.waitFor(async () => (await chatAs(key)).status === 401, 10000);
    // Reloading the page never shows the key again.
    await goto('keys', 'API keys');
    assert.equal(await page.content().then((c) => c.includes(key)), false);
  });

  it('usage: charts, and the CSV download is byte-identical to the CLI', async () => {
    await goto('usage', 'Usage');
    await page.getByRole('heading', { name: /^Usage \d{4}-/ }).waitFor();
    assert.ok(await page.locator('svg.chart rect.bar').count() >= 3, 'bars drawn');
    await shot('usage');
    const link = page.locator('#csv-link');
    const href = await link.getAttribute('href');
    const u = new URL(href, origin);
    assert.equal(u.pathname, '/admin/v1/usage');
    assert.equal(u.searchParams.get('format'), 'csv');
    assert.equal(u.searchParams.get('group_by'), 'user,model');
    const [dl] = await Promise.all([page.waitForEvent('download'), link.click()]);
    const file = path.join(dir, 'dl.csv');
    await dl.saveAs(file);
    const got = fs.readFileSync(file);
    const c = cli(['usage', '--from', u.searchParams.get('from'), '--to', u.searchParams.get('to'),
      '--group-by', 'user,model', '--format', 'csv']);
    assert.equal(c.status, 0, c.stderr);
    assert.ok(got.equals(Buffer.from(c.stdout, 'utf8')), `download:\n${got}\ncli:\n${c.stdout}`);
    assert.match(got.toString(), /^user,model,requests,prompt_tokens,completion_tokens,total_tokens,cost_usd\n/);
    assert.match(got.toString(), /eng@example\.com,gpt-test,/);
    fs.copyFileSync(file, path.join(ARTIFACTS, 'usage.csv'));
  });

  it('audit log view lists the console\'s changes', async () => {
    await goto('audit', 'Audit log');
    await page.getByRole('cell', { name: 'role.put' }).first().waitFor();
    assert.ok(await page.getByRole('cell', { name: 'session:alice@example.com' }).count() >= 2);
    await shot('audit');
  });

  it('cross-origin and header-less mutating requests are refused', async () => {
    const sid = (await context.cookies(origin)).find((c) => c.name === '__Host-mg_session').value;
    const put = (headers) => h.request(gw, { method: 'PUT', path: '/admin/v1/roles/evil',
      headers: { Cookie: `__Host-mg_session=${sid}`, ...headers }, body: { models: ['*'], permissions: [] } });
    for (const hd of [{ Origin: 'https://evil.example' }, {}, { Origin: 'null' }]) {
      const r = await put(hd);
      assert.equal(r.status, 403, `${JSON.stringify(hd)}: ${r.body}`);
      assert.equal(r.json.error.code, 'csrf_rejected');
    }
    // A real attacker page on another origin, in the signed-in browser.
    attacker = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(`<!doctype html><form id=f method=post action="${origin}/admin/v1/keys" enctype="text/plain">
        <input name='{"user":"x@evil.example","role":"admin","pad":"' value='"}'></form>
        <script>
          fetch(${JSON.stringify(origin)} + '/admin/v1/roles/evil', { method: 'PUT', credentials: 'include', mode: 'no-cors',
            headers: { 'Content-Type': 'text/plain' }, body: '{"models":["*"],"permissions":["policy:write"]}' })
            .finally(() => document.getElementById('f').submit());
        </script>`);
    });
    await new Promise((r) => attacker.listen(0, '127.0.0.1', r));
    const evil = await context.newPage();
    await evil.goto(`http://127.0.0.1:${attacker.address().port}/`);
    await evil.waitForURL((u) => u.href.startsWith(origin), { timeout: 10000 }).catch(() => {});
    await evil.close();
    const roles = (await h.request(gw, { path: '/admin/v1/policy', auth: h.MASTER_KEY })).json.roles;
    assert.equal(roles.evil, undefined, 'the cross-origin PUT changed nothing');
    const ks = (await h.request(gw, { path: '/admin/v1/keys', auth: h.MASTER_KEY })).json.data;
    assert.equal(ks.filter((k) => k.user === 'x@evil.example').length, 0, 'the cross-origin form made no key');
    // The console's own requests (same origin, CSRF header) do work: shown above.
    assert.deepEqual(cspViolations, [], 'no CSP violations or script errors in the console');
  });
});
