// modelgate — proxying through the real gateway to the mock upstream: plain and
// streamed completions, cancellation, upstream failures and timeouts, the
// operations endpoints, the access log, SIGHUP reload and SIGTERM drain.
//
// Mock directives ride in the last user message as [[mock:...]] so one
// configured model covers every scenario.
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

let mock;
let gw;

// Failure-injection tests each use their own model ("fault-N", own deployment),
// so the circuit breaker that their failures trip never affects other tests.
const FAULT_MODELS = 24;
let faultSeq = 0;
const faultModel = () => {
  assert.ok(faultSeq < FAULT_MODELS, 'raise FAULT_MODELS');
  return `fault-${++faultSeq}`;
};
const withFaultModels = (cfg) => {
  for (let i = 1; i <= FAULT_MODELS; i++) cfg.models.push({ name: `fault-${i}`, deployments: [{ provider: 'mock', model: 'gpt-test' }] });
  return cfg;
};
const startGw = () => h.startGateway({ mock, configOverrides: withFaultModels });

before(async () => {
  mock = await h.startMock();
  gw = await startGw();
});
afterEach(h.crashGuard(() => gw, async () => { gw = await startGw(); }));
after(h.cleanup);

const D = (directive, text = 'hello') => `[[mock:${directive}]] ${text}`;
const chat = (g, content, extra = {}, o = {}) =>
  h.request(g, { path: '/v1/chat/completions', auth: h.MASTER_KEY, body: h.chatBody(content, extra), ...o });
const streamChat = (g, content, o = {}, model = 'gpt-test') =>
  h.stream(g, { path: '/v1/chat/completions', auth: h.MASTER_KEY, body: h.chatBody(content, { stream: true, model }), ...o });

// Events that carry reply text (not the role chunk, finish chunk or usage chunk).
const contentEvents = (s) => s.events.filter((e) => e.json && Array.isArray(e.json.choices) &&
  e.json.choices.length && typeof e.json.choices[0].delta?.content === 'string' && e.json.choices[0].delta.content !== '');
const errorEvents = (s) => s.events.filter((e) => e.json && e.json.error);

function showStream(s) {
  return `status ${s.status} complete=${s.complete} error=${s.error} events:\n` +
    s.events.map((e) => `  +${e.t}ms ${e.event ? `[${e.event}] ` : ''}${e.data.slice(0, 200)}`).join('\n');
}

function parseMetrics(text) {
  const sums = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)/.exec(line);
    if (!m) continue;
    sums.set(m[1], (sums.get(m[1]) || 0) + Number(m[3]));
  }
  return sums;
}

