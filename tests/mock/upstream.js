#!/usr/bin/env node
// modelgate — mock model upstream: stands in for OpenAI (and Azure OpenAI),
// Anthropic, Ollama, Gemini and Amazon Bedrock (Converse, with binary
// eventstream replies and SigV4 checks) on a loopback port, with fault-injection
// "directives" and introspection endpoints for the integration tests. Also the
// local model of `make demo`. Node 20, node: built-ins only.
//
// Directives and introspection endpoints are documented in tests/mock/README.md.
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const { isUtf8 } = require('node:buffer');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const http2 = require('node:http2');
const https = require('node:https');
const zlib = require('node:zlib');

/* ----------------------------------------------------------------- options */

function usage(msg) {
  if (msg) process.stderr.write(`mock upstream: ${msg}\n`);
  process.stderr.write('usage: node tests/mock/upstream.js --port N [--host ADDR] ' +
    '[--tls-cert FILE --tls-key FILE] [--http2] [--max-records N] [--verbose]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { port: null, host: '127.0.0.1', cert: null, key: null, http2: false, maxRecords: 10000, verbose: false };
  const intArg = (name, v) => {
    if (v === undefined || !/^\d+$/.test(v)) usage(`${name} needs a non-negative integer`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
    switch (a) {
      case '--port': o.port = intArg(a, val()); break;
      case '--host': o.host = val(); break;
      case '--tls-cert': o.cert = val(); break;
      case '--tls-key': o.key = val(); break;
      case '--http2': o.http2 = true; break;
      case '--max-records': o.maxRecords = intArg(a, val()); break;
      case '--verbose': o.verbose = true; break;
      case '-h': case '--help': usage();
      // falls through (usage exits)
      default: usage(`unknown argument ${a}`);
    }
  }
  if (o.port === null || o.port > 65535) usage('--port is required (0 = any free port)');
  if (!!o.cert !== !!o.key) usage('--tls-cert and --tls-key go together');
  if (o.http2 && !o.cert) usage('--http2 needs --tls-cert and --tls-key');
  return o;
}

/* ------------------------------------------------------------------- state */

const state = {
  records: [],            // every non-/__mock request, oldest first
  seq: 0,                 // request sequence number (never reset, so ids stay unique)
  failCounters: new Map(),// fail_times key -> failures already served
  openConnections: 0,
  counters: null,
};

function resetCounters() {
  state.counters = {
    total_connections: 0, requests: 0, dropped_records: 0,
    client_aborted: 0, server_closed: 0, in_flight: 0, blocked_writes: 0,
  };
}
resetCounters();

/* -------------------------------------------------------------- directives */

// Value kinds: 'int' (decimal digits), 'flag' (1/0/true/false), 'str', or a list of allowed words.
const DIRECTIVES = {
  status: 'int', retry_after: 'int', fail_times: 'int', key: 'str',
  delay_ms: 'int', chunks: 'int', chunk_delay_ms: 'int',
  hang: ['before_headers', 'after_headers', 'mid_stream'],
  no_usage: 'flag', close_mid_stream: 'flag', error_mid_stream: 'flag',
  bad_framing: ['1', 'chunked', 'cl', 'dup_cl', 'status'],
  reply: 'str', big: 'int', dims: 'int', require_key: 'str',
  require_sigv4: 'flag', sigv4_secret: 'str',
};
const MARKER_RE = /\[\[mock:([^\]]*)\]\]/g;

function decode(v) {
  try { return decodeURIComponent(v); } catch { return v; }
}

// Parses "k=v,k=v" into `out`; returns an error message or null.
function parseDirectiveList(s, out) {
  for (const item of s.split(',')) {
    const t = item.trim();
    if (!t) continue;
    const eq = t.indexOf('=');
    const k = (eq < 0 ? t : t.slice(0, eq)).trim();
    const raw = eq < 0 ? '1' : t.slice(eq + 1);
    const kind = DIRECTIVES[k];
    if (!kind) return `unknown directive "${k}"`;
    const v = kind === 'str' ? decode(raw) : raw.trim();
    if (kind === 'int') {
      if (!/^\d{1,10}$/.test(v)) return `directive ${k} needs a non-negative integer, got "${v}"`;
      out[k] = Number(v);
    } else if (kind === 'flag') {
      if (!/^(1|0|true|false)$/.test(v)) return `directive ${k} needs 1 or 0, got "${v}"`;
      out[k] = v === '1' || v === 'true';
    } else if (Array.isArray(kind)) {
      if (!kind.includes(v)) return `directive ${k} must be one of ${kind.join('|')}, got "${v}"`;
      out[k] = v;
    } else {
      out[k] = v;
    }
  }
  return null;
}

// Directives from the model names ("mock:k=v,..."; an Azure deployment or a
// Gemini model in the URL counts as one) then from every marker in the last
// user text; later ones win. Returns { d, error }.
function collectDirectives(models, lastUser) {
  const d = {};
  let err = null;
  for (const model of models) {
    if (!err && typeof model === 'string' && model.startsWith('mock:')) err = parseDirectiveList(model.slice(5), d);
  }
  if (!err && lastUser) {
    for (const m of lastUser.matchAll(MARKER_RE)) {
      err = parseDirectiveList(m[1], d);
      if (err) break;
    }
  }
  if (!err && d.chunks === 0) err = 'directive chunks must be at least 1';
  if (!err && d.status !== undefined && (d.status < 100 || d.status > 599)) err = 'directive status must be 100..599';
  return { d, error: err };
}

/* ------------------------------------------------------------------- text */

// Same set as the \s regex class; a loop because request bodies can be
// megabytes and a match() array of every word would be wasteful.
function isSpace(c) {
  return c === 32 || (c >= 9 && c <= 13) || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
}

function countWords(s) {
  let n = 0;
  let inWord = false;
  for (let i = 0; s && i < s.length; i++) {
    const sp = isSpace(s.charCodeAt(i));
    if (!sp && !inWord) n++;
    inWord = !sp;
  }
  return n;
}

// Text of an OpenAI/Anthropic/Ollama message content: a string, or text parts.
function contentText(c) {
  if (typeof c === 'string') return c;
  if (!Array.isArray(c)) return '';
  let out = '';
  for (const p of c) {
    if (typeof p === 'string') out += (out ? ' ' : '') + p;
    else if (p && typeof p.text === 'string') out += (out ? ' ' : '') + p.text;
  }
  return out;
}

// First `n` code points, so a surrogate pair is never split.
function firstChars(s, n) {
  const cps = Array.from(s.slice(0, 2 * n));
  return cps.length <= n ? cps.join('') : cps.slice(0, n).join('');
}

// The default reply echoes the start of the last user message, markers removed.
function defaultReply(lastUser) {
  const t = (lastUser || '').replace(MARKER_RE, ' ').trim().replace(/\s+/g, ' ');
  return `mock reply to: ${firstChars(t, 40)}`;
}

function bigReply(n) {
  const unit = 'mock data ';
  return unit.repeat(Math.ceil(n / unit.length)).slice(0, n);
}

// Cuts `s` after its n-th word (keeps the original spacing).
function firstWords(s, n) {
  const re = /\S+/g;
  let m;
  let end = 0;
  for (let i = 0; i < n && (m = re.exec(s)); i++) end = m.index + m[0].length;
  return s.slice(0, end);
}

// Splits the reply into `n` pieces of near-equal length (no empty pieces),
// never inside a surrogate pair.
function splitPieces(s, n) {
  if (s.length === 0) return [''];
  const units = /[\uD800-\uDFFF]/.test(s) ? Array.from(s) : null;   // code points only when needed
  const len = units ? units.length : s.length;
  n = Math.min(n, len);
  const out = [];
  for (let i = 0; i < n; i++) {
    const a = Math.floor(i * len / n);
    const b = Math.floor((i + 1) * len / n);
    out.push(units ? units.slice(a, b).join('') : s.slice(a, b));
  }
  return out;
}

/* --------------------------------------------------------------- surfaces */

// A surface turns a parsed request into a "call" (model, texts, stream flag,
// max tokens) and renders replies, stream events and errors in its provider's
// wire format. The driver (serveCall) applies the directives the same way for all.

const nowSec = () => Math.floor(Date.now() / 1000);

function openaiErrorBody(status, message) {
  const map = {
    400: ['invalid_request_error', null], 401: ['invalid_request_error', 'invalid_api_key'],
    403: ['permission_denied', null], 404: ['invalid_request_error', null],
    429: ['requests', 'rate_limit_exceeded'],
  };
  const [type, code] = map[status] || [status >= 500 ? 'server_error' : 'invalid_request_error', null];
  return { error: { message, type, param: null, code } };
}

function anthropicErrorBody(status, message) {
  const map = {
    400: 'invalid_request_error', 401: 'authentication_error', 403: 'permission_error',
    404: 'not_found_error', 413: 'request_too_large', 429: 'rate_limit_error', 529: 'overloaded_error',
  };
  return { type: 'error', error: { type: map[status] || (status >= 500 ? 'api_error' : 'invalid_request_error'), message } };
}

function geminiErrorBody(status, message) {
  const map = {
    400: 'INVALID_ARGUMENT', 401: 'UNAUTHENTICATED', 403: 'PERMISSION_DENIED', 404: 'NOT_FOUND',
    429: 'RESOURCE_EXHAUSTED', 500: 'INTERNAL', 503: 'UNAVAILABLE', 504: 'DEADLINE_EXCEEDED',
  };
  return { error: { code: status, message, status: map[status] || (status >= 500 ? 'INTERNAL' : 'FAILED_PRECONDITION') } };
}

const sse = (obj) => `data: ${JSON.stringify(obj)}\n\n`;
const sseNamed = (name, obj) => `event: ${name}\ndata: ${JSON.stringify(obj)}\n\n`;

const openaiChat = {
  name: 'openai',
  errorBody: openaiErrorBody,
  parse(body, urlModel) {
    if (!Array.isArray(body.messages)) return { error: 'messages: an array is required' };
    const texts = [];
    let lastUser = '';
    for (const m of body.messages) {
      if (!m || typeof m !== 'object') return { error: 'messages: each message must be an object' };
      const t = contentText(m.content);
      texts.push(t);
      if (m.role === 'user') lastUser = t;
    }
    const max = body.max_completion_tokens ?? body.max_tokens;
    return {
      model: typeof body.model === 'string' ? body.model : urlModel || '',
      texts, lastUser, stream: body.stream === true, maxTokens: max,
      includeUsage: !!(body.stream_options && body.stream_options.include_usage === true),
    };
  },
  headers: (c) => ({ 'x-request-id': c.id.replace('chatcmpl', 'req') }),
  streamType: 'text/event-stream',
  plain(c) {
    const out = {
      id: c.id, object: 'chat.completion', created: c.created, model: c.model,
      choices: [{
        index: 0, message: { role: 'assistant', content: c.reply, refusal: null },
        logprobs: null, finish_reason: c.truncated ? 'length' : 'stop',
      }],
      system_fingerprint: 'fp_mock',
    };
    if (!c.d.no_usage) {
      out.usage = { prompt_tokens: c.promptTokens, completion_tokens: c.completionTokens, total_tokens: c.promptTokens + c.completionTokens };
    }
    return out;
  },
  chunkObj(c, choices) {
    const o = { id: c.id, object: 'chat.completion.chunk', created: c.created, model: c.model, system_fingerprint: 'fp_mock', choices };
    if (c.includeUsage && !c.d.no_usage) o.usage = null;
    return o;
  },
  head(c) {
    return [sse(this.chunkObj(c, [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]))];
  },
  piece(c, text) {
    return sse(this.chunkObj(c, [{ index: 0, delta: { content: text }, logprobs: null, finish_reason: null }]));
  },
  tail(c) {
    const ev = [sse(this.chunkObj(c, [{ index: 0, delta: {}, logprobs: null, finish_reason: c.truncated ? 'length' : 'stop' }]))];
    if (c.includeUsage && !c.d.no_usage) {
      const u = this.chunkObj(c, []);
      u.usage = { prompt_tokens: c.promptTokens, completion_tokens: c.completionTokens, total_tokens: c.promptTokens + c.completionTokens };
      ev.push(sse(u));
    }
    ev.push('data: [DONE]\n\n');
    return ev;
  },
  streamError: (c) => sse(openaiErrorBody(500, 'mock: injected mid-stream error')),
};

const anthropicMessages = {
  name: 'anthropic',
  errorBody: anthropicErrorBody,
  parse(body) {
    if (!Array.isArray(body.messages)) return { error: 'messages: Field required' };
    const texts = [contentText(body.system)];
    let lastUser = '';
    for (const m of body.messages) {
      if (!m || typeof m !== 'object') return { error: 'messages: each message must be an object' };
      const t = contentText(m.content);
      texts.push(t);
      if (m.role === 'user') lastUser = t;
    }
    return { model: typeof body.model === 'string' ? body.model : '', texts, lastUser, stream: body.stream === true, maxTokens: body.max_tokens };
  },
  headers: (c) => ({ 'request-id': c.id.replace('msg', 'req') }),
  streamType: 'text/event-stream',
  stopReason: (c) => (c.truncated ? 'max_tokens' : 'end_turn'),
  plain(c) {
    const out = {
      id: c.id, type: 'message', role: 'assistant', model: c.model,
      content: [{ type: 'text', text: c.reply }],
      stop_reason: this.stopReason(c), stop_sequence: null,
    };
    if (!c.d.no_usage) out.usage = { input_tokens: c.promptTokens, output_tokens: c.completionTokens };
    return out;
  },
  head(c) {
    const msg = { id: c.id, type: 'message', role: 'assistant', model: c.model, content: [], stop_reason: null, stop_sequence: null };
    if (!c.d.no_usage) msg.usage = { input_tokens: c.promptTokens, output_tokens: 1 };
    return [
      sseNamed('message_start', { type: 'message_start', message: msg }),
      sseNamed('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
      sseNamed('ping', { type: 'ping' }),
    ];
  },
  piece: (c, text) => sseNamed('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } }),
  tail(c) {
    const md = { type: 'message_delta', delta: { stop_reason: this.stopReason(c), stop_sequence: null } };
    if (!c.d.no_usage) md.usage = { output_tokens: c.completionTokens };
    return [
      sseNamed('content_block_stop', { type: 'content_block_stop', index: 0 }),
      sseNamed('message_delta', md),
      sseNamed('message_stop', { type: 'message_stop' }),
    ];
  },
  streamError: () => sseNamed('error', anthropicErrorBody(529, 'Overloaded')),
};

const ollamaChat = {
  name: 'ollama',
  errorBody: (status, message) => ({ error: message }),
  parse(body) {
    if (!Array.isArray(body.messages)) return { error: 'messages: an array is required' };
    const texts = [];
    let lastUser = '';
    for (const m of body.messages) {
      if (!m || typeof m !== 'object') return { error: 'messages: each message must be an object' };
      const t = contentText(m.content);
      texts.push(t);
      if (m.role === 'user') lastUser = t;
    }
    // Ollama streams unless told not to.
    return {
      model: typeof body.model === 'string' ? body.model : '', texts, lastUser,
      stream: body.stream !== false, maxTokens: body.options && body.options.num_predict,
    };
  },
  headers: () => ({}),
  streamType: 'application/x-ndjson',
  final(c, content) {
    const o = {
      model: c.model, created_at: new Date().toISOString(), message: { role: 'assistant', content },
      done_reason: c.truncated ? 'length' : 'stop', done: true,
      total_duration: 1000000, load_duration: 100000, prompt_eval_duration: 200000, eval_duration: 700000,
    };
    if (!c.d.no_usage) { o.prompt_eval_count = c.promptTokens; o.eval_count = c.completionTokens; }
    return o;
  },
  plain(c) { return this.final(c, c.reply); },
  head: () => [],
  piece: (c, text) => JSON.stringify({ model: c.model, created_at: new Date().toISOString(), message: { role: 'assistant', content: text }, done: false }) + '\n',
  tail(c) { return [JSON.stringify(this.final(c, '')) + '\n']; },
  streamError: () => JSON.stringify({ error: 'mock: injected mid-stream error' }) + '\n',
};

const gemini = {
  name: 'gemini',
  errorBody: geminiErrorBody,
  parse(body, urlModel, streamPath) {
    if (!Array.isArray(body.contents)) return { error: 'contents: an array is required' };
    const partsText = (x) => contentText(x && Array.isArray(x.parts) ? x.parts : []);
    const texts = [partsText(body.systemInstruction || body.system_instruction)];
    let lastUser = '';
    for (const m of body.contents) {
      if (!m || typeof m !== 'object') return { error: 'contents: each entry must be an object' };
      const t = partsText(m);
      texts.push(t);
      if (m.role === undefined || m.role === 'user') lastUser = t;
    }
    const gc = body.generationConfig || body.generation_config || {};
    return { model: urlModel, texts, lastUser, stream: streamPath, maxTokens: gc.maxOutputTokens };
  },
  headers: () => ({}),
  streamType: 'text/event-stream',
  resp(c, text, final) {
    const cand = { content: { parts: [{ text }], role: 'model' }, index: 0 };
    if (final) cand.finishReason = c.truncated ? 'MAX_TOKENS' : 'STOP';
    const o = { candidates: [cand] };
    if (!c.d.no_usage) {
      o.usageMetadata = final
        ? { promptTokenCount: c.promptTokens, candidatesTokenCount: c.completionTokens, totalTokenCount: c.promptTokens + c.completionTokens }
        : { promptTokenCount: c.promptTokens, totalTokenCount: c.promptTokens };
    }
    o.modelVersion = c.model;
    o.responseId = c.id;
    return o;
  },
  plain(c) { return this.resp(c, c.reply, true); },
  // Gemini frames SSE events with CRLF; without alt=sse it streams one JSON array.
  frame(c, o, first) {
    if (c.alt === 'sse') return `data: ${JSON.stringify(o)}\r\n\r\n`;
    return (first ? '[' : ',\r\n') + JSON.stringify(o);
  },
  head: () => [],
  piece(c, text, i, n) { return this.frame(c, this.resp(c, text, i === n - 1), i === 0); },
  tail(c) { return c.alt === 'sse' ? [] : [']']; },
  streamError(c) { return this.frame(c, geminiErrorBody(500, 'mock: injected mid-stream error'), false); },
};

// Amazon Bedrock Converse. Errors are {"message"} plus an x-amzn-errortype
// header naming the exception; streams are application/vnd.amazon.eventstream
// binary messages (see esMessage).
const BEDROCK_ERRORS = {
  400: 'ValidationException', 401: 'UnrecognizedClientException', 403: 'AccessDeniedException',
  404: 'ResourceNotFoundException', 408: 'ModelTimeoutException', 424: 'ModelErrorException',
  429: 'ThrottlingException', 500: 'InternalServerException', 503: 'ServiceUnavailableException',
};
const bedrockErrorType = (status) =>
  BEDROCK_ERRORS[status] || (status >= 500 ? 'InternalServerException' : 'ValidationException');

// One eventstream header with a string value (type 7): name length (1 byte),
// name, type, value length (2 bytes, big-endian), value.
function esHeader(name, value) {
  const n = Buffer.from(name);
  const v = Buffer.from(value);
  const b = Buffer.alloc(4 + n.length + v.length);
  b.writeUInt8(n.length, 0);
  n.copy(b, 1);
  b.writeUInt8(7, 1 + n.length);
  b.writeUInt16BE(v.length, 2 + n.length);
  v.copy(b, 4 + n.length);
  return b;
}

// One eventstream message: prelude (total length, headers length, CRC32 of
// those 8 bytes), headers, JSON payload, CRC32 of everything before it.
function esMessage(headers, payload) {
  const h = Buffer.concat(Object.entries(headers).map(([k, v]) => esHeader(k, v)));
  const p = Buffer.from(JSON.stringify(payload));
  const prelude = Buffer.alloc(12);
  prelude.writeUInt32BE(12 + h.length + p.length + 4, 0);
  prelude.writeUInt32BE(h.length, 4);
  prelude.writeUInt32BE(zlib.crc32(prelude.subarray(0, 8)), 8);
  const body = Buffer.concat([prelude, h, p]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(body), 0);
  return Buffer.concat([body, crc]);
}

const esEvent = (type, payload) =>
  esMessage({ ':event-type': type, ':content-type': 'application/json', ':message-type': 'event' }, payload);

const bedrock = {
  name: 'bedrock',
  errorBody: (status, message) => ({ message }),
  errorHeaders: (status) => ({ 'x-amzn-errortype': `${bedrockErrorType(status)}:http://internal.amazon.com/coral/com.amazon.bedrock/` }),
  parse(body, urlModel, streamPath) {
    if (!Array.isArray(body.messages)) return { error: 'messages: Member must not be null' };
    const texts = [contentText(body.system)];
    let lastUser = '';
    for (const m of body.messages) {
      if (!m || typeof m !== 'object' || !Array.isArray(m.content)) {
        return { error: 'messages: each message needs role and a content array' };
      }
      const t = contentText(m.content);
      texts.push(t);
      if (m.role === 'user') lastUser = t;
    }
    const ic = body.inferenceConfig || {};
    return { model: urlModel, texts, lastUser, stream: streamPath, maxTokens: ic.maxTokens };
  },
  headers: (c) => ({ 'x-amzn-requestid': `mock-${c.id}` }),
  streamType: 'application/vnd.amazon.eventstream',
  stopReason: (c) => (c.truncated ? 'max_tokens' : 'end_turn'),
  usage: (c) => ({ inputTokens: c.promptTokens, outputTokens: c.completionTokens, totalTokens: c.promptTokens + c.completionTokens }),
  plain(c) {
    const out = {
      output: { message: { role: 'assistant', content: [{ text: c.reply }] } },
      stopReason: this.stopReason(c), metrics: { latencyMs: 1 },
    };
    if (!c.d.no_usage) out.usage = this.usage(c);
    return out;
  },
  head: () => [esEvent('messageStart', { role: 'assistant' })],
  piece: (c, text) => esEvent('contentBlockDelta', { contentBlockIndex: 0, delta: { text } }),
  tail(c) {
    // Bedrock always ends with "metadata"; no_usage leaves only its metrics.
    const meta = { metrics: { latencyMs: 1 } };
    if (!c.d.no_usage) meta.usage = this.usage(c);
    return [
      esEvent('contentBlockStop', { contentBlockIndex: 0 }),
      esEvent('messageStop', { stopReason: this.stopReason(c) }),
      esEvent('metadata', meta),
    ];
  },
  streamError: () => esMessage({
    ':exception-type': 'modelStreamErrorException', ':content-type': 'application/json', ':message-type': 'exception',
  }, { message: 'mock: injected mid-stream error' }),
};

/* ------------------------------------------------------------------- SigV4 */

// Parses "AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
// SignedHeaders=a;b, Signature=hex"; null when the header is not SigV4.
function parseSigV4(auth) {
  const m = /^AWS4-HMAC-SHA256\s+(.*)$/.exec(auth || '');
  if (!m) return null;
  const kv = {};
  for (const part of m[1].split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) kv[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  const cred = (kv.Credential || '').split('/');
  return {
    access_key_id: cred.length === 5 ? cred[0] : null,
    date: cred[1] || null, region: cred[2] || null, service: cred[3] || null,
    terminator: cred[4] || null,
    signed_headers: kv.SignedHeaders ? kv.SignedHeaders.split(';') : [],
    signature: kv.Signature || null,
  };
}

// Percent-encodes every byte except the RFC 3986 unreserved set (and '/'
// when keepSlash): the URI encoding of SigV4.
function awsEncode(s, keepSlash) {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9\-._~]/.test(c) || (keepSlash && c === '/')) out += c;
    else out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const sha256hex = (x) => crypto.createHash('sha256').update(x).digest('hex');
const hmac = (k, x) => crypto.createHmac('sha256', k).update(x).digest();

// Checks the request's SigV4 signature; returns null when it is valid, or
// [status, exception, message] saying why not. `secret` null checks only the
// form (signed headers, dates, payload hash), not the signature itself.
function checkSigV4(req, bodyBuf, secret) {
  const h = req.headers;
  const sig = parseSigV4(h.authorization);
  if (!sig) return [403, 'MissingAuthenticationTokenException', 'Missing Authentication Token'];
  const amzDate = h['x-amz-date'] || '';
  const bad = (msg) => [403, 'InvalidSignatureException', msg];
  if (!sig.access_key_id || sig.terminator !== 'aws4_request' || !/^[0-9a-f]{64}$/.test(sig.signature || '')) {
    return bad('Authorization header requires Credential, SignedHeaders and Signature');
  }
  if (!/^\d{8}T\d{6}Z$/.test(amzDate) || amzDate.slice(0, 8) !== sig.date) return bad('x-amz-date is missing or disagrees with the credential scope');
  for (const need of ['host', 'x-amz-date']) {
    if (!sig.signed_headers.includes(need)) return bad(`SignedHeaders must include ${need}`);
  }
  const sorted = [...sig.signed_headers].sort();
  if (sorted.join(';') !== sig.signed_headers.join(';')) return bad('SignedHeaders must be sorted');
  const bodyHash = sha256hex(bodyBuf);
  if (h['x-amz-content-sha256'] !== undefined && h['x-amz-content-sha256'] !== bodyHash) {
    return bad('x-amz-content-sha256 does not match the body');
  }
  if (secret === null || secret === undefined) return null;

  // Every header line of that name, values trimmed with inner runs of spaces
  // collapsed, joined with commas.
  const raw = req.rawHeaders;
  const values = (name) => {
    const out = [];
    for (let i = 0; i + 1 < raw.length; i += 2) {
      if (raw[i].toLowerCase() === name) out.push(raw[i + 1].trim().replace(/\s+/g, ' '));
    }
    if (name === 'host' && out.length === 0 && req.authority) out.push(req.authority);   // HTTP/2
    return out.join(',');
  };
  const q = req.url.indexOf('?');
  const rawPath = q < 0 ? req.url : req.url.slice(0, q);
  const query = q < 0 ? [] : req.url.slice(q + 1).split('&').filter(Boolean).map((kv) => {
    const eq = kv.indexOf('=');
    const k = decode(eq < 0 ? kv : kv.slice(0, eq));
    const v = eq < 0 ? '' : decode(kv.slice(eq + 1));
    return [awsEncode(k, false), awsEncode(v, false)];
  }).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  const creq = [
    req.method,
    awsEncode(rawPath, true),            // the path as sent, encoded once more (non-S3 services)
    query.map(([k, v]) => `${k}=${v}`).join('&'),
    sig.signed_headers.map((n) => `${n}:${values(n)}\n`).join(''),
    sig.signed_headers.join(';'),
    bodyHash,
  ].join('\n');
  const scope = `${sig.date}/${sig.region}/${sig.service}/aws4_request`;
  const sts = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${sha256hex(creq)}`;
  let k = hmac(`AWS4${secret}`, sig.date);
  for (const part of [sig.region, sig.service, 'aws4_request']) k = hmac(k, part);
  const want = hmac(k, sts).toString('hex');
  if (want !== sig.signature) {
    return bad('The request signature we calculated does not match the signature you provided. ' +
      `The canonical request was:\n${creq}`);
  }
  return null;
}

/* ---------------------------------------------------------------- records */

function headerInfo(req) {
  const headers = {};
  const list = [];
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = raw[i].toLowerCase();
    if (k.startsWith(':')) continue;   // HTTP/2 pseudo-headers are in method/path already
    list.push([k, raw[i + 1]]);
    headers[k] = k in headers ? `${headers[k]}, ${raw[i + 1]}` : raw[i + 1];
  }
  return { headers, list };
}

function record(req, url, buf) {
  const body = buf.toString('utf8');
  const { headers, list } = headerInfo(req);
  const query = {};
  for (const [k, v] of url.searchParams) {
    if (!(k in query)) query[k] = v;
    else if (Array.isArray(query[k])) query[k].push(v);
    else query[k] = [query[k], v];
  }
  const rec = {
    seq: ++state.seq, time: new Date().toISOString(), method: req.method, url: req.url,
    path: url.pathname, query, http_version: req.httpVersion, headers, header_list: list,
    body, status: null, outcome: 'pending',
  };
  // Bytes that are not UTF-8 would be lost in `body`; keep them exactly.
  if (!isUtf8(buf)) rec.body_base64 = buf.toString('base64');
  // A SigV4 Authorization header, taken apart (null when there is none);
  // `valid` is filled in when a sigv4_secret directive checks the signature.
  const sig = parseSigV4(headers.authorization);
  if (sig) rec.sigv4 = { ...sig, amz_date: headers['x-amz-date'] ?? null, valid: null };
  if (state.maxRecords > 0) {
    state.records.push(rec);
    if (state.records.length > state.maxRecords) { state.records.shift(); state.counters.dropped_records++; }
  }
  return rec;
}

/* -------------------------------------------------------------- responses */

// Per-request context: tracks whether the client went away so the driver
// stops writing, and whether we cut the connection ourselves.
function makeCtx(req, res, rec, buf) {
  const ctx = { req, res, rec, buf, closed: false, selfClosed: false, h2: req.httpVersionMajor === 2 };
  state.counters.in_flight++;
  ctx.closedP = new Promise((resolve) => {
    res.once('close', () => {
      ctx.closed = true;
      state.counters.in_flight--;
      // The HTTP/2 compat response reports even a reset stream as finished,
      // so ask the stream itself.
      const st = ctx.h2 ? res.stream : null;
      const finished = st ? st.writableFinished && !st.rstCode : res.writableFinished;
      if (ctx.selfClosed) { rec.outcome = 'server_closed'; state.counters.server_closed++; }
      else if (finished) rec.outcome = 'complete';
      else { rec.outcome = 'client_aborted'; state.counters.client_aborted++; }
      resolve();
    });
  });
  return ctx;
}

// Sleeps, but wakes early when the client goes away.
function pause(ctx, ms) {
  if (!ms) return Promise.resolve();
  let t;
  return Promise.race([new Promise((r) => { t = setTimeout(r, ms); }), ctx.closedP]).finally(() => clearTimeout(t));
}

function writeHead(ctx, status, headers) {
  ctx.rec.status = status;
  ctx.res.writeHead(status, headers);
}

// Writes with backpressure: resolves once the data is accepted or the client left.
function write(ctx, s) {
  if (ctx.closed) return Promise.resolve();
  if (ctx.res.write(s)) return Promise.resolve();
  state.counters.blocked_writes++;
  return new Promise((resolve) => {
    let done = false;
    const fin = () => {
      if (done) return;
      done = true;
      state.counters.blocked_writes--;
      ctx.res.off('drain', fin);
      resolve();
    };
    ctx.res.once('drain', fin);
    ctx.closedP.then(fin);
  });
}

// Ends the exchange abruptly: RST_STREAM on HTTP/2, the TCP connection on HTTP/1.
function cut(ctx) {
  ctx.selfClosed = true;
  if (ctx.h2) ctx.res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  else if (ctx.res.socket) ctx.res.socket.destroy();
}

// Flushes what was written, then cuts.
function cutAfterFlush(ctx) {
  if (ctx.closed) return;
  ctx.res.write('', () => cut(ctx));
}

function sendJson(ctx, status, obj, extra = {}) {
  const body = JSON.stringify(obj);
  writeHead(ctx, status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...extra });
  ctx.res.end(body);
}

function sendError(ctx, surface, status, message, extra = {}) {
  const hdrs = surface.errorHeaders ? surface.errorHeaders(status) : {};
  sendJson(ctx, status, surface.errorBody(status, message), { ...hdrs, ...extra });
}

// Writes a response whose HTTP framing is broken, bypassing Node's serializer
// on HTTP/1 (raw bytes on the socket). `payload` is the full body it would have sent.
function badFraming(ctx, mode, type, payload) {
  const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);   // eventstreams are binary
  const half = buf.subarray(0, Math.max(1, buf.length >> 1));
  ctx.selfClosed = true;
  ctx.rec.status = 200;
  if (ctx.h2) {
    // HTTP/2 has no chunked coding; a content-length longer than the data is the breakage.
    ctx.res.writeHead(200, { 'content-type': type, 'content-length': buf.length + 100 });
    ctx.res.end(buf);
    return;
  }
  const sock = ctx.res.socket;
  const len = buf.length;
  let head = `HTTP/1.1 200 OK\r\nContent-Type: ${type}\r\n`;
  let rest;
  switch (mode) {
    case 'cl': head += `Content-Length: ${len + 100}\r\n\r\n`; rest = [buf]; break;
    case 'dup_cl': head += `Content-Length: ${len}\r\nContent-Length: ${len + 1}\r\n\r\n`; rest = [buf]; break;
    case 'status':
      head = `HTTP/1.1 2x0 OK\r\nContent-Type: ${type}\r\nContent-Length: ${len}\r\n\r\n`; rest = [buf]; break;
    default: // '1' | 'chunked': a valid chunk, then a chunk-size line that is not hex
      head += 'Transfer-Encoding: chunked\r\n\r\n';
      rest = [Buffer.from(`${half.length.toString(16)}\r\n`), half, Buffer.from('\r\nzz\r\n'),
        buf.subarray(half.length), Buffer.from('\r\n')];
  }
  sock.write(Buffer.concat([Buffer.from(head), ...rest]), () => sock.end());
}

// Never answers: the socket stays open until the client goes away.
function hangForever(ctx) {
  return ctx.closedP;
}

function keyOk(req, url, want) {
  const h = req.headers;
  const auth = h.authorization || '';
  return auth === `Bearer ${want}` || h['x-api-key'] === want || h['api-key'] === want ||
    h['x-goog-api-key'] === want || url.searchParams.get('key') === want;
}

// Failure injection shared by every endpoint; returns the status to fail with, or 0.
function injectedFailure(d) {
  if (d.fail_times !== undefined) {
    const k = d.key ?? 'default';
    const n = state.failCounters.get(k) || 0;
    if (n >= d.fail_times) return 0;
    state.failCounters.set(k, n + 1);
    return d.status && d.status >= 300 ? d.status : 503;
  }
  return d.status && d.status >= 300 ? d.status : 0;
}

// Applies directives shared by all endpoints before a reply is written.
// Returns true if the response was fully handled.
async function preamble(ctx, surface, d, url) {
  if (d.require_key !== undefined && !keyOk(ctx.req, url, d.require_key)) {
    sendError(ctx, surface, 401, 'mock: missing or wrong API key');
    return true;
  }
  if (d.require_sigv4 || d.sigv4_secret !== undefined) {
    const why = checkSigV4(ctx.req, ctx.buf, d.sigv4_secret);
    if (ctx.rec.sigv4 && d.sigv4_secret !== undefined) ctx.rec.sigv4.valid = why === null;
    if (why) {
      const [status, exc, msg] = why;
      const hdrs = surface === bedrock ? { 'x-amzn-errortype': `${exc}:http://internal.amazon.com/coral/com.amazon.coral.service/` } : {};
      sendError(ctx, surface, status, `mock: ${msg}`, hdrs);
      return true;
    }
  }
  const fail = injectedFailure(d);
  await pause(ctx, d.delay_ms);
  if (ctx.closed) return true;
  if (fail) {
    const extra = d.retry_after !== undefined ? { 'retry-after': String(d.retry_after) } : {};
    sendError(ctx, surface, fail, `mock: injected status ${fail}`, extra);
    return true;
  }
  if (d.hang === 'before_headers') { await hangForever(ctx); return true; }
  return false;
}

// Sends a JSON body under the body-level directives (hang, close, bad framing).
async function sendBody(ctx, d, obj, extra) {
  const body = JSON.stringify(obj);
  if (d.bad_framing) { badFraming(ctx, d.bad_framing, 'application/json', body); return; }
  const half = body.slice(0, body.length >> 1);
  if (d.hang === 'after_headers' || d.hang === 'mid_stream') {
    writeHead(ctx, 200, { 'content-type': 'application/json', ...extra });
    ctx.res.flushHeaders();
    if (d.hang === 'mid_stream') await write(ctx, half);
    await hangForever(ctx);
    return;
  }
  if (d.close_mid_stream) {
    writeHead(ctx, 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...extra });
    ctx.res.write(half);
    cutAfterFlush(ctx);
    return;
  }
  sendJson(ctx, 200, obj, extra);
}

