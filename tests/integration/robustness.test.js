// modelgate — robustness under load and faults (TESTING.md "Load and
// overload" and the timeout bullets of "HTTP front"): file descriptors back to
// baseline after a mixed burst, an upstream 429 storm, an upstream that hangs
// after its headers, slow TLS handshakes, a client that stops reading
// (write_timeout), and SIGHUP + SIGTERM with streams in flight reconciled
// against the usage ledger in a throwaway PostgreSQL.
//
// File descriptors are counted in /proc/<pid>/fd and every socket is
// classified through /proc/<pid>/net/tcp{,6} (client connection, upstream
// connection, listener), so a comparison with the baseline can leave out the
// upstream keep-alive pool exactly instead of allowing a vague delta.
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const http = require('node:http');
const https = require('node:https');
const tls = require('node:tls');
const { spawnSync } = require('node:child_process');
const h = require('./lib/harness');
const pgl = require('./lib/pg');

// Short timeouts so that each case takes a few seconds at most.
const LIMITS = {
  header_timeout: '2s', body_timeout: '2s', idle_timeout: '3s', write_timeout: '1s',
  tls_handshake_timeout: '1s', upstream_connect_timeout: '2s',
  upstream_first_byte_timeout: '2s', upstream_idle_timeout: '1s', upstream_timeout: '30s',
  drain_timeout: '10s',
};

// Every fault scenario gets its own model (own deployment state), so a
// breaker that one case trips never shows up in another.
const FAULT_MODELS = ['storm', 'hang-nonstream', 'hang-stream', 'hang-mid', 'err500', 'cutmid', 'hangmid'];
const robustCfg = (cfg) => {
  cfg.limits = { ...cfg.limits, ...LIMITS };
  for (const name of FAULT_MODELS) cfg.models.push({ name, deployments: [{ provider: 'mock', model: 'gpt-test' }] });
  return cfg;
};

// For the load cases: many TLS handshakes at once on a loaded 2-core machine
// (ASan build, other test files running) can take longer than 1 s.
const loadCfg = (cfg) => {
  robustCfg(cfg);
  cfg.limits.tls_handshake_timeout = '10s';
  return cfg;
};

const D = (directive, text = 'hello') => `[[mock:${directive}]] ${text}`;

/* ------------------------------------------------------------ fd accounting */

function tcpTable(pid) {
  const byInode = new Map();
  for (const f of ['tcp', 'tcp6']) {
    let text = '';
    try { text = fs.readFileSync(`/proc/${pid}/net/${f}`, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c.length < 10) continue;
      const lport = parseInt(c[1].split(':').pop(), 16);
      const rport = parseInt(c[2].split(':').pop(), 16);
      byInode.set(c[9], { lport, rport, state: c[3] });
    }
  }
  return byInode;
}

// { total, client, upstream, listen, otherSockets, nonSocket }: client =
// connections accepted on the gateway's listeners, upstream = connections to
// the mock's port.
function fdSnapshot(gw, mockPort) {
  const dir = `/proc/${gw.pid}/fd`;
  const tcp = tcpTable(gw.pid);
  const s = { total: 0, client: 0, upstream: 0, listen: 0, otherSockets: 0, nonSocket: 0 };
  for (const fd of fs.readdirSync(dir)) {
    let link;
    try { link = fs.readlinkSync(path.join(dir, fd)); } catch { continue; }   // closed meanwhile
    s.total++;
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (!m) { s.nonSocket++; continue; }
    const e = tcp.get(m[1]);
    if (!e) s.otherSockets++;
    else if (e.state === '0A') s.listen++;
    else if (mockPort && e.rport === mockPort) s.upstream++;
    else if (e.lport === gw.httpsPort || e.lport === gw.httpPort) s.client++;
    else s.otherSockets++;
  }
  return s;
}

// Waits until fdSnapshot satisfies pred; returns the last snapshot either way.
async function waitFds(gw, mockPort, pred, ms = 5000) {
  let last;
  const ok = await h.waitFor(() => { last = fdSnapshot(gw, mockPort); return pred(last); }, ms, 50);
  return ok ? last : fdSnapshot(gw, mockPort);
}

// A snapshot taken once two reads 200 ms apart agree and no client is connected.
async function settledFds(gw, mockPort) {
  let prev = null;
  for (let i = 0; i < 50; i++) {
    const s = fdSnapshot(gw, mockPort);
    if (prev && s.client === 0 && JSON.stringify(s) === JSON.stringify(prev)) return s;
    prev = s;
    await h.sleep(200);
  }
  throw new Error(`fd count never settled: ${JSON.stringify(prev)}`);
}

