// modelgate — integration-test harness: throwaway TLS certificates, the mock
// model upstream, the real gateway binary, and HTTP clients (verified HTTPS,
// SSE with arrival times, raw bytes over TCP/TLS).
//
// Every process started here is tracked; cleanup() stops them (test files call
// it from after()), and a process 'exit' hook SIGKILLs whatever is left so a
// crashed test run never leaves orphans behind.
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const tls = require('node:tls');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const MOCK_SCRIPT = process.env.MG_MOCK || path.join(ROOT, 'tests', 'mock', 'upstream.js');
const MASTER_KEY = 'mk-test-0123456789abcdef';
const UPSTREAM_KEY = 'sk-upstream-xyz';

function gatewayBin() {
  return process.env.MG_BIN || path.join(ROOT, 'build', 'modelgate');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* --------------------------------------------------------------- processes */

const live = new Set();      // child processes still running
const tmpDirs = [];

function emergencyKill() {
  for (const p of live) {
    try {
      // Gateways run in their own process group (detached) so workers die too.
      if (p.mgGroup) process.kill(-p.pid, 'SIGKILL');
      else p.kill('SIGKILL');
    } catch { /* already gone */ }
  }
  live.clear();
  if (!process.env.MG_KEEP_TMP) {
    for (const d of tmpDirs) {
      try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* ignore */ }
    }
  }
}
process.on('exit', emergencyKill);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => { emergencyKill(); process.exit(130); });
}

function track(proc, group) {
  proc.mgGroup = !!group;
  live.add(proc);
  proc.mgExited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      live.delete(proc);
      proc.mgExit = { code, signal };
      resolve(proc.mgExit);
    });
  });
  return proc;
}

function waitExit(proc, ms) {
  if (proc.mgExit) return Promise.resolve(proc.mgExit);
  // The timer is cleared once the process exits: a pending one would keep
  // the test file's process alive for the rest of its duration.
  let timer;
  const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve(null), ms); });
  return Promise.race([proc.mgExited, timeout]).finally(() => clearTimeout(timer));
}

function makeTmpDir(prefix = 'mg-it-') {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpDirs.push(d);
  return d;
}

/* ------------------------------------------------------------ certificates */

// A throwaway CA and a server certificate for 127.0.0.1 and localhost, made
// with the openssl CLI. Returns file paths plus the CA PEM for clients.
function makeCerts(dir) {
  dir = dir || makeTmpDir('mg-certs-');
  fs.mkdirSync(dir, { recursive: true });
  const f = (n) => path.join(dir, n);
  const ossl = (args) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ossl(['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2',
    '-subj', '/CN=modelgate integration test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  ossl(['req', '-new', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'),
    '-subj', '/CN=localhost']);
  fs.writeFileSync(f('server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\n' +
    'basicConstraints=critical,CA:FALSE\n' +
    'keyUsage=critical,digitalSignature,keyEncipherment\n' +
    'extendedKeyUsage=serverAuth\n');
  ossl(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'),
    '-CAcreateserial', '-out', f('server.crt'), '-days', '2', '-extfile', f('server.ext')]);
  fs.chmodSync(f('server.key'), 0o600);
  return {
    dir, ca: f('ca.crt'), cert: f('server.crt'), key: f('server.key'),
    caPem: fs.readFileSync(f('ca.crt')),
  };
}

let sharedCerts = null;
function certs() {
  if (!sharedCerts) sharedCerts = makeCerts();
  return sharedCerts;
}

/* ------------------------------------------------------------------- ports */

// Ports are reserved by binding all of them at once (so they differ), then
// released just before the gateway binds them; startGateway retries if some
// other process grabbed one in between.
async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      await new Promise((res, rej) => { s.once('error', rej); s.listen(0, '127.0.0.1', res); });
      servers.push(s);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

/* -------------------------------------------------------------------- YAML */