const streamType = (surface, c) => (surface === gemini && c.alt !== 'sse' ? 'application/json' : surface.streamType);

// Streams a reply as the surface's event sequence.
async function sendStream(ctx, surface, c) {
  const d = c.d;
  const head = surface.head(c);
  const tail = surface.tail(c);
  const n = c.pieces.length;
  const half = n >> 1;
  const piece = (i) => surface.piece(c, c.pieces[i], i, n);
  if (d.bad_framing) {
    const all = c.pieces.map((p, i) => piece(i));
    const parts = [...head, ...all, ...tail].map((x) => (Buffer.isBuffer(x) ? x : Buffer.from(x)));
    badFraming(ctx, d.bad_framing, streamType(surface, c), Buffer.concat(parts));
    return;
  }
  writeHead(ctx, 200, { 'content-type': streamType(surface, c), 'cache-control': 'no-cache', ...surface.headers(c) });
  ctx.res.flushHeaders();
  if (d.hang === 'after_headers') { await hangForever(ctx); return; }
  for (const ev of head) await write(ctx, ev);
  for (let i = 0; i < n; i++) {
    if (i === half) {
      if (d.hang === 'mid_stream') { await hangForever(ctx); return; }
      if (d.close_mid_stream) { cutAfterFlush(ctx); return; }
      if (d.error_mid_stream) { await write(ctx, surface.streamError(c)); ctx.res.end(); return; }
    }
    if (i > 0) await pause(ctx, d.chunk_delay_ms);
    if (ctx.closed) return;
    await write(ctx, piece(i));
  }
  for (const ev of tail) await write(ctx, ev);
  if (!ctx.closed) ctx.res.end();
}