/* ------------------------------------------------------------------ clients */

// One POST /v1/chat/completions through an optional (keep-alive) agent. For a
// stream, abortOnContent disconnects at the first non-empty content delta.
// Resolves with { status, headers, body, json, complete, aborted, error, reused, ms }.
function send(gw, { body, agent = false, abortOnContent = false, timeoutMs = 15000, useTls = true }) {
  const payload = JSON.stringify(body);
  const t0 = Date.now();
  return new Promise((resolve) => {
    const out = { status: 0, headers: {}, body: '', complete: false, aborted: false, error: null, reused: false };
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      out.ms = Date.now() - t0;
      if (err && !out.aborted) out.error = err.message || String(err);
      try { out.json = JSON.parse(out.body); } catch { /* SSE or partial */ }
      resolve(out);
    };
    const opts = {
      host: '127.0.0.1', port: useTls ? gw.httpsPort : gw.httpPort, method: 'POST',
      path: '/v1/chat/completions', agent,
      headers: { authorization: `Bearer ${h.MASTER_KEY}`, 'content-type': 'application/json',
        'content-length': Buffer.byteLength(payload) },
    };
    if (useTls) opts.ca = gw.ca;
    const req = (useTls ? https : http).request(opts, (res) => {
      out.status = res.statusCode;
      out.headers = res.headers;
      out.reused = !!req.reusedSocket;
      res.setEncoding('utf8');
      res.on('data', (d) => {
        out.body += d;
        if (abortOnContent && !done && /"content":"[^"]/.test(out.body)) {
          out.aborted = true;
          req.destroy();
          finish();
        }
      });
      res.on('end', () => { out.complete = true; finish(); });
      res.on('error', (e) => finish(e));
      res.on('aborted', () => finish(new Error('response aborted')));
    });
    const timer = setTimeout(() => { out.error = `timed out after ${timeoutMs} ms`; req.destroy(); finish(); }, timeoutMs);
    req.on('error', (e) => finish(e));
    req.end(payload);
  });
}

const chatBody = (content, model = 'gpt-test', extra = {}) => h.chatBody(content, { model, ...extra });
const streamBody = (content, model = 'gpt-test') => chatBody(content, model, { stream: true });