describe('client API', () => {
  it('plain chat completion round trip', async () => {
    await mock.clear();
    const r = await chat(gw, 'hello there');
    assert.equal(r.status, 200, r.body);
    assert.match(r.headers['content-type'] || '', /application\/json/);
    assert.ok(r.headers['x-request-id']);
    assert.equal(r.json.object, 'chat.completion', r.body);
    assert.equal(typeof r.json.choices[0].message.content, 'string');
    const reqs = await mock.requests();
    assert.equal(reqs.length, 1);
    assert.equal(reqs[0].method, 'POST');
    assert.equal(reqs[0].path, '/v1/chat/completions');
    const fwd = typeof reqs[0].body === 'string' ? JSON.parse(reqs[0].body) : reqs[0].body;
    assert.equal(fwd.model, 'gpt-test');
    assert.deepEqual(fwd.messages, [{ role: 'user', content: 'hello there' }]);
  });

  it('streaming: events arrive incrementally, not buffered', async () => {
    const s = await streamChat(gw, D('chunks=5,chunk_delay_ms=200'));
    assert.equal(s.status, 200, showStream(s));
    assert.match(s.headers['content-type'] || '', /text\/event-stream/);
    assert.ok(s.complete, showStream(s));
    const ev = contentEvents(s);
    assert.ok(ev.length >= 5, showStream(s));
    assert.ok(ev[0].t < 600, `first event after ${ev[0].t} ms; ${showStream(s)}`);
    assert.ok(ev[ev.length - 1].t >= 800, `last event after ${ev[ev.length - 1].t} ms; ${showStream(s)}`);
    assert.ok(ev[ev.length - 1].t - ev[0].t >= 600, `events spread over time; ${showStream(s)}`);
    assert.equal(s.events[s.events.length - 1].data, '[DONE]', showStream(s));
    assert.equal(errorEvents(s).length, 0, showStream(s));
  });

  it('streaming: a client that did not ask for usage gets no usage-only chunk', async () => {
    const s = await streamChat(gw, D('chunks=3'));
    assert.equal(s.status, 200, showStream(s));
    const usageOnly = s.events.filter((e) => e.json && e.json.usage && Array.isArray(e.json.choices) && e.json.choices.length === 0);
    assert.equal(usageOnly.length, 0, `usage chunk leaked to the client; ${showStream(s)}`);
  });

  it('client disconnect mid-stream cancels the upstream request', async () => {
    await mock.clear();
    const t0 = Date.now();
    // 40 pieces 200 ms apart: the upstream would run for ~8 s.
    const s = await streamChat(gw, D('chunks=40,chunk_delay_ms=200', 'x'.repeat(40)), {
      onEvent: (ev, ctl) => { if (contentEvents({ events: [ev] }).length) ctl.abort(); },
    }, faultModel());
    assert.ok(s.aborted, showStream(s));
    // The mock records outcome "client_aborted" when the gateway hangs up on it.
    const rec = await h.waitFor(async () => {
      const reqs = await mock.requests();
      return reqs.find((r) => r.outcome === 'client_aborted');
    }, 4000, 100);
    assert.ok(rec, `upstream request not cancelled within 4 s: ${JSON.stringify(await mock.requests()).slice(0, 800)}`);
    assert.ok(Date.now() - t0 < 6000);
  });

  it('upstream hanging before headers -> 504 JSON error after upstream_first_byte_timeout', async () => {
    const t0 = Date.now();
    const r = await chat(gw, D('hang=before_headers'), { model: faultModel() }, { timeoutMs: 20000 });
    const took = Date.now() - t0;
    assert.equal(r.status, 504, r.body);
    h.assertErrorShape(r);
    assert.ok(took >= 1500 && took < 8000, `answered after ${took} ms (timeout 2 s)`);
  });

  it('upstream hanging before headers on a stream request -> 504 JSON error', async () => {
    const s = await streamChat(gw, D('hang=before_headers'), { timeoutMs: 20000 }, faultModel());
    assert.equal(s.status, 504, showStream(s));
  });

  it('upstream hanging mid-stream -> final SSE error event and the stream ends', async () => {
    const t0 = Date.now();
    const s = await streamChat(gw, D('chunks=10,chunk_delay_ms=50,hang=mid_stream'), { timeoutMs: 20000 }, faultModel());
    const took = Date.now() - t0;
    assert.equal(s.status, 200, showStream(s));
    assert.ok(s.complete, `stream must end cleanly; ${showStream(s)}`);
    assert.ok(contentEvents(s).length >= 1, showStream(s));
    const errs = errorEvents(s);
    assert.ok(errs.length >= 1, `no SSE error event; ${showStream(s)}`);
    assert.ok(typeof errs[0].json.error.message === 'string', showStream(s));
    const lastContent = contentEvents(s).pop();
    assert.ok(errs[errs.length - 1].t >= lastContent.t, 'the error comes last');
    assert.ok(took < 9000, `stream ended after ${took} ms (upstream_idle_timeout 2 s)`);
  });

  it('upstream 500 -> error surfaced in the OpenAI shape', async () => {
    const r = await chat(gw, D('status=500'), { model: faultModel() });
    assert.ok([500, 502].includes(r.status), `status ${r.status}: ${r.body}`);
    h.assertErrorShape(r);
    assert.ok(r.headers['x-request-id']);
  });

  for (const mode of ['chunked', 'cl', 'dup_cl', 'status']) {
    it(`upstream response with broken framing (${mode}) -> 502 in the OpenAI shape`, async () => {
      const r = await chat(gw, D(`bad_framing=${mode}`), { model: faultModel() }, { timeoutMs: 20000 });
      assert.equal(r.status, 502, r.body);
      h.assertErrorShape(r);
    });
  }

  it('upstream stream with broken chunked framing -> 502 or a final SSE error event', async () => {
    const s = await streamChat(gw, D('chunks=4,bad_framing=chunked'), { timeoutMs: 20000 }, faultModel());
    if (s.status === 200) {
      assert.ok(errorEvents(s).length >= 1, `no SSE error event; ${showStream(s)}`);
      assert.ok(s.complete, showStream(s));
    } else {
      assert.equal(s.status, 502, showStream(s));
    }
  });

  it('an upstream 5xx storm: no retry amplification, the breaker opens and fails fast', async () => {
    const model = faultModel();
    await mock.clear();
    const statuses = [];
    for (let i = 0; i < 10; i++) {
      const r = await chat(gw, D('status=500', `storm ${i}`), { model });
      h.assertErrorShape(r);
      statuses.push(r.status);
    }
    const upstream = (await mock.requests()).filter((x) => x.path === '/v1/chat/completions').length;
    assert.ok(upstream <= 10, `retry amplification: ${upstream} upstream requests for 10 client requests`);
    assert.ok(upstream < 10, `breaker never opened: all 10 requests reached the upstream (statuses ${statuses})`);
    assert.ok(statuses.every((st) => st >= 500), `statuses ${statuses}`);
    const t0 = Date.now();
    const r = await chat(gw, D('status=500', 'after the storm'), { model });
    assert.ok(r.status === 503 || r.status === 502, `status ${r.status}`);
    assert.ok(Date.now() - t0 < 500, 'fails fast while open');
  });

  it('GET /v1/models lists the configured models', async () => {
    const r = await h.request(gw, { path: '/v1/models', auth: h.MASTER_KEY });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json.object, 'list');
    const ids = r.json.data.map((m) => m.id);
    const want = ['gpt-test', 'embed-test', ...Array.from({ length: FAULT_MODELS }, (_, i) => `fault-${i + 1}`)];
    assert.deepEqual([...ids].sort(), want.sort());
    for (const m of r.json.data) assert.equal(m.object, 'model');
  });

  it('embeddings round trip', async () => {
    await mock.clear();
    const r = await h.request(gw, { path: '/v1/embeddings', auth: h.MASTER_KEY, body: { model: 'embed-test', input: 'hello world' } });
    assert.equal(r.status, 200, r.body);
    assert.ok(Array.isArray(r.json.data) && Array.isArray(r.json.data[0].embedding), r.body);
    const reqs = await mock.requests();
    assert.equal(reqs.length, 1);
    assert.equal(reqs[0].path, '/v1/embeddings');
    const fwd = typeof reqs[0].body === 'string' ? JSON.parse(reqs[0].body) : reqs[0].body;
    assert.equal(fwd.model, 'embed-test');
    assert.equal(fwd.input, 'hello world');
  });

  it('unknown model -> 4xx error shape, nothing upstream', async () => {
    await mock.clear();
    const r = await h.request(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY, body: { model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] } });
    assert.ok([400, 403, 404].includes(r.status), `status ${r.status}: ${r.body}`);
    h.assertErrorShape(r);
    assert.deepEqual(await mock.requests(), []);
  });
});