// Enough YAML to write our configs: block mappings and sequences, scalars as
// JSON-style double-quoted strings (valid YAML), numbers and booleans plain.
function toYaml(v, indent = 0) {
  const pad = ' '.repeat(indent);
  const scalar = (x) => {
    if (x === null) return 'null';
    if (typeof x === 'number' || typeof x === 'boolean') return String(x);
    return JSON.stringify(String(x));
  };
  const key = (k) => (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(k) ? k : JSON.stringify(k));
  const isObj = (x) => x && typeof x === 'object';
  const empty = (x) => (Array.isArray(x) ? x.length === 0 : Object.keys(x).length === 0);
  if (Array.isArray(v)) {
    return v.map((item) => {
      if (isObj(item) && !empty(item)) {
        const inner = toYaml(item, indent + 2);
        return `${pad}- ${inner.slice(indent + 2)}`;
      }
      return `${pad}- ${isObj(item) ? (Array.isArray(item) ? '[]' : '{}') : scalar(item)}\n`;
    }).join('');
  }
  let out = '';
  for (const [k, x] of Object.entries(v)) {
    if (x === undefined) continue;
    if (isObj(x) && !empty(x)) out += `${pad}${key(k)}:\n${toYaml(x, indent + 2)}`;
    else if (isObj(x)) out += `${pad}${key(k)}: ${Array.isArray(x) ? '[]' : '{}'}\n`;
    else out += `${pad}${key(k)}: ${scalar(x)}\n`;
  }
  return out;
}

// Objects merge recursively, arrays and scalars replace, null deletes a key.
function deepMerge(base, over) {
  if (over === undefined) return base;
  if (!over || typeof over !== 'object' || Array.isArray(over) ||
      !base || typeof base !== 'object' || Array.isArray(base)) return over;
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k];
    else out[k] = deepMerge(base[k], v);
  }
  return out;
}

// The default configuration (SPEC §3 shape): one TLS and one plain listener,
// the master key, one provider pointing at the mock, two models.
function defaultConfig(ctx) {
  return {
    listen: [
      { address: `127.0.0.1:${ctx.httpsPort}`, tls: { cert: ctx.certs.cert, key: ctx.certs.key } },
      { address: `127.0.0.1:${ctx.httpPort}` },
    ],
    auth: { master_key: MASTER_KEY },
    providers: {
      mock: { type: 'openai', base_url: `${ctx.mockUrl}/v1`, api_key: UPSTREAM_KEY },
    },
    models: [
      { name: 'gpt-test', deployments: [{ provider: 'mock', model: 'gpt-test' }] },
      { name: 'embed-test', deployments: [{ provider: 'mock', model: 'embed-test' }] },
    ],
    limits: {
      max_body: '1MiB', header_timeout: '2s', idle_timeout: '5s',
      upstream_first_byte_timeout: '2s', upstream_idle_timeout: '2s', drain_timeout: '10s',
    },
    log: { level: 'info', access_log: 'stdout' },
    workers: 2,
  };
}

