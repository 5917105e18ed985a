// modelgate — every provider type behind the gateway, through both client
// surfaces: OpenAI-SDK-shaped requests (/v1/chat/completions) and
// Anthropic-SDK-shaped requests (/v1/messages), plain and streamed, against
// the mock upstream speaking each provider's wire format. Asserts on what
// the client gets, on what the mock received (path, credential header, body
// shape), and on the token counts the gateway recorded.
//
// The fault matrix runs once per provider type: upstream 500, hangs before
// the headers and mid-stream, streams without usage, client disconnects,
// retries onto a second deployment, fallback models and the circuit breaker.
// Every fault test has its own model ("<type>-<fault>", one deployment) so
// the breaker state one test leaves behind never reaches another.
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

let mock;
let gw;
let deadPort;     // a loopback port nothing listens on (connection refused)

// The Bedrock deployment's model id carries a mock directive, so the mock
// checks the SigV4 signature of every Bedrock request with the configured
// secret (and answers 403 InvalidSignatureException when it is wrong).
const BEDROCK_SECRET = 'secret';
const BEDROCK_UP = `mock:sigv4_secret=${BEDROCK_SECRET}`;

const TYPES = {
  openai: {
    provider: (u) => ({ type: 'openai', base_url: `${u}/v1`, api_key: 'sk-openai-up' }),
    path: /^\/v1\/chat\/completions$/,
    auth: (hd) => hd.authorization === 'Bearer sk-openai-up',
  },
  azure: {
    provider: (u) => ({ type: 'azure', base_url: u, api_key: 'az-up', api_version: '2024-06-01' }),
    path: /^\/openai\/deployments\/[^/]+\/chat\/completions$/,
    auth: (hd) => hd['api-key'] === 'az-up' && !hd.authorization,
  },
  anthropic: {
    provider: (u) => ({ type: 'anthropic', base_url: u, api_key: 'ant-up' }),
    path: /^\/v1\/messages$/,
    auth: (hd) => hd['x-api-key'] === 'ant-up' && typeof hd['anthropic-version'] === 'string',
  },
  gemini: {
    provider: (u) => ({ type: 'gemini', base_url: u, api_key: 'gem-up' }),
    path: /^\/v1beta\/models\/[^/:]+:(generateContent|streamGenerateContent)$/,
    auth: (hd) => hd['x-goog-api-key'] === 'gem-up' && !hd.authorization,
  },
  ollama: {
    provider: (u) => ({ type: 'ollama', base_url: u }),
    path: /^\/api\/chat$/,
    auth: (hd) => !hd.authorization,
  },
  bedrock: {
    provider: (u) => ({
      type: 'bedrock', base_url: u, region: 'us-east-1',
      aws_access_key_id: 'AKIDEXAMPLE', aws_secret_access_key: BEDROCK_SECRET,
    }),
    upModel: BEDROCK_UP,
    path: /^\/model\/[^/]+\/(converse|converse-stream)$/,
    auth: (hd, rec) =>
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/us-east-1\/bedrock\/aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$/.test(hd.authorization || '') &&
      /^\d{8}T\d{6}Z$/.test(hd['x-amz-date'] || '') && /^[0-9a-f]{64}$/.test(hd['x-amz-content-sha256'] || '') &&
      rec.sigv4 && rec.sigv4.signed_headers.includes('host') && rec.sigv4.signed_headers.includes('x-amz-date') &&
      rec.sigv4.valid === true && !hd['x-api-key'],
  },
};
const upModel = (type, directives) => {
  const base = TYPES[type].upModel;
  if (!directives) return base || `up-${type}`;
  return base ? `${base},${directives}` : `mock:${directives}`;
};

// One model per fault test and type.
const FAULTS = ['e500', 'e500a', 'hang', 'hangs', 'mid', 'mida', 'nousage', 'abort', 'breaker'];