describe('operations endpoints', () => {
  it('/healthz and /readyz answer 200 on both listeners', async () => {
    for (const tls of [true, false]) {
      assert.equal((await h.request(gw, { path: '/healthz', tls })).status, 200);
      const r = await h.request(gw, { path: '/readyz', tls });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.json.status, 'ready');
      // what is not configured is not checked
      assert.deepEqual(r.json.checks, { upstream: true, database: null, idp: null, usage_journal: null });
    }
  });
  it('/readyz turns 503 when no upstream is usable (every breaker open), naming the check', async () => {
    const [dead] = await h.freePorts(1);
    const g = await h.startGateway({ mock, configOverrides: (cfg) => {
      cfg.providers.dead = { type: 'openai', base_url: `http://127.0.0.1:${dead}/v1`, api_key: 'x' };
      cfg.models = [{ name: 'gpt-test', deployments: [{ provider: 'dead', model: 'gpt-test' }] }];
      return cfg;
    } });
    assert.equal((await h.request(g, { path: '/readyz', tls: false })).status, 200);
    for (let i = 0; i < 5; i++) {
      const r = await chat(g, 'nobody home');
      assert.ok(r.status === 502 || r.status === 503 || r.status === 504, `status ${r.status}: ${r.body}`);
    }
    const r = await h.request(g, { path: '/readyz', tls: false });
    assert.equal(r.status, 503, r.body);
    assert.equal(r.json.status, 'not_ready');
    assert.equal(r.json.checks.upstream, false);
    await g.stop();
  });
  it('/metrics is Prometheus text with a request counter that increases', async () => {
    const m1 = await h.request(gw, { path: '/metrics', tls: false });
    assert.equal(m1.status, 200);
    assert.match(m1.headers['content-type'] || '', /text\/plain/);
    assert.match(m1.body, /^# (HELP|TYPE) /m);
    const before = parseMetrics(m1.body);
    for (let i = 0; i < 3; i++) assert.equal((await chat(gw, 'count me')).status, 200);
    const grew = await h.waitFor(async () => {
      const after_ = parseMetrics((await h.request(gw, { path: '/metrics', tls: false })).body);
      return [...after_.keys()].filter((k) => /request/.test(k) && /_total$/.test(k) &&
        after_.get(k) - (before.get(k) || 0) >= 3);
    }, 3000, 100);
    assert.ok(grew && grew.length, `no *request*_total counter grew by 3:\n${m1.body.slice(0, 2000)}`);
  });
});