// SSE helpers on a raw body.
const sseData = (body) => body.replace(/\r\n/g, '\n').split('\n\n').map((b) => b.split('\n')
  .filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n')).filter(Boolean);
const sseJson = (body) => sseData(body).map((d) => { try { return JSON.parse(d); } catch { return null; } });
const contentDeltas = (body) => sseJson(body).filter((j) => j && j.choices?.[0]?.delta?.content);
const errorEvents = (body) => sseJson(body).filter((j) => j && j.error);
const show = (r) => `status ${r.status} complete=${r.complete} error=${r.error} ms=${r.ms} body=${JSON.stringify(r.body.slice(0, 600))}`;

function errorShape(r, what) {
  h.assertErrorShape({ json: r.json, body: r.body }, what);
}

/* ======================================================================== */

let mock;
let gw;
const startGw = () => h.startGateway({ mock, configOverrides: robustCfg });

before(async () => {
  mock = await h.startMock();
  gw = await startGw();
});
afterEach(h.crashGuard(() => gw, async () => { gw = await startGw(); }));
after(h.cleanup);

describe('file descriptors', () => {
  it('a mixed burst (300 requests, 30 connections, keep-alive and not, streams, cancels, upstream faults) leaves the fd count at its baseline', async (t) => {
    // Own mock and gateway: the mock is stopped at the end so that the
    // gateway's idle upstream pool empties, and no other test's traffic counts.
    const m = await h.startMock();
    const g = await h.startGateway({ mock: m, configOverrides: loadCfg });
    try {
      // Warm-up: one request of each kind, so that anything created lazily on
      // first use (e.g. a worker's first upstream connection machinery) is
      // part of the baseline.
      for (const useTls of [true, false]) {
        assert.equal((await send(g, { body: chatBody('warm up', 'gpt-test'), useTls })).status, 200);
        const s = await send(g, { body: streamBody(D('chunks=3')), useTls });
        assert.equal(s.status, 200, show(s));
      }
      const base = await settledFds(g, m.port);
      // What must come back exactly: everything but idle pooled upstream
      // connections (those are checked separately, after the mock is gone).
      const baseKept = base.total - base.upstream;

      const LANES = 30, PER_LANE = 10;
      const kinds = [
        { name: 'plain', body: () => chatBody('burst plain') },
        { name: 'stream', body: () => streamBody(D('chunks=5,chunk_delay_ms=20')) },
        { name: 'cancelled', body: () => streamBody(D('chunks=20,chunk_delay_ms=50')), abortOnContent: true },
        { name: 'upstream 500', body: () => chatBody(D('status=500'), 'err500') },
        { name: 'upstream cut', body: () => chatBody(D('close_mid_stream=1'), 'cutmid') },
        { name: 'upstream hang mid-stream', body: () => streamBody(D('chunks=4,hang=mid_stream'), 'hangmid') },
        { name: 'plain (no TLS)', body: () => chatBody('burst plain http'), useTls: false },
      ];
      const agents = [];
      const results = [];
      const t0 = Date.now();
      await Promise.all(Array.from({ length: LANES }, async (_, lane) => {
        // Even lanes keep one connection alive across their requests.
        const mk = (useTls) => (lane % 2 === 0
          ? new (useTls ? https : http).Agent({ keepAlive: true, maxSockets: 1 }) : false);
        const agentTls = mk(true), agentPlain = mk(false);
        if (agentTls) agents.push(agentTls, agentPlain);
        for (let i = 0; i < PER_LANE; i++) {
          const k = kinds[(lane + i) % kinds.length];
          const useTls = k.useTls !== false;
          const r = await send(g, { body: k.body(), agent: useTls ? agentTls : agentPlain,
            abortOnContent: !!k.abortOnContent, useTls, timeoutMs: 20000 });
          results.push({ kind: k.name, r });
        }
      }));
      const burstMs = Date.now() - t0;
      assert.equal(results.length, LANES * PER_LANE);
      const tally = {};
      for (const { kind, r } of results) tally[`${kind} ${r.aborted ? 'aborted' : r.status}`] = (tally[`${kind} ${r.aborted ? 'aborted' : r.status}`] || 0) + 1;
      t.diagnostic(`burst ${burstMs} ms: ${JSON.stringify(tally)}`);
      t.diagnostic(`baseline fds ${JSON.stringify(base)}`);

      // Every request got its proper answer; none hung.
      for (const { kind, r } of results) {
        assert.equal(r.error, null, `${kind}: ${show(r)}`);
        switch (kind) {
          case 'plain': case 'plain (no TLS)':
            assert.equal(r.status, 200, `${kind}: ${show(r)}`);
            break;
          case 'stream':
            assert.equal(r.status, 200, `${kind}: ${show(r)}`);
            assert.ok(r.complete && r.body.endsWith('data: [DONE]\n\n'), `${kind}: ${show(r)}`);
            break;
          case 'cancelled':
            assert.equal(r.status, 200, `${kind}: ${show(r)}`);
            assert.ok(r.aborted, `${kind}: ${show(r)}`);
            break;
          case 'upstream 500': case 'upstream cut':
            // 502 while the breaker is closed, 503 once it opened.
            assert.ok([502, 503].includes(r.status), `${kind}: ${show(r)}`);
            errorShape(r, kind);
            break;
          case 'upstream hang mid-stream':
            if (r.status === 200) {
              assert.ok(r.complete, `${kind}: ${show(r)}`);
              assert.ok(errorEvents(r.body).length >= 1, `${kind}: no final SSE error event: ${show(r)}`);
            } else {
              assert.equal(r.status, 503, `${kind}: ${show(r)}`);
              errorShape(r, kind);
            }
            break;
          default: assert.fail(kind);
        }
      }

      for (const a of agents) a.destroy();
      // Client connections all closed, and everything except the idle
      // upstream pool is exactly as before the burst.
      const afterBurst = await waitFds(g, m.port, (s) => s.client === 0 && s.total - s.upstream === baseKept);
      assert.equal(afterBurst.client, 0, `client connections left open: ${JSON.stringify(afterBurst)}`);
      assert.equal(afterBurst.total - afterBurst.upstream, baseKept,
        `fds other than pooled upstream connections: baseline ${JSON.stringify(base)}, now ${JSON.stringify(afterBurst)}`);
      // The pool never holds more idle connections than there were requests
      // in flight at once (one upstream connection per client request).
      assert.ok(afterBurst.upstream <= LANES, `upstream pool holds ${afterBurst.upstream} connections after ${LANES} concurrent clients`);

      // Stop the upstream: its pooled connections close, and the gateway
      // drops them at once (idle pooled connections are watched).
      await m.stop();
      t.diagnostic(`after the burst ${JSON.stringify(afterBurst)}`);
      const final = await waitFds(g, m.port, (s) => s.upstream === 0 && s.total === baseKept);
      t.diagnostic(`after the upstream stopped ${JSON.stringify(final)}`);
      assert.equal(final.upstream, 0, `upstream connections left after the upstream went away: ${JSON.stringify(final)}`);
      assert.equal(final.total, baseKept, `fd count ${final.total} vs baseline ${baseKept} (${JSON.stringify(base)} -> ${JSON.stringify(final)})`);
      const hz = await h.request(g, { path: '/healthz', tls: true });
      assert.equal(hz.status, 200);
      assert.ok(burstMs < 30000, `burst took ${burstMs} ms`);
    } finally {
      await g.stop();
      await m.stop();
    }
  });
});

describe('upstream 429 storm', () => {
  it('200 concurrent requests against an upstream that answers 429: each a clean 429 (Retry-After passed on) or a fast 503 once the breaker opened; no retry amplification; healthy again after SIGHUP', async (t) => {
    // Own gateway: 200 TLS handshakes at once can take longer than the 1 s
    // tls_handshake_timeout of the others on a loaded 2-core machine.
    const gw = await h.startGateway({ mock, configOverrides: loadCfg });
    try {
      await mock.clear();
      const N = 200;
      const t0 = Date.now();
      const res = await Promise.all(Array.from({ length: N }, (_, i) =>
        send(gw, { body: chatBody(D('status=429,retry_after=7', `storm ${i}`), 'storm'), timeoutMs: 30000 })));
      const took = Date.now() - t0;
      let n429 = 0, n503 = 0;
      for (const r of res) {
        assert.equal(r.error, null, show(r));
        errorShape(r, 'storm');
        assert.ok(r.headers['x-request-id'], show(r));
        if (r.status === 429) {
          n429++;
          assert.equal(r.headers['retry-after'], '7', `the upstream's Retry-After is passed on: ${show(r)}`);
          assert.equal(r.json.error.code, 'upstream_rate_limited', show(r));
        } else {
          assert.equal(r.status, 503, show(r));
          n503++;
          assert.equal(r.json.error.code, 'upstream_unavailable', show(r));
          assert.equal(r.headers['retry-after'], '30', show(r));
        }
      }
      assert.ok(n429 >= 5, `only ${n429} of ${N} reached the upstream`);
      assert.ok(took < 20000, `the storm took ${took} ms`);

      // No retry amplification: each request earns 0.2 retries and each worker
      // starts with 10 banked (docs/routing.md), so 2 workers add at most
      // 20 + 0.2·N upstream requests.
      const upstream = (await mock.requests()).filter((q) => /storm \d+/.test(q.body || '')).length;
      t.diagnostic(`${took} ms: ${n429} x 429, ${n503} x 503, ${upstream} upstream requests`);
      assert.ok(upstream <= N + 20 + Math.ceil(0.2 * N), `retry amplification: ${upstream} upstream requests for ${N} client requests`);

      // The breaker is open: a request (even one the upstream would now serve)
      // fails fast with 503 and is not forwarded.
      await mock.clear();
      const t1 = Date.now();
      const open = await send(gw, { body: chatBody('healthy now', 'storm') });
      assert.equal(open.status, 503, show(open));
      assert.equal(open.json.error.code, 'upstream_unavailable', show(open));
      assert.equal(open.headers['retry-after'], '30');
      assert.ok(Date.now() - t1 < 1000, `open breaker answered after ${Date.now() - t1} ms`);
      assert.equal((await mock.requests()).length, 0, 'nothing forwarded while the breaker is open');

      // Other models (other deployments) were never affected.
      assert.equal((await send(gw, { body: chatBody('other model') })).status, 200);

      // No client connection is left hanging.
      const fds = await waitFds(gw, mock.port, (s) => s.client === 0, 5000);
      assert.equal(fds.client, 0, `client connections left open after the storm: ${JSON.stringify(fds)}`);

      // The cooldown is 30 s; a reload starts with closed breakers (docs/routing.md).
      gw.reload();
      const healed = await h.waitFor(async () => {
        const r = await send(gw, { body: chatBody('after reload', 'storm') });
        return r.status === 200 ? r : null;
      }, 8000, 200);
      assert.ok(healed, 'the storm model serves again after SIGHUP');
    } finally {
      await gw.stop();
    }
  });
});

describe('upstream hangs after its headers', () => {
  async function hungCase(body, check) {
    await mock.clear();
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      let hungDone = false;
      const hung = send(gw, { body, agent, timeoutMs: 15000 }).then((x) => { hungDone = true; return x; });
      await h.sleep(200);
      // Meanwhile another client is served: it is answered while the stalled
      // request is still waiting for its timeout.
      const other = await send(gw, { body: chatBody('in parallel') });
      assert.equal(other.status, 200, show(other));
      assert.equal(hungDone, false, `a parallel request took ${other.ms} ms: it waited for the stalled one`);
      const r = await hung;
      assert.equal(r.error, null, show(r));
      assert.ok(r.ms >= 900 && r.ms < 5000, `answered after ${r.ms} ms (upstream_idle_timeout 1 s): ${show(r)}`);
      check(r);
      // The gateway hung up on the stalled upstream.
      const rec = await h.waitFor(async () => (await mock.requests())
        .find((q) => q.outcome === 'client_aborted' && /hang=|stall/.test(q.body || '')), 3000, 100);
      assert.ok(rec, `the stalled upstream request was not cancelled: ${JSON.stringify(await mock.requests()).slice(0, 800)}`);
      // The client connection is usable afterwards, or was closed cleanly
      // (announced with Connection: close).
      const next = await send(gw, { body: chatBody('same connection'), agent });
      assert.equal(next.status, 200, show(next));
      assert.ok(next.reused || /close/i.test(r.headers.connection || ''),
        `the connection was neither reused nor announced closed (Connection: ${r.headers.connection})`);
    } finally {
      agent.destroy();
    }
  }

  it('non-stream: 504 in the OpenAI error shape after upstream_idle_timeout; others unaffected; connection reusable', async () => {
    await hungCase(chatBody(D('hang=after_headers', 'stall'), 'hang-nonstream'), (r) => {
      assert.equal(r.status, 504, show(r));
      errorShape(r, 'hang after headers');
      assert.equal(r.json.error.code, 'upstream_timeout', show(r));
    });
  });

  it('stream, nothing after the headers: 504 JSON (nothing relayed yet) or a stream ending in an SSE error event', async () => {
    await hungCase(streamBody(D('hang=after_headers', 'stall'), 'hang-stream'), (r) => {
      if (r.status === 504) {
        errorShape(r, 'stream hang after headers');
      } else {
        assert.equal(r.status, 200, show(r));
        assert.ok(r.complete, show(r));
        assert.ok(errorEvents(r.body).length >= 1, `no final SSE error event: ${show(r)}`);
        assert.ok(!r.body.includes('[DONE]'), show(r));
      }
    });
  });

  it('stream, one chunk then silence: the chunk, then a final SSE error event, the stream ends; connection reusable', async () => {
    await hungCase(streamBody(D('chunks=2,hang=mid_stream', 'stall'), 'hang-mid'), (r) => {
      assert.equal(r.status, 200, show(r));
      assert.ok(r.complete, `the stream must end: ${show(r)}`);
      assert.equal(contentDeltas(r.body).length, 1, show(r));
      const data = sseJson(r.body);
      const last = data[data.length - 1];
      assert.ok(last && last.error && typeof last.error.message === 'string', `last event is not an error: ${show(r)}`);
      assert.ok(!r.body.includes('[DONE]'), show(r));
    });
  });
});