const withProviders = (cfg, ctx) => {
  for (const [t, spec] of Object.entries(TYPES)) {
    cfg.providers[`p-${t}`] = spec.provider(ctx.mockUrl);
    cfg.providers[`dead-${t}`] = spec.provider(`http://127.0.0.1:${deadPort}`);
    cfg.models.push({ name: `m-${t}`, deployments: [{ provider: `p-${t}`, model: upModel(t) }] });
    for (const f of FAULTS) cfg.models.push({ name: `${t}-${f}`, deployments: [{ provider: `p-${t}`, model: upModel(t) }] });
    // The dead deployment is almost always tried first; its connection
    // error is retried on the live one.
    cfg.models.push({
      name: `${t}-fb-deps`,
      deployments: [{ provider: `dead-${t}`, model: upModel(t), weight: 10000 }, { provider: `p-${t}`, model: upModel(t), weight: 1 }],
    });
    // Every attempt on the only deployment gets 503; the fallback model serves.
    cfg.models.push({
      name: `${t}-fb-chain`,
      deployments: [{ provider: `p-${t}`, model: upModel(t, 'status=503') }],
      fallbacks: [`m-${t}`],
    });
  }
  // Bedrock credentials other than plain IAM keys, and a wrong secret.
  const br = (extra) => ({ type: 'bedrock', base_url: ctx.mockUrl, region: 'eu-west-3', ...extra });
  cfg.providers['bedrock-key'] = br({ api_key: 'br-api-key' });
  cfg.providers['bedrock-sts'] = br({ aws_access_key_id: 'ASIAEXAMPLE', aws_secret_access_key: BEDROCK_SECRET, aws_session_token: 'sts-token/+=' });
  cfg.providers['bedrock-wrong'] = br({ aws_access_key_id: 'AKIDEXAMPLE', aws_secret_access_key: 'not-the-secret' });
  cfg.models.push(
    { name: 'bedrock-bearer', deployments: [{ provider: 'bedrock-key', model: 'mock:require_key=br-api-key' }] },
    { name: 'bedrock-session', deployments: [{ provider: 'bedrock-sts', model: BEDROCK_UP }] },
    { name: 'bedrock-badsig', deployments: [{ provider: 'bedrock-wrong', model: BEDROCK_UP }] },
  );
  return cfg;
};
const startGw = () => h.startGateway({ mock, configOverrides: withProviders });

before(async () => {
  [deadPort] = await h.freePorts(1);
  mock = await h.startMock();
  gw = await startGw();
});
afterEach(h.crashGuard(() => gw, async () => { gw = await startGw(); }));
after(h.cleanup);

const mockRequests = () => mock.requests();
const clearMock = () => mock.clear();
function lastAccess(model, g = gw) {
  const lines = g.accessLog.filter((l) => l.model === model);
  return lines[lines.length - 1];
}
// A word unique to one test, to find its requests among the mock's records.
let nonceSeq = 0;
const nonce = (what) => `${what}${++nonceSeq}x${process.pid}`;
const recordsWith = async (word) => (await mockRequests()).filter((r) => r.body.includes(word));

const anthropicBody = (model, extra = {}) => ({
  model, max_tokens: 64, system: 'be brief',
  messages: [{ role: 'user', content: 'hello from the anthropic sdk' }], ...extra,
});
const messages = (model, extra = {}, o = {}) => ({
  path: '/v1/messages', headers: { 'x-api-key': h.MASTER_KEY, 'anthropic-version': '2023-06-01' },
  body: anthropicBody(model, extra), ...o,
});
const chat = (g, model, content, extra = {}, o = {}) =>
  h.request(g, { path: '/v1/chat/completions', auth: h.MASTER_KEY, body: h.chatBody(content, { model, ...extra }), ...o });
const streamChat = (g, model, content, o = {}) =>
  h.stream(g, { path: '/v1/chat/completions', auth: h.MASTER_KEY, body: h.chatBody(content, { model, stream: true }), ...o });

const contentEvents = (s) => s.events.filter((e) => typeof e.json?.choices?.[0]?.delta?.content === 'string' &&
  e.json.choices[0].delta.content !== '');