describe('access log', () => {
  it('one JSON line per request, without prompt text or credentials', async () => {
    const secret = `PROMPT-SECRET-${Math.random().toString(36).slice(2)}`;
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const r = await chat(gw, `${secret} number ${i}`);
      assert.equal(r.status, 200);
      ids.push(r.headers['x-request-id']);
    }
    const s = await streamChat(gw, D('chunks=2', secret));
    assert.equal(s.status, 200);
    ids.push(s.headers['x-request-id']);
    const r401 = await h.request(gw, { path: '/v1/chat/completions', headers: { Authorization: 'Bearer sk-wrong-credential-123' }, body: h.chatBody(secret) });
    assert.equal(r401.status, 401);
    ids.push(r401.headers['x-request-id']);

    const all = await h.waitFor(() => ids.every((id) => gw.accessLog.some((l) => JSON.stringify(l).includes(id))), 5000, 100);
    assert.ok(all, `missing access log lines; have ${gw.accessLog.length}: ${JSON.stringify(gw.accessLog.slice(-5))}`);
    for (const id of ids) {
      const lines = gw.accessLog.filter((l) => JSON.stringify(l).includes(id));
      assert.equal(lines.length, 1, `request ${id} logged ${lines.length} times`);
    }
    assert.deepEqual(gw.stdoutOther, [], 'every stdout line is JSON');
    const text = gw.stdout + gw.stderr;
    for (const bad of [secret, h.MASTER_KEY, h.UPSTREAM_KEY, 'sk-wrong-credential-123']) {
      assert.ok(!text.includes(bad), `"${bad}" appears in the logs`);
    }
  });
});