describe('slow TLS handshake', () => {
  // The first bytes of a ClientHello: a handshake record header announcing
  // 512 bytes and a handshake header, then nothing more.
  const partialHello = Buffer.from('160301020001000001fc0303' + '00'.repeat(20), 'hex');

  it('TCP connections that send nothing or half a ClientHello are closed after tls_handshake_timeout; others are served meanwhile', async (t) => {
    const before_ = fdSnapshot(gw, mock.port);
    const tStart = Date.now();
    const silent = Array.from({ length: 20 }, () => h.raw(gw, Buffer.alloc(0), { port: gw.httpsPort, timeoutMs: 6000 }));
    const partial = Array.from({ length: 20 }, () => h.raw(gw, partialHello, { port: gw.httpsPort, timeoutMs: 6000 }));
    await h.sleep(300);
    const during = fdSnapshot(gw, mock.port);
    assert.ok(during.client >= 40, `the 40 connections are open in the gateway: ${JSON.stringify(during)}`);
    const other = await send(gw, { body: chatBody('served during the stall') });
    assert.equal(other.status, 200, show(other));
    const hz = await h.request(gw, { path: '/healthz' });
    assert.equal(hz.status, 200);
    const servedAt = Date.now() - tStart;
    for (const [what, list] of [['silent', silent], ['partial ClientHello', partial]]) {
      const rs = await Promise.all(list);
      t.diagnostic(`${what}: closed after ${Math.min(...rs.map((r) => r.closedAfterMs))}..${Math.max(...rs.map((r) => r.closedAfterMs))} ms`);
      // "Meanwhile": the normal client was done before the stalled ones timed out.
      assert.ok(servedAt < Math.min(...rs.map((r) => r.closedAfterMs)),
        `the normal client was served ${servedAt} ms in, after the stalled connections were closed`);
      for (const r of rs) {
        assert.ok(r.closed, `${what}: not closed within 6 s`);
        assert.ok(r.closedAfterMs >= 800 && r.closedAfterMs < 3000, `${what}: closed after ${r.closedAfterMs} ms (tls_handshake_timeout 1 s)`);
        assert.ok(!/HTTP\/1\.1 200/.test(r.data), `${what}: got ${JSON.stringify(r.data.slice(0, 100))}`);
      }
    }
    const after_ = await waitFds(gw, mock.port, (s) => s.client === 0);
    assert.equal(after_.client, 0, `client connections left: ${JSON.stringify(after_)} (before ${JSON.stringify(before_)})`);
  });
});

