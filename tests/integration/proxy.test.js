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

it('the gateway exits 0 on SIGTERM with no sanitizer report', async () => {
  await gw.stop();
});