/* -------------------------------------------------------------- endpoints */

let idSeq = 0;

async function serveChat(ctx, surface, url, body, urlModel, streamPath) {
  const p = surface.parse(body, urlModel, streamPath);
  if (p.error) { sendError(ctx, surface, 400, p.error); return; }
  const { d, error } = collectDirectives([urlModel, p.model], p.lastUser);
  if (error) { sendError(ctx, surface, 400, `mock: ${error}`); return; }
  if (await preamble(ctx, surface, d, url)) return;

  let reply = d.reply !== undefined ? d.reply : d.big !== undefined ? bigReply(d.big) : defaultReply(p.lastUser);
  let truncated = false;
  if (Number.isInteger(p.maxTokens) && p.maxTokens > 0 && countWords(reply) > p.maxTokens) {
    reply = firstWords(reply, p.maxTokens);
    truncated = true;
  }
  const n = ++idSeq;
  const c = {
    d, reply, truncated, model: p.model || urlModel || 'mock', created: nowSec(),
    id: surface === anthropicMessages ? `msg_mock${n}` : surface === gemini ? `mockresp${n}` : `chatcmpl-mock${n}`,
    promptTokens: p.texts.reduce((a, t) => a + countWords(t), 0), completionTokens: countWords(reply),
    includeUsage: !!p.includeUsage, alt: url.searchParams.get('alt'),
  };
  if (p.stream) {
    c.pieces = splitPieces(reply, d.chunks || 5);
    await sendStream(ctx, surface, c);
  } else {
    await sendBody(ctx, d, surface.plain(c), surface.headers(c));
  }
}

