// modelgate — every provider type behind the gateway, through both client
// surfaces: OpenAI-SDK-shaped requests (/v1/chat/completions) and
// Anthropic-SDK-shaped requests (/v1/messages), plain and streamed, against
// the mock upstream speaking each provider's wire format. Asserts on what
// the client gets, on what the mock received (path, credential header, body
// shape), and on the token counts the gateway recorded.
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

let mock;
let gw;

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
};

const withProviders = (cfg, ctx) => {
  for (const [t, spec] of Object.entries(TYPES)) {
    cfg.providers[`p-${t}`] = spec.provider(ctx.mockUrl);
    cfg.models.push({ name: `m-${t}`, deployments: [{ provider: `p-${t}`, model: `up-${t}` }] });
  }
  return cfg;
};

before(async () => {
  mock = await h.startMock();
  gw = await h.startGateway({ mock, configOverrides: withProviders });
});
afterEach(h.crashGuard(() => gw, async () => { gw = await h.startGateway({ mock, configOverrides: withProviders }); }));
after(h.cleanup);

const mockRequests = () => mock.requests();
const clearMock = () => mock.clear();
function lastAccess(model) {
  const lines = gw.accessLog.filter((l) => l.model === model);
  return lines[lines.length - 1];
}

const anthropicBody = (model, extra = {}) => ({
  model, max_tokens: 64, system: 'be brief',
  messages: [{ role: 'user', content: 'hello from the anthropic sdk' }], ...extra,
});
const messages = (model, extra = {}, o = {}) => ({
  path: '/v1/messages', headers: { 'x-api-key': h.MASTER_KEY, 'anthropic-version': '2023-06-01' },
  body: anthropicBody(model, extra), ...o,
});

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
      assert.ok(spec.auth(recs[0].headers), `credential headers for ${type}: ${JSON.stringify(recs[0].headers)}`);
      assert.ok(!JSON.stringify(recs[0].headers).includes(h.MASTER_KEY), 'the client credential never goes upstream');
      await h.waitFor(() => lastAccess(model));
      const a = lastAccess(model);
      assert.equal(a.status, 200);
      assert.equal(a.prompt_tokens, r.json.usage.prompt_tokens);
      assert.equal(a.completion_tokens, r.json.usage.completion_tokens);
      assert.ok(!a.estimated, 'usage came from the provider');
    });

    it('OpenAI-shaped chat, streamed: chunks, [DONE], usage only when asked', async () => {
      const s = await h.stream(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY,
        body: h.chatBody('[[mock:chunks=4]] stream me please', { model, stream: true }) });
      assert.equal(s.status, 200);
      assert.ok(s.complete, 'stream ended cleanly');
      const text = s.events.filter((e) => e.json?.choices?.[0]?.delta?.content)
        .map((e) => e.json.choices[0].delta.content).join('');
      assert.match(text, /mock reply to: /);
      assert.equal(s.events[s.events.length - 1].data, '[DONE]');
      assert.ok(!s.events.some((e) => e.json?.usage && e.json.choices?.length === 0), 'no usage chunk unless asked');

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
  });
}

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
    assert.equal((await mockRequests()).length, 0, 'nothing reached the upstream');
  });
});