describe('reload and drain', () => {
  it('SIGHUP with an added model makes it routable without dropping an in-flight stream', async () => {
    const g = await h.startGateway({ mock });
    const before_ = await h.request(g, { path: '/v1/chat/completions', auth: h.MASTER_KEY, body: { model: 'gpt-new', messages: [{ role: 'user', content: 'x' }] } });
    assert.ok(before_.status >= 400 && before_.status < 500, `gpt-new before reload: ${before_.status}`);

    let reloaded = false;
    const streaming = streamChat(g, D('chunks=10,chunk_delay_ms=200'), {
      timeoutMs: 20000,
      onEvent: () => {
        if (reloaded) return;
        reloaded = true;
        g.reload({
          configOverrides: (cfg) => {
            cfg.models.push({ name: 'gpt-new', deployments: [{ provider: 'mock', model: 'gpt-new-upstream' }] });
            return cfg;
          },
        });
      },
    });
    const routable = await h.waitFor(async () => {
      const r = await h.request(g, { path: '/v1/chat/completions', auth: h.MASTER_KEY, body: { model: 'gpt-new', messages: [{ role: 'user', content: 'x' }] } });
      return r.status === 200;
    }, 8000, 200);
    assert.ok(routable, `gpt-new not routable after SIGHUP; stderr:\n${g.stderr.slice(-2000)}`);
    const s = await streaming;
    assert.ok(reloaded);
    assert.equal(s.status, 200);
    assert.ok(s.complete, `in-flight stream dropped by reload; ${showStream(s)}`);
    assert.equal(contentEvents(s).length, 10, showStream(s));
    assert.equal(s.events[s.events.length - 1].data, '[DONE]');
    assert.equal((await chat(g, 'old model still there')).status, 200);
    const models = await h.request(g, { path: '/v1/models', auth: h.MASTER_KEY });
    assert.ok(models.json.data.some((m) => m.id === 'gpt-new'));
    await g.stop();
  });

  it('SIGHUP reloads the TLS certificate: new connections get the new one, an open connection keeps working', async () => {
    const tls = require('node:tls');
    const g = await h.startGateway({ mock });
    const fingerprint = () => new Promise((resolve, reject) => {
      const sock = tls.connect({ host: '127.0.0.1', port: g.httpsPort, servername: 'localhost', rejectUnauthorized: false }, () => {
        const fp = sock.getPeerCertificate().fingerprint256;
        sock.end();
        resolve(fp);
      });
      sock.on('error', reject);
    });
    const oldFp = await fingerprint();
    // A keep-alive TLS connection opened before the reload.
    const open = tls.connect({ host: '127.0.0.1', port: g.httpsPort, servername: 'localhost', ca: g.ctx.certs.caPem });
    await new Promise((resolve, reject) => { open.once('secureConnect', resolve); open.once('error', reject); });
    const fresh = h.makeCerts();
    g.reload({ configOverrides: (cfg) => { cfg.listen[0].tls = { cert: fresh.cert, key: fresh.key }; return cfg; } });
    const changed = await h.waitFor(async () => (await fingerprint()) !== oldFp, 8000, 200);
    assert.ok(changed, `the certificate did not change after SIGHUP; stderr:\n${g.stderr.slice(-1500)}`);
    // the new certificate verifies against the new CA
    const r = await new Promise((resolve, reject) => {
      const sock = tls.connect({ host: '127.0.0.1', port: g.httpsPort, servername: 'localhost', ca: fresh.caPem }, () => {
        resolve(sock.authorized);
        sock.end();
      });
      sock.on('error', reject);
    });
    assert.equal(r, true);
    // the connection from before the reload still answers
    const reply = await new Promise((resolve, reject) => {
      let data = '';
      open.on('data', (d) => { data += d; if (data.includes('\r\n\r\n')) resolve(data); });
      open.on('error', reject);
      open.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    });
    assert.match(reply, /^HTTP\/1\.1 200 /);
    open.destroy();
    await g.stop();
  });

  it('SIGHUP with an invalid config keeps serving the old one', async () => {
    const g = await h.startGateway({ mock });
    g.reload({ yaml: 'listen: [\n  this is not yaml' });
    await h.sleep(1000);
    assert.equal(g.exited(), null, 'gateway must not exit on a bad reload');
    assert.equal((await chat(g, 'still fine')).status, 200);
    await g.stop();
  });

  it('SIGTERM during an in-flight stream: the stream completes, then exit 0', async () => {
    const g = await h.startGateway({ mock });
    let sent = false;
    const s = await streamChat(g, D('chunks=8,chunk_delay_ms=250'), {
      timeoutMs: 20000,
      onEvent: () => { if (!sent) { sent = true; g.terminate(); } },
    });
    assert.ok(sent);
    assert.equal(s.status, 200);
    assert.ok(s.complete, `stream cut by SIGTERM; ${showStream(s)}`);
    assert.equal(contentEvents(s).length, 8, showStream(s));
    assert.equal(s.events[s.events.length - 1].data, '[DONE]');
    const ex = await g.stop({ timeoutMs: 15000 });
    assert.equal(ex.code, 0);
  });
});