// Deterministic unit vector from the text (FNV-1a seed, xorshift32 stream).
function embedVector(text, dims) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) { h ^= text.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; }
  let x = h || 1;
  const v = new Array(dims);
  let norm = 0;
  for (let i = 0; i < dims; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    v[i] = (x / 0x100000000) * 2 - 1;
    norm += v[i] * v[i];
  }
  norm = Math.sqrt(norm) || 1;
  return v.map((f) => Math.round((f / norm) * 1e6) / 1e6);
}

async function serveEmbeddings(ctx, url, body, urlModel) {
  const s = openaiChat;
  let inputs = body.input;
  if (typeof inputs === 'string' || (Array.isArray(inputs) && inputs.length && typeof inputs[0] === 'number')) inputs = [inputs];
  if (!Array.isArray(inputs) || inputs.length === 0) { sendError(ctx, s, 400, "'input' is a required property"); return; }
  const texts = inputs.map((x) => (Array.isArray(x) ? x.join(' ') : String(x)));
  const last = typeof inputs[inputs.length - 1] === 'string' ? inputs[inputs.length - 1] : '';
  const model = typeof body.model === 'string' ? body.model : urlModel || '';
  const { d, error } = collectDirectives([urlModel, model], last);
  if (error) { sendError(ctx, s, 400, `mock: ${error}`); return; }
  if (await preamble(ctx, s, d, url)) return;
  const dims = d.dims || (Number.isInteger(body.dimensions) && body.dimensions > 0 ? body.dimensions : 8);
  const b64 = body.encoding_format === 'base64';
  const tokens = inputs.reduce((a, x) => a + (Array.isArray(x) ? x.length : countWords(String(x))), 0);
  const data = texts.map((t, index) => {
    const vec = embedVector(t, dims);
    return { object: 'embedding', index, embedding: b64 ? Buffer.from(new Float32Array(vec).buffer).toString('base64') : vec };
  });
  const out = { object: 'list', data, model: model || 'mock' };
  if (!d.no_usage) out.usage = { prompt_tokens: tokens, total_tokens: tokens };
  await sendBody(ctx, d, out, {});
}