describe('slow reader', () => {
  it('a client that stops reading a long stream is cut off after write_timeout: its fds are freed, the upstream cancelled, others unaffected', async (t) => {
    const m = await h.startMock();
    const g = await h.startGateway({ mock: m, configOverrides: robustCfg });
    let sock;
    try {
      const base = await settledFds(g, m.port);
      // 32 MB of stream: far more than the socket buffers of both ends.
      const N = 32000000;
      const payload = JSON.stringify(streamBody(D(`big=${N},chunks=3200`, 'slow reader')));
      sock = tls.connect({ host: '127.0.0.1', port: g.httpsPort, ca: g.ca, servername: 'localhost' });
      await new Promise((resolve, reject) => { sock.once('secureConnect', resolve); sock.once('error', reject); });
      let got = 0;
      let head = '';
      let tail = '';
      let ended = false;
      const endP = new Promise((resolve) => {
        sock.on('end', () => { ended = true; resolve(); });
        sock.on('close', () => { ended = true; resolve(); });
        sock.on('error', () => { ended = true; resolve(); });
      });
      const firstData = new Promise((resolve) => sock.once('data', resolve));
      sock.on('data', (d) => {
        got += d.length;
        const t = d.toString('latin1');
        if (head.length < 512) head += t.slice(0, 512);
        tail = (tail + t).slice(-512);
      });
      sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${h.MASTER_KEY}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`);
      await firstData;
      sock.pause();   // stop reading: the kernel buffers fill, then the gateway's
      const tPause = Date.now();
      assert.ok(/^HTTP\/1\.1 200/.test(head), head.slice(0, 200));

      // Others are served while the slow reader is stuck.
      await h.sleep(300);
      const other = await send(g, { body: chatBody('not blocked by the slow reader') });
      assert.equal(other.status, 200, show(other));
      const slowRec = (await m.requests()).find((q) => /slow reader/.test(q.body || ''));
      assert.equal(slowRec?.outcome, 'pending', `other client took ${other.ms} ms: the slow reader was already cut off`);

      // The gateway gives up on it: its client socket and the upstream
      // connection are closed although the client never read nor closed.
      const freed = await waitFds(g, m.port, (s) => s.client === 0 && s.total - s.upstream === base.total - base.upstream, 8000);
      const tFreed = Date.now() - tPause;
      t.diagnostic(`freed ${tFreed} ms after the client paused; fds ${JSON.stringify(base)} -> ${JSON.stringify(freed)}`);
      assert.equal(freed.client, 0, `the slow reader's connection is still open after ${tFreed} ms: ${JSON.stringify(freed)}`);
      assert.equal(freed.total - freed.upstream, base.total - base.upstream, `fds: ${JSON.stringify(base)} -> ${JSON.stringify(freed)}`);
      const rec = await h.waitFor(async () => (await m.requests()).find((q) => /slow reader/.test(q.body || '') && q.outcome === 'client_aborted'), 3000, 100);
      assert.ok(rec, `the upstream stream was not cancelled: ${JSON.stringify((await m.requests()).map((q) => q.outcome))}`);
      assert.equal(ended, false, 'the client saw nothing yet (it is not reading)');

      // Reading again: what was buffered arrives, then the connection ends
      // without the end of the stream.
      sock.resume();
      await Promise.race([endP, h.sleep(5000)]);
      assert.ok(ended, 'the connection ended once the client read again');
      t.diagnostic(`received ${got} bytes of a ${N}-byte stream`);
      assert.ok(got < N, `received ${got} bytes of a ${N}-byte stream`);
      assert.ok(!tail.includes('data: [DONE]'), 'the stream did not finish');
    } finally {
      if (sock) sock.destroy();
      await g.stop();
      await m.stop();
    }
  });
});