describe('upstream clients (built-in HTTP/1.1 and libcurl)', () => {
  it('upstream_client: curl on a plain-HTTP provider still serves plain and streamed completions', async () => {
    const g = await h.startGateway({
      mock,
      configOverrides: (cfg, ctx) => {
        cfg.providers.mockcurl = { type: 'openai', base_url: `${ctx.mockUrl}/v1`, api_key: h.UPSTREAM_KEY, upstream_client: 'curl' };
        cfg.models.push({ name: 'gpt-curl', deployments: [{ provider: 'mockcurl', model: 'gpt-curl' }] });
        return cfg;
      },
    });
    try {
      await mock.clear();
      const r = await chat(g, 'via curl', { model: 'gpt-curl' });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.json.object, 'chat.completion', r.body);
      const s = await streamChat(g, D('chunks=4,chunk_delay_ms=50'), {}, 'gpt-curl');
      assert.equal(s.status, 200, showStream(s));
      assert.ok(s.complete, showStream(s));
      assert.equal(contentEvents(s).length, 4, showStream(s));
      assert.equal(s.events[s.events.length - 1].data, '[DONE]', showStream(s));
      assert.equal(errorEvents(s).length, 0, showStream(s));
      const reqs = await mock.requests();
      assert.equal(reqs.length, 2);
      assert.ok(reqs.every((q) => (typeof q.body === 'string' ? JSON.parse(q.body) : q.body).model === 'gpt-curl'));
    } finally {
      await g.stop();
    }
  });

  it('a client that stops reading pauses the upstream stream (backpressure), and nothing is lost when it resumes', async () => {
    const http = require('node:http');
    const N = 16000000;
    const body = JSON.stringify(h.chatBody(D(`big=${N},chunks=1600`), { stream: true }));
    const res = await new Promise((resolve, reject) => {
      const rq = http.request({ host: '127.0.0.1', port: gw.httpPort, method: 'POST', path: '/v1/chat/completions', agent: false,
        headers: { authorization: `Bearer ${h.MASTER_KEY}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, resolve);
      rq.on('error', reject);
      rq.end(body);
    });
    assert.equal(res.statusCode, 200);
    res.pause();
    // Wait until the mock's writes block: the gateway stopped reading the upstream.
    let blocked = 0;
    for (let i = 0; i < 50 && blocked === 0; i++) {
      await h.sleep(100);
      const st = await new Promise((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: mock.port, path: '/__mock/stats', agent: false }, (r) => {
          let b = ''; r.setEncoding('utf8'); r.on('data', (d) => { b += d; }); r.on('end', () => resolve(JSON.parse(b)));
        }).on('error', reject);
      });
      blocked = st.blocked_writes;
    }
    assert.ok(blocked > 0, 'the upstream was back-pressured');
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (d) => { text += d; });
    res.resume();
    await new Promise((resolve) => res.on('end', resolve));
    let chars = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith('data: {')) continue;
      const j = JSON.parse(line.slice(6));
      assert.equal(j.error, undefined, line.slice(0, 300));
      chars += (j.choices?.[0]?.delta?.content || '').length;
    }
    assert.equal(chars, N);
    assert.ok(text.endsWith('data: [DONE]\n\n'), text.slice(-200));
  });

  // A tiny upstream that counts its connections and can drop them.
  async function tinyUpstream() {
    const http = require('node:http');
    const t = { connections: 0, requests: 0, dropReused: false, dropped: 0, socks: new Set() };
    t.srv = http.createServer((req, res) => {
      t.requests++;
      const sock = req.socket;
      sock.mgServed = (sock.mgServed || 0) + 1;
      if (t.dropReused && sock.mgServed > 1) {
        t.dropReused = false;
        t.dropped++;
        sock.destroy();   // as if it had closed just before the request arrived
        return;
      }
      req.resume();
      req.on('end', () => {
        const body = JSON.stringify({
          id: `chatcmpl-${t.requests}`, object: 'chat.completion', created: 0, model: 'tiny',
          choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      });
    });
    t.srv.keepAliveTimeout = 60000;
    t.srv.on('connection', (s) => { t.connections++; t.socks.add(s); s.on('close', () => t.socks.delete(s)); });
    await new Promise((r) => t.srv.listen(0, '127.0.0.1', r));
    t.port = t.srv.address().port;
    t.stop = async () => { t.srv.closeAllConnections(); await new Promise((r) => t.srv.close(r)); };
    return t;
  }

  for (const client of ['auto', 'curl']) {
    it(`upstream_client ${client}: connections are reused; a server-side close of an idle or a reused connection does not fail the next request`, async () => {
      const t = await tinyUpstream();
      const g = await h.startGateway({
        mock,
        configOverrides: (cfg) => {
          cfg.workers = 1;   // one pool, so the connection count is exact
          cfg.providers.tiny = { type: 'openai', base_url: `http://127.0.0.1:${t.port}/v1`, api_key: h.UPSTREAM_KEY, upstream_client: client };
          cfg.models.push({ name: 'tiny', deployments: [{ provider: 'tiny', model: 'tiny' }] });
          return cfg;
        },
      });
      try {
        for (let i = 0; i < 5; i++) {
          const r = await chat(g, `n${i}`, { model: 'tiny' });
          assert.equal(r.status, 200, r.body);
        }
        assert.equal(t.requests, 5);
        assert.equal(t.connections, 1, 'five sequential requests share one upstream connection');

        // The server half-closes its idle connection. The built-in client
        // watches idle connections and closes its side at once; libcurl
        // notices only when it next picks the connection (this is how the
        // test tells the two clients apart).
        const [idle] = [...t.socks];
        let closedAt = null;
        const t0 = Date.now();
        idle.on('close', () => { closedAt = Date.now() - t0; });
        idle.end();
        await h.sleep(500);
        if (client === 'auto') assert.ok(closedAt !== null && closedAt < 500, `gateway closed its side after ${closedAt} ms`);
        else assert.equal(closedAt, null, 'libcurl does not watch idle connections');
        const r1 = await chat(g, 'after idle close', { model: 'tiny' });
        assert.equal(r1.status, 200, r1.body);
        assert.equal(t.connections, 2);

        t.dropReused = true;   // the next request on a reused connection is dropped unanswered
        const r2 = await chat(g, 'after a silent close', { model: 'tiny' });
        assert.equal(r2.status, 200, r2.body);
        assert.equal(t.dropped, 1, 'the reused connection was tried first');
        assert.equal(t.connections, 3, 'then exactly one fresh connection');
        const r3 = await chat(g, 'reuses again', { model: 'tiny' });
        assert.equal(r3.status, 200, r3.body);
        assert.equal(t.connections, 3);
      } finally {
        await g.stop();
        await t.stop();
      }
    });
  }
});

it('the gateway exits 0 on SIGTERM with no sanitizer report', async () => {
  await gw.stop();
});