const MODELS = ['gpt-test', 'embed-test', 'gpt-4o-mini', 'llama3.1:8b', 'claude-test', 'gemini-test'];

function serveModels(ctx, req, id) {
  const created = 1700000000;
  if (req.headers['anthropic-version']) {
    const data = MODELS.map((m) => ({ type: 'model', id: m, display_name: m, created_at: '2023-11-14T22:13:20Z' }));
    sendJson(ctx, 200, { data, has_more: false, first_id: data[0].id, last_id: data[data.length - 1].id });
    return;
  }
  const obj = (m) => ({ id: m, object: 'model', created, owned_by: 'mock' });
  if (id !== undefined) {
    if (!MODELS.includes(id)) { sendError(ctx, openaiChat, 404, `The model '${id}' does not exist`); return; }
    sendJson(ctx, 200, obj(id));
    return;
  }
  sendJson(ctx, 200, { object: 'list', data: MODELS.map(obj) });
}

function serveOllamaTags(ctx) {
  const models = MODELS.map((m) => ({
    name: m, model: m, modified_at: '2024-01-01T00:00:00Z', size: 1000, digest: 'mock',
    details: { format: 'gguf', family: 'mock', parameter_size: '1B', quantization_level: 'Q4_0' },
  }));
  sendJson(ctx, 200, { models });
}