describe('SIGHUP and SIGTERM with streams in flight, reconciled against the usage ledger', { skip: !pgl.available() && 'PostgreSQL not installed' }, () => {
  let pg;
  let dir;
  let journal;
  const ledgerCfg = (cfg) => {
    robustCfg(cfg);
    cfg.database = { url: pg.url };
    cfg.usage = { journal_dir: journal };
    return cfg;
  };
  function cli(args) {
    const cfg = path.join(dir, 'cli.yaml');
    fs.writeFileSync(cfg, h.toYaml({ listen: [{ address: '127.0.0.1:1' }], database: { url: pg.url }, usage: { journal_dir: journal } }));
    return spawnSync(h.gatewayBin(), [...args, '-c', cfg], { encoding: 'utf8', cwd: h.ROOT });
  }

  before(async () => {
    pg = await pgl.startPg();
    dir = h.makeTmpDir('mg-rob-ledger-');
    journal = path.join(dir, 'journal');
    const m = cli(['migrate']);
    assert.equal(m.status, 0, m.stderr);
  });
  after(() => { if (pg) pg.destroy(); });

  const startStreams = (g, n, directive, tag) => {
    const started = new Set();
    const all = Array.from({ length: n }, (_, k) => h.stream(g, {
      path: '/v1/chat/completions', auth: h.MASTER_KEY, timeoutMs: 20000,
      body: h.chatBody(D(directive, `${tag} stream ${k}`), { stream: true, stream_options: { include_usage: true } }),
      onEvent: (ev) => { if (ev.json?.choices?.[0]?.delta?.content) started.add(k); },
    }));
    return { all, started };
  };
  const intact = (s, pieces, what) => {
    const txt = `${what}: status ${s.status} complete=${s.complete} error=${s.error} events=${JSON.stringify(s.events.map((e) => e.data.slice(0, 80)))}`;
    assert.equal(s.status, 200, txt);
    assert.ok(s.complete, txt);
    assert.equal(s.events.filter((e) => e.json?.choices?.[0]?.delta?.content).length, pieces, txt);
    assert.equal(s.events.filter((e) => e.json?.error).length, 0, txt);
    assert.equal(s.events[s.events.length - 1].data, '[DONE]', txt);
    const u = s.events.find((e) => e.json?.usage && Array.isArray(e.json.choices) && e.json.choices.length === 0);
    assert.ok(u, `${what}: no usage chunk`);
    return { id: s.headers['x-request-id'], usage: u.json.usage };
  };

  it('N streams survive a SIGHUP; N more survive SIGTERM (drain), exit 0; the ledger has exactly one final row per request with the counts the client saw', async () => {
    const g = await h.startGateway({ mock, configOverrides: ledgerCfg });
    const N = 6;
    const seen = [];

    // SIGHUP in the middle of N streams (10 pieces, 200 ms apart).
    const a = startStreams(g, N, 'chunks=10,chunk_delay_ms=200', 'reload');
    assert.ok(await h.waitFor(() => a.started.size === N, 10000, 20), `only ${a.started.size} of ${N} streams started`);
    g.reload();
    assert.ok(await h.waitFor(() => g.logs.some((l) => /configuration reloaded/.test(l.msg || '')), 5000, 50), 'the reload happened');
    for (const [k, s] of (await Promise.all(a.all)).entries()) seen.push(intact(s, 10, `reload stream ${k}`));
    const plain = await send(g, { body: chatBody('after the reload') });
    assert.equal(plain.status, 200, show(plain));
    seen.push({ id: plain.headers['x-request-id'], usage: plain.json.usage });

    // SIGTERM in the middle of N streams (12 pieces, 250 ms apart: ~3 s, well
    // within drain_timeout 10 s).
    const b = startStreams(g, N, 'chunks=12,chunk_delay_ms=250', 'drain');
    assert.ok(await h.waitFor(() => b.started.size === N, 10000, 20), `only ${b.started.size} of ${N} streams started`);
    const tTerm = Date.now();
    g.terminate();
    for (const [k, s] of (await Promise.all(b.all)).entries()) seen.push(intact(s, 12, `drain stream ${k}`));
    const ex = await g.stop({ timeoutMs: 15000 });
    assert.equal(ex.code, 0);
    assert.ok(Date.now() - tTerm < 9000, `exit ${Date.now() - tTerm} ms after SIGTERM`);

    // Whatever the gateway did not ship before exiting is in the journal;
    // a new gateway on the same journal ships it.
    const g2 = await h.startGateway({ mock, configOverrides: ledgerCfg });
    const ids = seen.map((x) => x.id);
    assert.equal(new Set(ids).size, ids.length, 'request ids are unique');
    const q = `SELECT request_id, status, prompt_tokens, completion_tokens, incomplete FROM usage_events
      WHERE request_id IN (${ids.map((i) => `'${i}'`).join(',')})`;
    let rows = [];
    await h.waitFor(() => {
      rows = pg.sql(q).split('\n').filter(Boolean).map((l) => l.split('|'));
      return rows.length >= ids.length && rows.every((r) => r[1] !== '0');
    }, 20000, 200);
    await g2.stop();
    assert.equal(rows.length, ids.length, `ledger rows ${rows.length} for ${ids.length} requests`);
    const byId = new Map(rows.map((r) => [r[0], r]));
    for (const { id, usage } of seen) {
      const r = byId.get(id);
      assert.ok(r, `no ledger row for ${id}`);
      assert.equal(r[1], '200', `row ${id}: status ${r[1]}`);
      assert.equal(r[4], 'f', `row ${id} is incomplete`);
      assert.equal(Number(r[2]), usage.prompt_tokens, `prompt tokens of ${id}`);
      assert.equal(Number(r[3]), usage.completion_tokens, `completion tokens of ${id}`);
    }
    assert.equal(Number(pg.sql(`SELECT count(*) - count(DISTINCT request_id) FROM usage_events`)), 0, 'no request id twice');
    assert.equal(Number(pg.sql(`SELECT count(*) FROM usage_events WHERE incomplete OR status = 0`)), 0, 'no incomplete rows');
  });
});