function renderConfig(opts, ctx) {
  if (typeof opts.yaml === 'function') return opts.yaml(ctx);
  if (typeof opts.yaml === 'string') {
    // {{HTTPS_PORT}} {{HTTP_PORT}} {{MOCK_URL}} {{CERT}} {{KEY}} {{CA}} {{DIR}}
    const vars = {
      HTTPS_PORT: ctx.httpsPort, HTTP_PORT: ctx.httpPort, MOCK_URL: ctx.mockUrl,
      CERT: ctx.certs.cert, KEY: ctx.certs.key, CA: ctx.certs.ca, DIR: ctx.dir,
      MASTER_KEY, UPSTREAM_KEY,
    };
    return opts.yaml.replace(/\{\{([A-Z_]+)\}\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  }
  let cfg = defaultConfig(ctx);
  const o = opts.configOverrides;
  if (typeof o === 'function') cfg = o(cfg, ctx) || cfg;
  else if (o) cfg = deepMerge(cfg, o);
  return toYaml(cfg);
}

/* ---------------------------------------------------------- sanitizer scan */

const SANITIZER_RE = /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|ThreadSanitizer|WARNING: MemorySanitizer/;

function sanitizerReport(stderr) {
  if (!SANITIZER_RE.test(stderr)) return null;
  const i = stderr.search(SANITIZER_RE);
  return stderr.slice(Math.max(0, i - 200), i + 6000);
}

function tail(s, n = 4000) {
  return s.length > n ? '…' + s.slice(-n) : s;
}

/* -------------------------------------------------------------------- mock */

// Starts tests/mock/upstream.js on a free port. Returns
// { proc, port, url, requests(), clear(), stop() }.
async function startMock(opts = {}) {
  const args = [MOCK_SCRIPT, '--port', String(opts.port || 0), ...(opts.args || [])];
  const proc = track(spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(opts.env || {}) },
  }));
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { stderr += d; });
  proc.stdout.setEncoding('utf8');
  const port = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`mock upstream did not start in 10 s; stderr:\n${tail(stderr)}`)), 10000);
    const onData = (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      proc.stdout.off('data', onData);
      proc.stdout.resume();   // keep draining whatever else it prints
      try {
        const j = JSON.parse(buf.slice(0, nl));
        if (!j.listening) throw new Error('no "listening" field');
        resolve(j.listening);
      } catch (e) {
        reject(new Error(`mock upstream printed ${JSON.stringify(buf.slice(0, nl))}: ${e.message}`));
      }
    };
    proc.stdout.on('data', onData);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`mock upstream exited with ${code}; stderr:\n${tail(stderr)}`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const mock = {
    proc, port, url,
    get stderr() { return stderr; },
    async requests() {
      const r = await plainRequest(port, 'GET', '/__mock/requests');
      if (r.status !== 200) throw new Error(`GET /__mock/requests -> ${r.status}`);
      return JSON.parse(r.body);
    },
    async clear() {
      const r = await plainRequest(port, 'DELETE', '/__mock/requests');
      if (r.status >= 300) throw new Error(`DELETE /__mock/requests -> ${r.status}`);
    },
    async stop() {
      if (proc.mgExit) return;
      proc.kill('SIGTERM');
      if (!(await waitExit(proc, 5000))) proc.kill('SIGKILL');
    },
  };
  return mock;
}

function plainRequest(port, method, p, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: p, agent: false, timeout: 10000 }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: b }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${p} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

/* ----------------------------------------------------------------- gateway */

// Starts build/modelgate (or $MG_BIN) with a generated config and waits for
// GET /healthz on the plain listener to answer 200.
//   opts.yaml             string with {{PLACEHOLDERS}} or (ctx) => string
//   opts.configOverrides  object deep-merged into defaultConfig, or (cfg, ctx) => cfg
//   opts.mock             the mock (for its URL); opts.env extra environment
//   opts.expectStartFailure  resolve with {proc, stderr, code} instead of waiting for health
async function startGateway(opts = {}) {
  let lastErr;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startGatewayOnce(opts);
    } catch (e) {
      lastErr = e;
      if (!e.portClash) throw e;
    }
  }
  throw lastErr;
}

// The binary is copied once per test process: a `make` that rewrites
// build/modelgate while a test runs would otherwise kill it with SIGBUS.
let binCopy = null;
function stableBin() {
  const bin = gatewayBin();
  if (!fs.existsSync(bin)) throw new Error(`gateway binary ${bin} not found (run make, or set MG_BIN)`);
  if (!binCopy) {
    const d = makeTmpDir('mg-bin-');
    binCopy = path.join(d, 'modelgate');
    fs.copyFileSync(bin, binCopy);
    fs.chmodSync(binCopy, 0o755);
  }
  return binCopy;
}