/* ------------------------------------------------------------------ admin */

function serveAdmin(req, res, url) {
  const json = (status, obj) => {
    const b = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
    res.end(b);
  };
  const p = url.pathname;
  if (p === '/__mock/health' && req.method === 'GET') return json(200, { ok: true });
  if (p === '/__mock/requests' && req.method === 'GET') return json(200, state.records);
  if (p === '/__mock/requests' && req.method === 'DELETE') {
    state.records = [];
    state.failCounters.clear();
    const inFlight = state.counters.in_flight;
    const blocked = state.counters.blocked_writes;
    resetCounters();
    state.counters.in_flight = inFlight;        // gauges survive a reset
    state.counters.blocked_writes = blocked;
    return json(200, { cleared: true });
  }
  if (p === '/__mock/stats' && req.method === 'GET') {
    return json(200, {
      open_connections: state.openConnections, ...state.counters,
      records: state.records.length, fail_counters: Object.fromEntries(state.failCounters),
    });
  }
  return json(404, { error: { message: `mock: no admin endpoint ${req.method} ${p}`, type: 'invalid_request_error', param: null, code: null } });
}

/* ---------------------------------------------------------------- routing */

const GEMINI_RE = /^\/(?:v1beta|v1)\/models\/([^/]+):(generateContent|streamGenerateContent)$/;
const AZURE_RE = /^\/openai\/deployments\/([^/]+)\/(chat\/completions|embeddings)$/;
const BEDROCK_RE = /^\/model\/([^/]+)\/(converse|converse-stream)$/;