const errorEvents = (s) => s.events.filter((e) => e.json && e.json.error);
function showStream(s) {
  return `status ${s.status} complete=${s.complete} error=${s.error} events:\n` +
    s.events.map((e) => `  +${e.t}ms ${e.event ? `[${e.event}] ` : ''}${e.data.slice(0, 200)}`).join('\n');
}
function assertAnthropicError(r, status) {
  assert.equal(r.status, status, r.body);
  assert.equal(r.json?.type, 'error', r.body);
  assert.equal(typeof r.json.error?.type, 'string', r.body);
  assert.equal(typeof r.json.error?.message, 'string', r.body);
}

for (const [type, spec] of Object.entries(TYPES)) {
  describe(`provider type ${type}`, () => {
    const model = `m-${type}`;

    it('OpenAI-shaped chat, plain: reply, upstream wire format, usage', async () => {
      await clearMock();
      const r = await h.request(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY,
        body: h.chatBody('hello there from the openai sdk', { model }) });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.json.object, 'chat.completion');
      assert.match(r.json.choices[0].message.content, /mock reply to: hello there/);
      assert.equal(r.json.choices[0].message.role, 'assistant');
      assert.ok(r.json.usage.prompt_tokens > 0 && r.json.usage.completion_tokens > 0);
      const recs = await mockRequests();
      assert.equal(recs.length, 1);
      assert.match(recs[0].path, spec.path);
      assert.ok(spec.auth(recs[0].headers, recs[0]), `credential headers for ${type}: ${JSON.stringify(recs[0].headers)} ${JSON.stringify(recs[0].sigv4)}`);
      assert.ok(!JSON.stringify(recs[0].headers).includes(h.MASTER_KEY), 'the client credential never goes upstream');
      await h.waitFor(() => lastAccess(model));
      const a = lastAccess(model);
      assert.equal(a.status, 200);
      assert.equal(a.prompt_tokens, r.json.usage.prompt_tokens);
      assert.equal(a.completion_tokens, r.json.usage.completion_tokens);
      assert.ok(!a.estimated, 'usage came from the provider');
    });

    it('OpenAI-shaped chat, streamed: chunks, [DONE], usage only when asked', async () => {
      await clearMock();
      const s = await h.stream(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY,
        body: h.chatBody('[[mock:chunks=4]] stream me please', { model, stream: true }) });
      assert.equal(s.status, 200);
      assert.ok(s.complete, 'stream ended cleanly');
      const text = s.events.filter((e) => e.json?.choices?.[0]?.delta?.content)
        .map((e) => e.json.choices[0].delta.content).join('');
      assert.match(text, /mock reply to: /);
      assert.equal(s.events[s.events.length - 1].data, '[DONE]');
      assert.ok(!s.events.some((e) => e.json?.usage && e.json.choices?.length === 0), 'no usage chunk unless asked');
      const recs = await mockRequests();
      assert.equal(recs.length, 1);
      assert.match(recs[0].path, spec.path);
      assert.ok(spec.auth(recs[0].headers, recs[0]), `stream credential headers for ${type}: ${JSON.stringify(recs[0].headers)}`);

      const s2 = await h.stream(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY,
        body: h.chatBody('stream me with usage', { model, stream: true, stream_options: { include_usage: true } }) });
      const usage = s2.events.find((e) => e.json?.usage && e.json.choices?.length === 0);
      assert.ok(usage, `usage chunk present for ${type}`);
      assert.ok(usage.json.usage.prompt_tokens > 0 && usage.json.usage.completion_tokens > 0);
      await h.waitFor(() => gw.accessLog.filter((l) => l.model === model && l.stream).length >= 2);
      const a = gw.accessLog.filter((l) => l.model === model && l.stream).pop();
      assert.equal(a.completion_tokens, usage.json.usage.completion_tokens);
      assert.ok(!a.estimated);
    });

    it('Anthropic-shaped messages, plain and streamed', async () => {
      await clearMock();
      const r = await h.request(gw, messages(model));
      assert.equal(r.status, 200, r.body);
      assert.equal(r.json.type, 'message');
      assert.equal(r.json.role, 'assistant');
      assert.equal(r.json.content[0].type, 'text');
      assert.match(r.json.content[0].text, /mock reply to: hello from the anthropic sdk/);
      assert.ok(r.json.usage.input_tokens > 0 && r.json.usage.output_tokens > 0);

      const s = await h.stream(gw, messages(model, { stream: true }));
      assert.equal(s.status, 200);
      const names = s.events.map((e) => e.event);
      assert.equal(names[0], 'message_start');
      assert.ok(names.includes('content_block_delta'));
      assert.equal(names[names.length - 1], 'message_stop');
      const delta = s.events.find((e) => e.event === 'message_delta');
      assert.ok(delta.json.usage.output_tokens > 0);
      const text = s.events.filter((e) => e.event === 'content_block_delta').map((e) => e.json.delta.text).join('');
      assert.match(text, /mock reply to: hello from the anthropic sdk/);

      // The Anthropic client's x-api-key is the gateway credential: it must
      // not reach the provider (only the provider's own key may).
      const recs = await mockRequests();
      assert.equal(recs.length, 2);
      for (const rec of recs) {
        assert.match(rec.path, spec.path);
        assert.ok(spec.auth(rec.headers, rec), `credential headers for ${type}: ${JSON.stringify(rec.headers)}`);
        assert.ok(!JSON.stringify(rec.header_list).includes(h.MASTER_KEY), 'the client credential never goes upstream');
      }
    });

    it('upstream errors come back in the client surface shape', async () => {
      const r = await h.request(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY,
        body: h.chatBody('[[mock:status=400]] bad', { model }) });
      assert.equal(r.status, 400);
      h.assertErrorShape(r);
      const a = await h.request(gw, messages(model, { messages: [{ role: 'user', content: '[[mock:status=400]] bad' }] }));
      assert.equal(a.status, 400);
      assert.equal(a.json.type, 'error');
      assert.equal(typeof a.json.error.message, 'string');
    });

    /* ------------------------------------------------------------- faults */

    it('upstream 500 -> 502 in the OpenAI error shape', async () => {
      const word = nonce('e500');
      const r = await chat(gw, `${type}-e500`, `[[mock:status=500]] ${word}`);
      assert.equal(r.status, 502, r.body);
      h.assertErrorShape(r);
      assert.ok(r.headers['x-request-id']);
      const recs = await recordsWith(word);
      assert.ok(recs.length >= 1 && recs.length <= 3, `${recs.length} upstream attempts (at most 1 + 2 retries)`);
      assert.ok(recs.every((x) => x.status === 500));
      await h.waitFor(() => lastAccess(`${type}-e500`));
      assert.equal(lastAccess(`${type}-e500`).status, 502);
    });

    it('upstream 500 -> 502 in the Anthropic error shape', async () => {
      const r = await h.request(gw, messages(`${type}-e500a`, { messages: [{ role: 'user', content: '[[mock:status=500]] boom' }] }));
      assertAnthropicError(r, 502);
      assert.equal(r.json.error.type, 'api_error', r.body);
    });

    it('upstream hangs before the headers -> 504 after upstream_first_byte_timeout (2 s)', async () => {
      const t0 = Date.now();
      const r = await chat(gw, `${type}-hang`, '[[mock:hang=before_headers]] wait', {}, { timeoutMs: 30000 });
      const took = Date.now() - t0;
      assert.equal(r.status, 504, r.body);
      h.assertErrorShape(r);
      assert.ok(took >= 1500 && took < 15000, `answered after ${took} ms (first-byte timeout 2 s)`);
    });

    it('upstream hangs before the headers of a stream -> 504', async () => {
      const t0 = Date.now();
      const s = await streamChat(gw, `${type}-hangs`, '[[mock:hang=before_headers]] wait', { timeoutMs: 30000 });
      const took = Date.now() - t0;
      assert.equal(s.status, 504, showStream(s));
      assert.ok(took >= 1500 && took < 15000, `answered after ${took} ms (first-byte timeout 2 s)`);
      assert.equal(contentEvents(s).length, 0, showStream(s));
    });

    it('upstream hangs mid-stream -> a final error event, then the stream ends', async () => {
      const s = await streamChat(gw, `${type}-mid`, '[[mock:chunks=6,hang=mid_stream]] half of it', { timeoutMs: 30000 });
      assert.equal(s.status, 200, showStream(s));
      assert.ok(s.complete, `the stream must end; ${showStream(s)}`);
      const content = contentEvents(s);
      assert.ok(content.length >= 1, `the first half arrived; ${showStream(s)}`);
      assert.match(content.map((e) => e.json.choices[0].delta.content).join(''), /^mock reply/, showStream(s));
      const errs = errorEvents(s);
      assert.equal(errs.length, 1, `one error event; ${showStream(s)}`);
      assert.equal(typeof errs[0].json.error.message, 'string');
      assert.equal(s.events.indexOf(errs[0]), s.events.length - 1, `the error event comes last; ${showStream(s)}`);
      assert.ok(!s.events.some((e) => e.data === '[DONE]'), `a broken stream does not say [DONE]; ${showStream(s)}`);
    });

    it('upstream hangs mid-stream, Anthropic client -> a final "error" event', async () => {
      const s = await h.stream(gw, messages(`${type}-mida`, {
        stream: true, messages: [{ role: 'user', content: '[[mock:chunks=6,hang=mid_stream]] half of it' }],
      }, { timeoutMs: 30000 }));
      assert.equal(s.status, 200, showStream(s));
      assert.ok(s.complete, `the stream must end; ${showStream(s)}`);
      assert.ok(s.events.some((e) => e.event === 'content_block_delta'), showStream(s));
      const last = s.events[s.events.length - 1];
      assert.equal(last.event, 'error', showStream(s));
      assert.equal(last.json.type, 'error');
      assert.equal(typeof last.json.error.message, 'string');
      assert.ok(!s.events.some((e) => e.event === 'message_stop'), showStream(s));
    });

    it('a stream without usage from the provider is billed with estimated counts', async () => {
      const m = `${type}-nousage`;
      const s = await streamChat(gw, m, '[[mock:no_usage,chunks=3]] count these words for me please');
      assert.equal(s.status, 200, showStream(s));
      assert.ok(s.complete, showStream(s));
      assert.equal(s.events[s.events.length - 1].data, '[DONE]', showStream(s));
      assert.equal(errorEvents(s).length, 0, showStream(s));
      const a = await h.waitFor(() => lastAccess(m));
      assert.ok(a, 'access log line');
      assert.equal(a.stream, true);
      assert.equal(a.estimated, true, JSON.stringify(a));
      assert.ok(a.prompt_tokens > 0 && a.completion_tokens > 0, JSON.stringify(a));
    });

    it('a plain reply without usage is billed with estimated counts', async () => {
      const m = `${type}-nousage`;
      const n = gw.accessLog.filter((l) => l.model === m).length;
      const r = await chat(gw, m, '[[mock:no_usage]] count these words for me please');
      assert.equal(r.status, 200, r.body);
      await h.waitFor(() => gw.accessLog.filter((l) => l.model === m).length > n);
      const a = lastAccess(m);
      assert.equal(a.stream, false, JSON.stringify(a));
      assert.equal(a.estimated, true, JSON.stringify(a));
      assert.ok(a.prompt_tokens > 0 && a.completion_tokens > 0, JSON.stringify(a));
    });

    it('a client disconnect mid-stream cancels the upstream request', async () => {
      const m = `${type}-abort`;
      const word = nonce('abort');
      // 40 pieces 200 ms apart: the upstream stream would run for ~8 s.
      const s = await streamChat(gw, m, `[[mock:chunks=40,chunk_delay_ms=200]] ${word} ${'x'.repeat(40)}`, {
        onEvent: (ev, ctl) => { if (contentEvents({ events: [ev] }).length) ctl.abort(); },
      });
      assert.ok(s.aborted, showStream(s));
      const rec = await h.waitFor(async () => (await recordsWith(word)).find((x) => x.outcome !== 'pending'), 6000, 100);
      assert.ok(rec, 'the upstream request ended within 6 s (the whole stream takes ~8 s)');
      assert.equal(rec.outcome, 'client_aborted', JSON.stringify(rec).slice(0, 600));
      const a = await h.waitFor(() => lastAccess(m), 5000);
      assert.ok(a, 'access log line');
      assert.equal(a.client_gone, true, JSON.stringify(a));
    });

    it('after 5 consecutive failures the breaker opens: 503 upstream_unavailable, nothing upstream', async () => {
      const m = `${type}-breaker`;
      const word = nonce('breaker');
      const statuses = [];
      // Retries may spend several attempts per client request; the breaker
      // counts attempts, so stop once 5 have reached the upstream.
      for (let i = 0; i < 5 && (await recordsWith(word)).length < 5; i++) {
        const r = await chat(gw, m, `[[mock:status=500]] ${word} ${i}`);
        h.assertErrorShape(r);
        statuses.push(r.status);
      }
      assert.ok(statuses.every((st) => st === 502 || st === 503), `statuses ${statuses}`);
      assert.equal((await recordsWith(word)).length, 5, 'exactly 5 failed attempts reached the upstream');
      const t0 = Date.now();
      const r = await chat(gw, m, `${word} after the failures`);
      assert.equal(r.status, 503, r.body);
      h.assertErrorShape(r);
      assert.equal(r.json.error.code, 'upstream_unavailable', r.body);
      assert.ok(Number(r.headers['retry-after']) > 0, `Retry-After: ${r.headers['retry-after']}`);
      assert.ok(Date.now() - t0 < 2000, 'answered at once');
      assert.equal((await recordsWith(word)).length, 5, 'the request after the breaker opened did not reach the upstream');
    });

    describe('retries and fallbacks (own gateway: a fresh retry budget)', () => {
      let g;
      before(async () => { g = await startGw(); });
      after(async () => { if (g) await g.stop(); });

      it('a deployment that cannot be reached -> retried on the model\'s other deployment', async () => {
        const m = `${type}-fb-deps`;
        const word = nonce('deps');
        for (let i = 0; i < 2; i++) {
          const r = await chat(g, m, `${word} try ${i}`);
          assert.equal(r.status, 200, r.body);
          assert.match(r.json.choices[0].message.content, /mock reply to: /);
        }
        const s = await streamChat(g, m, `${word} stream`);
        assert.equal(s.status, 200, showStream(s));
        assert.ok(s.complete && s.events[s.events.length - 1].data === '[DONE]', showStream(s));
        assert.equal((await recordsWith(word)).length, 3, 'one upstream request per client request');
        await h.waitFor(() => g.accessLog.filter((l) => l.model === m).length >= 3);
        for (const a of g.accessLog.filter((l) => l.model === m)) {
          assert.equal(a.status, 200, JSON.stringify(a));
          assert.equal(a.provider, `p-${type}`, `served by the live deployment: ${JSON.stringify(a)}`);
        }
      });

      it('a model whose deployment answers 503 -> its fallback model serves', async () => {
        const m = `${type}-fb-chain`;
        const word = nonce('chain');
        const r = await chat(g, m, `${word} please`);
        assert.equal(r.status, 200, r.body);
        assert.match(r.json.choices[0].message.content, /mock reply to: /);
        const recs = await recordsWith(word);
        const failed = recs.filter((x) => x.status === 503);
        const served = recs.filter((x) => x.status === 200);
        assert.ok(failed.length >= 1 && failed.length <= 3, `${failed.length} failed attempts`);
        assert.equal(served.length, 1, JSON.stringify(recs.map((x) => [x.path, x.status])));
        await h.waitFor(() => g.accessLog.some((l) => l.model === m));
        const a = g.accessLog.filter((l) => l.model === m).pop();
        assert.equal(a.status, 200, JSON.stringify(a));
        assert.equal(a.upstream_model, upModel(type), `the fallback's deployment served: ${JSON.stringify(a)}`);

        const s = await h.stream(g, messages(m, { stream: true }));
        assert.equal(s.status, 200, showStream(s));
        assert.equal(s.events[s.events.length - 1].event, 'message_stop', showStream(s));
      });
    });
  });
}