async function startGatewayOnce(opts) {
  const bin = stableBin();
  const dir = makeTmpDir('mg-gw-');
  const [httpsPort, httpPort] = await freePorts(2);
  const ctx = {
    dir, httpsPort, httpPort, certs: opts.certs || certs(),
    mockUrl: opts.mock ? opts.mock.url : 'http://127.0.0.1:9',
  };
  const configPath = path.join(dir, 'modelgate.yaml');
  fs.writeFileSync(configPath, renderConfig(opts, ctx));

  const proc = track(spawn(bin, ['serve', '-c', configPath], {
    cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    env: { ...process.env, ...(opts.env || {}) },
  }), true);

  const gw = {
    proc, pid: proc.pid, dir, configPath, ctx, httpsPort, httpPort,
    url: `https://127.0.0.1:${httpsPort}`, httpUrl: `http://127.0.0.1:${httpPort}`,
    ca: ctx.certs.caPem,
    stderr: '', stdout: '', logs: [], accessLog: [], stdoutOther: [],
    stopped: false,
  };
  let outBuf = '', errBuf = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => {
    gw.stdout += d;
    outBuf += d;
    let nl;
    while ((nl = outBuf.indexOf('\n')) >= 0) {
      const line = outBuf.slice(0, nl);
      outBuf = outBuf.slice(nl + 1);
      if (!line.trim()) continue;
      try { gw.accessLog.push(JSON.parse(line)); } catch { gw.stdoutOther.push(line); }
    }
  });
  proc.stderr.on('data', (d) => {
    gw.stderr += d;
    errBuf += d;
    let nl;
    while ((nl = errBuf.indexOf('\n')) >= 0) {
      const line = errBuf.slice(0, nl);
      errBuf = errBuf.slice(nl + 1);
      try { gw.logs.push(JSON.parse(line)); } catch { /* ASan reports etc. stay in gw.stderr */ }
    }
  });

  gw.sanitizerReport = () => sanitizerReport(gw.stderr);
  gw.assertNoSanitizerReports = () => {
    const r = gw.sanitizerReport();
    if (r) throw new Error(`sanitizer report in gateway stderr:\n${r}`);
  };
  gw.writeConfig = (o) => {
    fs.writeFileSync(configPath, renderConfig(o, ctx));
  };
  // Rewrites the config and sends SIGHUP.
  gw.reload = (o) => {
    if (o) gw.writeConfig(o);
    process.kill(proc.pid, 'SIGHUP');
  };
  gw.exited = () => proc.mgExit || null;
  // Why the process is gone: exit status plus the sanitizer report or stderr tail.
  gw.deathReport = () => {
    const ex = proc.mgExit || {};
    return `gateway exited (code ${ex.code}, signal ${ex.signal}); ` +
      (gw.sanitizerReport() || `stderr:\n${tail(gw.stderr, 3000)}`);
  };
  // Sends SIGTERM now (e.g. during a stream); stop() then only waits.
  gw.terminate = () => {
    gw.termSent = true;
    process.kill(proc.pid, 'SIGTERM');
  };
  // SIGTERM, then expect exit code 0 within timeoutMs and no sanitizer report.
  gw.stop = async ({ timeoutMs = 20000, expectCode = 0 } = {}) => {
    if (gw.stopped) return proc.mgExit;
    gw.stopped = true;
    if (!proc.mgExit && !gw.termSent) {
      try { process.kill(proc.pid, 'SIGTERM'); } catch { /* gone */ }
    }
    const ex = await waitExit(proc, timeoutMs);
    if (!ex) {
      try { process.kill(-proc.pid, 'SIGKILL'); } catch { /* gone */ }
      await waitExit(proc, 5000);
      throw new Error(`gateway did not exit within ${timeoutMs} ms of SIGTERM; stderr:\n${tail(gw.stderr)}`);
    }
    await sleep(50);   // let the last stderr bytes arrive
    gw.assertNoSanitizerReports();
    if (expectCode !== null && (ex.code !== expectCode || ex.signal)) {
      throw new Error(`gateway exited with code ${ex.code} signal ${ex.signal} (expected ${expectCode}); stderr:\n${tail(gw.stderr)}`);
    }
    return ex;
  };
  gw.kill = () => {
    gw.stopped = true;
    try { process.kill(-proc.pid, 'SIGKILL'); } catch { /* gone */ }
    return waitExit(proc, 5000);
  };
  liveGateways.add(gw);

  if (opts.expectStartFailure) {
    const ex = await waitExit(proc, 10000);
    gw.stopped = true;
    return gw;
  }

  // Wait for health on the plain listener (TLS listener if there is none).
  const deadline = Date.now() + (opts.startTimeoutMs || 10000);
  let lastErr = '';
  for (;;) {
    if (proc.mgExit) {
      await sleep(50);
      const e = new Error(`gateway exited (code ${proc.mgExit.code}, signal ${proc.mgExit.signal}) before becoming healthy; stderr:\n${tail(gw.stderr)}\nconfig:\n${fs.readFileSync(configPath, 'utf8')}`);
      e.portClash = /address already in use|EADDRINUSE/i.test(gw.stderr);
      liveGateways.delete(gw);
      throw e;
    }
    try {
      const r = await request(gw, { path: '/healthz', tls: false, timeoutMs: 2000 });
      if (r.status === 200) break;
      lastErr = `status ${r.status}`;
    } catch (e) {
      lastErr = e.message;
    }
    if (Date.now() > deadline) {
      await gw.kill();
      liveGateways.delete(gw);
      throw new Error(`gateway not healthy within 10 s (${lastErr}); stderr:\n${tail(gw.stderr)}`);
    }
    await sleep(100);
  }
  return gw;
}