async function route(ctx, url, bodyText) {
  const { req } = ctx;
  const p = url.pathname;
  const post = req.method === 'POST';
  let body = null;
  if (post) {
    try { body = JSON.parse(bodyText); } catch { body = undefined; }
  }
  const needJson = (surface) => {
    if (body && typeof body === 'object' && !Array.isArray(body)) return true;
    sendError(ctx, surface, 400, 'mock: the request body is not a JSON object');
    return false;
  };
  const wrongMethod = () => sendError(ctx, openaiChat, 405, `mock: method ${req.method} not allowed on ${p}`);

  let m;
  if ((m = AZURE_RE.exec(p))) {
    if (!post) return wrongMethod();
    if (!needJson(openaiChat)) return;
    const dep = decode(m[1]);
    return m[2] === 'embeddings' ? serveEmbeddings(ctx, url, body, dep) : serveChat(ctx, openaiChat, url, body, dep, false);
  }
  if ((m = BEDROCK_RE.exec(p))) {
    if (!post) return sendError(ctx, bedrock, 405, `mock: method ${req.method} not allowed on ${p}`);
    if (!needJson(bedrock)) return;
    return serveChat(ctx, bedrock, url, body, decode(m[1]), m[2] === 'converse-stream');
  }
  if ((m = GEMINI_RE.exec(p))) {
    if (!post) return wrongMethod();
    if (!needJson(gemini)) return;
    return serveChat(ctx, gemini, url, body, decode(m[1]), m[2] === 'streamGenerateContent');
  }
  if (p.endsWith('/chat/completions')) {
    if (!post) return wrongMethod();
    if (!needJson(openaiChat)) return;
    return serveChat(ctx, openaiChat, url, body, '', false);
  }
  if (p.endsWith('/embeddings')) {
    if (!post) return wrongMethod();
    if (!needJson(openaiChat)) return;
    return serveEmbeddings(ctx, url, body, '');
  }
  if (p === '/v1/messages' || p === '/messages') {
    if (!post) return wrongMethod();
    if (!needJson(anthropicMessages)) return;
    return serveChat(ctx, anthropicMessages, url, body, '', false);
  }
  if (p === '/api/chat') {
    if (!post) return wrongMethod();
    if (!needJson(ollamaChat)) return;
    return serveChat(ctx, ollamaChat, url, body, '', false);
  }
  if (p === '/api/tags' && req.method === 'GET') return serveOllamaTags(ctx);
  if (p === '/v1/models' || p === '/models') return req.method === 'GET' ? serveModels(ctx, req) : wrongMethod();
  if ((m = /^\/v1\/models\/([^/:]+)$/.exec(p)) && req.method === 'GET') return serveModels(ctx, req, decode(m[1]));
  sendError(ctx, openaiChat, 404, `mock: no route for ${req.method} ${p}`);
}