describe('bedrock specifics', () => {
  it('Converse request body, path encoding and accept headers', async () => {
    await clearMock();
    const r = await h.request(gw, messages('m-bedrock', { temperature: 0.5, stop_sequences: ['###'] }));
    assert.equal(r.status, 200, r.body);
    const s = await streamChat(gw, 'm-bedrock', 'stream it');
    assert.equal(s.status, 200, showStream(s));
    const [plain, streamed] = await mockRequests();
    // ':' and '=' in the model id are percent-encoded in the path (and the
    // mock checked the signature over the twice-encoded canonical URI).
    assert.equal(plain.path, '/model/mock%3Asigv4_secret%3Dsecret/converse');
    assert.equal(streamed.path, '/model/mock%3Asigv4_secret%3Dsecret/converse-stream');
    assert.equal(plain.headers.accept, 'application/json');
    assert.equal(streamed.headers.accept, 'application/vnd.amazon.eventstream');
    assert.deepEqual(JSON.parse(plain.body), {
      messages: [{ role: 'user', content: [{ text: 'hello from the anthropic sdk' }] }],
      system: [{ text: 'be brief' }],
      inferenceConfig: { maxTokens: 64, temperature: 0.5, stopSequences: ['###'] },
    });
    for (const rec of [plain, streamed]) {
      assert.equal(rec.sigv4.valid, true, JSON.stringify(rec.sigv4));
      assert.equal(rec.headers['x-amz-content-sha256'], require('node:crypto').createHash('sha256').update(rec.body).digest('hex'));
    }
  });

  it('a Bedrock API key goes as a bearer token, unsigned', async () => {
    await clearMock();
    const r = await chat(gw, 'bedrock-bearer', 'hello with a key');
    assert.equal(r.status, 200, r.body);
    const [rec] = await mockRequests();
    assert.equal(rec.headers.authorization, 'Bearer br-api-key');
    assert.equal(rec.sigv4, undefined);
    assert.equal(rec.headers['x-amz-date'], undefined);
  });

  it('temporary credentials: x-amz-security-token is sent and signed', async () => {
    await clearMock();
    const r = await chat(gw, 'bedrock-session', 'hello with a session');
    assert.equal(r.status, 200, r.body);
    const [rec] = await mockRequests();
    assert.equal(rec.headers['x-amz-security-token'], 'sts-token/+=');
    assert.equal(rec.sigv4.region, 'eu-west-3');
    assert.equal(rec.sigv4.access_key_id, 'ASIAEXAMPLE');
    assert.ok(rec.sigv4.signed_headers.includes('x-amz-security-token'), JSON.stringify(rec.sigv4));
    assert.equal(rec.sigv4.valid, true);
  });

  it('a signature made with the wrong secret is refused by the mock -> 502, not retried', async () => {
    await clearMock();
    const r = await chat(gw, 'bedrock-badsig', 'hello with a bad signature');
    assert.equal(r.status, 502, r.body);
    h.assertErrorShape(r);
    const recs = await mockRequests();
    assert.equal(recs.length, 1, '403 is not retried');
    assert.equal(recs[0].status, 403);
    assert.equal(recs[0].sigv4.valid, false);
  });
});

describe('untranslatable requests', () => {
  it('a field a provider cannot take is a clear 400, never dropped', async () => {
    await clearMock();
    const r = await h.request(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY,
      body: h.chatBody('two answers please', { model: 'm-anthropic', n: 3 }) });
    assert.equal(r.status, 400, r.body);
    h.assertErrorShape(r);
    assert.match(r.json.error.message, /\bn\b/);
    const a = await h.request(gw, messages('m-openai', { top_k: 5 }));
    assert.equal(a.status, 400);
    assert.match(a.json.error.message, /top_k/);
    const b = await h.request(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY,
      body: h.chatBody('no seeds', { model: 'm-bedrock', seed: 7 }) });
    assert.equal(b.status, 400, b.body);
    h.assertErrorShape(b);
    assert.match(b.json.error.message, /seed/);
    assert.equal((await mockRequests()).length, 0, 'nothing reached the upstream');
  });
});

it('the gateway exits 0 on SIGTERM with no sanitizer report', async () => {
  await gw.stop();
});