const liveGateways = new Set();

// For test files sharing one gateway: returns an afterEach hook that fails
// the test during which the gateway died (with the crash report), then starts
// a fresh gateway through `restart` so the remaining tests still mean something.
function crashGuard(getGw, restart) {
  return async () => {
    const gw = getGw();
    if (!gw || gw.stopped) return;
    await sleep(25);   // a crash right after the response still belongs to this test
    if (!gw.exited() && !gw.sanitizerReport()) return;
    // A sanitizer may still be writing its report (the process is alive but
    // dying, its listeners still open): wait for the end, then restart.
    if (!(await waitExit(gw.proc, 10000))) await gw.kill();
    await sleep(50);
    const report = gw.deathReport();
    gw.stopped = true;
    liveGateways.delete(gw);
    await restart();
    throw new Error(`the gateway died during this test: ${report}`);
  };
}

// Stops everything this file started; gateways get SIGTERM first so ASan leak
// reports still appear. Throws if a gateway that was never stopped explicitly
// exits badly.
async function cleanup() {
  const errs = [];
  for (const gw of liveGateways) {
    if (!gw.stopped) {
      try { await gw.stop(); } catch (e) { errs.push(e); }
    } else if (!gw.proc.mgExit) {
      await gw.kill();
    }
  }
  liveGateways.clear();
  for (const p of [...live]) {
    p.kill('SIGTERM');
    if (!(await waitExit(p, 3000))) p.kill('SIGKILL');
  }
  if (errs.length) throw errs[0];
}

/* ----------------------------------------------------------------- clients */

function reqOptions(gw, o) {
  const useTls = o.tls !== false;
  const port = o.port || (useTls ? gw.httpsPort : gw.httpPort);
  const headers = { ...(o.headers || {}) };
  let body = o.body;
  if (body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body)) {
    body = JSON.stringify(body);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['Content-Type'] = 'application/json';
  }
  if (o.auth !== undefined && o.auth !== null) headers.Authorization = `Bearer ${o.auth}`;
  const options = {
    host: '127.0.0.1', port, method: o.method || (body !== undefined ? 'POST' : 'GET'),
    path: o.path || '/', headers, agent: false,
  };
  if (useTls) Object.assign(options, { ca: o.ca || gw.ca, ...(o.tlsOptions || {}) });
  return { options, body, lib: useTls ? https : http };
}