function handler(req, res) {
  let url;
  try { url = new URL(req.url, 'http://mock'); } catch { res.writeHead(400); res.end(); return; }
  if (url.pathname.startsWith('/__mock/')) {
    req.resume();
    req.on('end', () => serveAdmin(req, res, url));
    return;
  }
  const parts = [];
  req.on('data', (d) => parts.push(d));
  req.on('error', () => {});
  res.on('error', () => {});
  req.on('end', () => {
    const buf = Buffer.concat(parts);
    state.counters.requests++;
    const rec = record(req, url, buf);
    const bodyText = rec.body;
    if (opts.verbose) process.stderr.write(`mock: ${req.method} ${req.url} (${bodyText.length} bytes)\n`);
    const ctx = makeCtx(req, res, rec, buf);
    route(ctx, url, bodyText).catch((e) => {
      process.stderr.write(`mock: internal error: ${e && e.stack}\n`);
      if (!res.headersSent && !ctx.closed) sendError(ctx, openaiChat, 500, `mock: internal error: ${e && e.message}`);
      else if (!ctx.closed) cut(ctx);
    });
  });
}

/* -------------------------------------------------------------------- main */

const opts = parseArgs(process.argv.slice(2));
state.maxRecords = opts.maxRecords;

let server;
if (opts.cert) {
  const tlsOpts = { cert: fs.readFileSync(opts.cert), key: fs.readFileSync(opts.key) };
  server = opts.http2
    ? http2.createSecureServer({ ...tlsOpts, allowHTTP1: true }, handler)
    : https.createServer(tlsOpts, handler);
} else {
  server = http.createServer(handler);
}
if (!opts.http2) {
  // Hung responses must stay open until the client leaves; idle keep-alive
  // connections should outlive a gateway's pool idle time to avoid reuse races.
  server.requestTimeout = 0;
  server.headersTimeout = 60000;
  server.keepAliveTimeout = 65000;
}
server.on('connection', (sock) => {
  state.openConnections++;
  state.counters.total_connections++;
  sock.once('close', () => { state.openConnections--; });
});
server.on('clientError', (err, sock) => { if (sock.writable) sock.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n'); else sock.destroy(); });
server.on('error', (e) => { process.stderr.write(`mock upstream: ${e.message}\n`); process.exit(1); });
server.listen(opts.port, opts.host, () => {
  process.stdout.write(`${JSON.stringify({ listening: server.address().port })}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