describe('connection flood at max_connections', () => {
  let fmock;
  let fgw;
  before(async () => {
    fmock = await h.startMock();
    // The plain listener is an ops listener; the API listener admits 3.
    fgw = await h.startGateway({ mock: fmock, configOverrides: (cfg) => {
      cfg.listen[1].serve = 'ops';
      cfg.limits.max_connections = 3;
      cfg.limits.tls_handshake_timeout = '10s';
      return cfg;
    } });
  });
  after(async () => {
    if (fgw) await fgw.stop();
    if (fmock) await fmock.stop();
  });

  it('a flood that fills max_connections never shuts out /healthz, /readyz and /metrics on a `serve: ops` listener', async () => {
    const models = () => h.request(fgw, { path: '/v1/models', auth: h.MASTER_KEY, timeoutMs: 3000 });
    assert.equal((await models()).status, 200);
    // The ops listener answers nothing else.
    const other = await h.request(fgw, { path: '/v1/models', auth: h.MASTER_KEY, tls: false });
    assert.equal(other.status, 404);
    assert.match(other.json.error.message, /only \/healthz, \/readyz and \/metrics/);
    // Fill the API listener with idle TCP connections.
    const flood = Array.from({ length: 3 }, () => h.raw(fgw, Buffer.alloc(0), { port: fgw.httpsPort, timeoutMs: 8000 }));
    await h.sleep(300);
    const refused = await h.raw(fgw, Buffer.alloc(0), { port: fgw.httpsPort, timeoutMs: 3000 });
    assert.ok(refused.closed && refused.closedAfterMs < 1000, `a connection over the limit is closed at once (${refused.closedAfterMs} ms)`);
    await assert.rejects(models(), 'the API listener is full');
    for (const p of ['/healthz', '/readyz', '/metrics']) {
      const r = await h.request(fgw, { path: p, tls: false, timeoutMs: 3000 });
      assert.equal(r.status, 200, `${p} during the flood: ${r.status}`);
    }
    const m = await h.request(fgw, { path: '/metrics', tls: false });
    assert.match(m.body, /modelgate_connections_refused_total\S* [1-9]/);
    // The flood ends (the handshake timeout closes them); the API serves again.
    await Promise.all(flood);
    await h.waitFor(async () => (await models().catch(() => ({ status: 0 }))).status === 200, 5000, 100);
  });
});