// One request on a fresh connection. Resolves with
// { status, headers, body, json (parsed or undefined), socketClosed }.
function request(gw, o = {}) {
  const { options, body, lib } = reqOptions(gw, o);
  const timeoutMs = o.timeoutMs || 15000;
  return new Promise((resolve, reject) => {
    const req = lib.request(options, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => {
        const b = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(b); } catch { /* not JSON */ }
        clearTimeout(timer);
        resolve({ status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders, body: b, json });
      });
      res.on('error', reject);
    });
    const timer = setTimeout(() => req.destroy(new Error(`${options.method} ${options.path} timed out after ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
    req.end(body);
  });
}

// A streaming (SSE) request. Records every event with its arrival time (ms
// after the request was sent). o.onEvent(ev, ctl) may call ctl.abort() to
// disconnect mid-stream. Resolves with
// { status, headers, events: [{data, event, t}], tFirstByte, tEnd, aborted, error, raw }.
function stream(gw, o = {}) {
  const { options, body, lib } = reqOptions(gw, o);
  const timeoutMs = o.timeoutMs || 20000;
  return new Promise((resolve) => {
    const t0 = Date.now();
    const out = { status: 0, headers: {}, events: [], raw: '', aborted: false, error: null, tFirstByte: null, tEnd: null, complete: false };
    let pending = '';
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      out.tEnd = Date.now() - t0;
      if (err && !out.aborted) out.error = err.message || String(err);
      resolve(out);
    };
    const ctl = { abort() { out.aborted = true; req.destroy(); finish(); } };
    const req = lib.request(options, (res) => {
      out.status = res.statusCode;
      out.headers = res.headers;
      res.setEncoding('utf8');
      res.on('data', (d) => {
        const t = Date.now() - t0;
        if (out.tFirstByte === null) out.tFirstByte = t;
        out.raw += d;
        pending += d.replace(/\r\n/g, '\n');
        let idx;
        while ((idx = pending.indexOf('\n\n')) >= 0) {
          const block = pending.slice(0, idx);
          pending = pending.slice(idx + 2);
          const ev = { t, data: '', event: undefined };
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
            if (field === 'data') data.push(value);
            else if (field === 'event') ev.event = value;
          }
          if (!data.length && ev.event === undefined) continue;
          ev.data = data.join('\n');
          try { ev.json = JSON.parse(ev.data); } catch { /* [DONE] etc. */ }
          out.events.push(ev);
          if (o.onEvent && !done) o.onEvent(ev, ctl);
        }
      });
      res.on('end', () => { out.complete = true; finish(); });
      res.on('error', (e) => finish(e));
      res.on('aborted', () => finish(new Error('response aborted')));
    });
    const timer = setTimeout(() => { out.error = `timed out after ${timeoutMs} ms`; req.destroy(); finish(); }, timeoutMs);
    req.on('error', (e) => finish(e));
    req.end(body);
  });
}

// Parses HTTP/1.x responses out of a byte string (latin1), in order.
// A response without Content-Length or chunked framing runs to the end.
function parseResponses(s) {
  const out = [];
  let pos = 0;
  while (pos < s.length) {
    const headEnd = s.indexOf('\r\n\r\n', pos);
    if (headEnd < 0) break;
    const lines = s.slice(pos, headEnd).split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]);
    if (!m) break;
    const headers = {};
    for (const l of lines.slice(1)) {
      const c = l.indexOf(':');
      if (c < 0) continue;
      const k = l.slice(0, c).toLowerCase();
      const v = l.slice(c + 1).trim();
      headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
    }
    const status = Number(m[1]);
    let p = headEnd + 4;
    let body = '';
    let complete = true;
    if (status < 200 || status === 204 || status === 304) {
      // no body
    } else if (/\bchunked\b/i.test(headers['transfer-encoding'] || '')) {
      complete = false;
      for (;;) {
        const le = s.indexOf('\r\n', p);
        if (le < 0) break;
        const size = parseInt(s.slice(p, le).split(';')[0], 16);
        if (Number.isNaN(size)) break;
        if (size === 0) {
          const te = s.indexOf('\r\n\r\n', le);
          p = te < 0 ? s.length : te + 4;
          complete = te >= 0;
          break;
        }
        body += s.slice(le + 2, le + 2 + size);
        p = le + 2 + size + 2;
        if (p > s.length) break;
      }
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      body = s.slice(p, p + n);
      complete = s.length >= p + n;
      p += n;
    } else {
      body = s.slice(p);
      p = s.length;
    }
    let json;
    try { json = JSON.parse(Buffer.from(body, 'latin1').toString('utf8')); } catch { /* not JSON */ }
    out.push({ status, reason: m[2] || '', headers, body, json, complete });
    pos = Math.min(p, s.length);
  }
  return out;
}

// Writes raw bytes over TCP (or TLS with o.tls) and collects everything until
// the server closes or o.timeoutMs passes. `bytes` is a string (latin1), a
// Buffer, or an array of { data, delayMs } pieces written in turn.
// Resolves with { data, closed, closedAfterMs, reset, responses, statusCodes, writeError }.
function raw(gw, bytes, o = {}) {
  const timeoutMs = o.timeoutMs || 5000;
  const useTls = !!o.tls;
  const port = o.port || (useTls ? gw.httpsPort : gw.httpPort);
  return new Promise((resolve) => {
    const chunks = [];
    const res = { closed: false, closedAfterMs: null, reset: false, writeError: null };
    let t0;
    let done = false;
    const sock = useTls
      ? tls.connect({ host: '127.0.0.1', port, ca: gw.ca, ...(o.tlsOptions || {}) })
      : net.connect({ host: '127.0.0.1', port });
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const buf = Buffer.concat(chunks);
      res.buffer = buf;
      res.data = buf.toString('latin1');
      res.responses = parseResponses(res.data);
      res.statusCodes = res.responses.map((r) => r.status);
      sock.destroy();
      resolve(res);
    };
    const markClosed = () => {
      if (!res.closed && !done) {
        res.closed = true;
        res.closedAfterMs = Date.now() - t0;
      }
      finish();
    };
    const timer = setTimeout(finish, timeoutMs);
    sock.on('data', (d) => chunks.push(d));
    sock.on('end', markClosed);
    sock.on('close', markClosed);
    sock.on('error', (e) => {
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE') res.reset = true;
      else res.writeError = e.message;
      markClosed();
    });
    sock.once(useTls ? 'secureConnect' : 'connect', async () => {
      t0 = Date.now();
      const pieces = Array.isArray(bytes) ? bytes : [{ data: bytes }];
      for (const piece of pieces) {
        if (done || sock.destroyed) return;
        if (piece.delayMs) await sleep(piece.delayMs);
        if (done || sock.destroyed) return;
        const d = Buffer.isBuffer(piece.data) ? piece.data : Buffer.from(piece.data, 'latin1');
        try {
          sock.write(d, (err) => { if (err) res.writeError = err.message; });
        } catch (e) { res.writeError = e.message; return; }
      }
      if (o.endAfterWrite) sock.end();
    });
    t0 = Date.now();
  });
}

/* ----------------------------------------------------------------- helpers */

// Throws unless `r` (a parsed response, or a request() result) carries the
// OpenAI error shape {"error":{"message","type","code"}}.
function assertErrorShape(r, what = '') {
  const j = r.json;
  const ctx = `${what} body ${JSON.stringify(r.body)}`;
  if (!j || typeof j !== 'object' || !j.error || typeof j.error !== 'object') throw new Error(`not an OpenAI error JSON: ${ctx}`);
  if (typeof j.error.message !== 'string' || !j.error.message) throw new Error(`error.message missing: ${ctx}`);
  if (typeof j.error.type !== 'string' || !j.error.type) throw new Error(`error.type missing: ${ctx}`);
  if (!('code' in j.error)) throw new Error(`error.code missing: ${ctx}`);
}

// Header values from a mock request record, by lower-case name.
function mockHeaders(rec) {
  const m = new Map();
  const add = (k, v) => {
    k = String(k).toLowerCase();
    if (!m.has(k)) m.set(k, []);
    for (const x of Array.isArray(v) ? v : [v]) m.get(k).push(String(x));
  };
  const h = rec.headers || {};
  if (Array.isArray(h)) {
    if (h.length && Array.isArray(h[0])) h.forEach(([k, v]) => add(k, v));
    else for (let i = 0; i + 1 < h.length; i += 2) add(h[i], h[i + 1]);
  } else {
    for (const [k, v] of Object.entries(h)) add(k, v);
  }
  return m;
}

async function waitFor(fn, timeoutMs = 5000, stepMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) return v;
    await sleep(stepMs);
  }
}

function chatBody(content, extra = {}) {
  return { model: 'gpt-test', messages: [{ role: 'user', content }], ...extra };
}

module.exports = {
  ROOT, MASTER_KEY, UPSTREAM_KEY, gatewayBin, sleep, makeCerts, certs, makeTmpDir, freePorts,
  toYaml, deepMerge, defaultConfig, startMock, startGateway, cleanup, crashGuard, request, stream, raw,
  parseResponses, assertErrorShape, mockHeaders, waitFor, chatBody, sanitizerReport,
};
