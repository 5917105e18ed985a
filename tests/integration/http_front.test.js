// modelgate — HTTP front hostile-input matrix (TESTING.md "HTTP front").
//
// Each row sends raw bytes to the real gateway and asserts the exact status,
// that the connection is closed where framing is in doubt, that every
// response carries X-Request-Id and the OpenAI error shape, and that the mock
// upstream received nothing for a rejected request. Rejected requests are
// aimed at POST /v1/chat/completions with the master key, so a lenient parser
// would have forwarded them.
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const tls = require('node:tls');
const h = require('./lib/harness');

const IDLE_MS = 3000;
const HEADER_MS = 2000;
let mock;
let gw;

const startGw = () => h.startGateway({
  mock,
  configOverrides: { limits: { idle_timeout: `${IDLE_MS}ms`, header_timeout: `${HEADER_MS}ms`, body_timeout: '3s' } },
});
before(async () => {
  mock = await h.startMock();
  gw = await startGw();
});
afterEach(h.crashGuard(() => gw, async () => { gw = await startGw(); }));
after(h.cleanup);

const BODY = JSON.stringify(h.chatBody('hello'));
const AUTH = `Authorization: Bearer ${h.MASTER_KEY}\r\n`;

// A POST to the chat endpoint with the master key; `extra` are header lines
// (each ending in CRLF), `body` the raw bytes after the head.
function chat(extra, body, { version = '1.1', target = '/v1/chat/completions', host = true } = {}) {
  return `POST ${target} HTTP/${version}\r\n` + (host ? 'Host: 127.0.0.1\r\n' : '') + AUTH +
    'Content-Type: application/json\r\n' + extra + '\r\n' + body;
}
const withCL = (extra = '', body = BODY) => chat(`Content-Length: ${Buffer.byteLength(body)}\r\n` + extra, body);
const chunked = (chunks) => chat('Transfer-Encoding: chunked\r\n', chunks);
// A request that a desynchronised parser would see as a second request.
const SMUGGLED = 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';

function show(r) {
  return `statuses ${JSON.stringify(r.statusCodes)} closed=${r.closed} reset=${r.reset}\n--- received:\n${r.data.slice(0, 1500)}`;
}

// Sends bytes; expects exactly one response with `status` (or one of an array),
// the error shape, X-Request-Id, the connection closed (unless keepOpen), and
// nothing at the upstream.
async function rejected(bytes, status, o = {}) {
  await mock.clear();
  const r = await h.raw(gw, bytes, { timeoutMs: o.timeoutMs || 5000, tls: o.tls });
  const ok = Array.isArray(status) ? status : [status];
  assert.ok(r.statusCodes.length >= 1, `no response at all; ${show(r)}`);
  assert.ok(ok.includes(r.statusCodes[0]), `expected ${ok.join('|')}; ${show(r)}`);
  assert.equal(r.statusCodes.length, 1, `exactly one response expected; ${show(r)}`);
  const resp = r.responses[0];
  assert.ok(resp.headers['x-request-id'], `X-Request-Id missing; ${show(r)}`);
  h.assertErrorShape(resp, `status ${resp.status}`);
  if (!o.keepOpen) assert.ok(r.closed, `server must close the connection after ${resp.status}; ${show(r)}`);
  await h.sleep(100);
  assert.deepEqual(await mock.requests(), [], 'the upstream must receive nothing');
  return r;
}

describe('request framing: Content-Length and Transfer-Encoding', () => {
  it('Content-Length together with Transfer-Encoding -> 400, closed', async () => {
    await rejected(chat('Content-Length: 5\r\nTransfer-Encoding: chunked\r\n', '0\r\n\r\n' + SMUGGLED), 400);
  });
  it('Transfer-Encoding before Content-Length -> 400, closed', async () => {
    await rejected(chat('Transfer-Encoding: chunked\r\nContent-Length: 5\r\n', '0\r\n\r\n' + SMUGGLED), 400);
  });
  it('Content-Length "5, 6" -> 400', async () => {
    await rejected(chat('Content-Length: 5, 6\r\n', 'hello!'), 400);
  });
  it('duplicate Content-Length lines (5 and 6) -> 400', async () => {
    await rejected(chat('Content-Length: 5\r\nContent-Length: 6\r\n', 'hello!'), 400);
  });
  for (const [name, v] of [['+5', '+5'], ['0x10', '0x10'], ['-1', '-1'], ['1e3', '1e3'],
    ['overflow 2^64', '18446744073709551616'], ['overflow 30 digits', '9'.repeat(30)], ['empty', '']]) {
    it(`malformed Content-Length ${name} -> 400`, async () => {
      await rejected(chat(`Content-Length: ${v}\r\n`, 'hello'), 400);
    });
  }
  it('Transfer-Encoding "chunked, chunked" -> 400', async () => {
    await rejected(chat('Transfer-Encoding: chunked, chunked\r\n', '5\r\nhello\r\n0\r\n\r\n'), 400);
  });
  it('Transfer-Encoding "xchunked" -> refused (400, or 501 as an unknown coding)', async () => {
    // The brief says 400; RFC 9112 §6.1 allows 501 for a coding the server does
    // not understand. Either refuses; nothing may be forwarded.
    await rejected(chat('Transfer-Encoding: xchunked\r\n', '5\r\nhello\r\n0\r\n\r\n'), [400, 501]);
  });
  it('Transfer-Encoding "gzip" -> 501', async () => {
    await rejected(chat('Transfer-Encoding: gzip\r\n', 'hello'), 501);
  });
  it('Transfer-Encoding "gzip, chunked" -> 501', async () => {
    await rejected(chat('Transfer-Encoding: gzip, chunked\r\n', '5\r\nhello\r\n0\r\n\r\n'), 501);
  });
  it('Transfer-Encoding with a leading comma ", chunked" -> 400', async () => {
    await rejected(chat('Transfer-Encoding: , chunked\r\n', '5\r\nhello\r\n0\r\n\r\n'), 400);
  });
  it('tab-separated Transfer-Encoding together with Content-Length -> 400', async () => {
    await rejected(chat('Transfer-Encoding:\tchunked\r\nContent-Length: 3\r\n', '0\r\n\r\n'), 400);
  });
  it('tab before the colon "Transfer-Encoding\\t: chunked" -> 400', async () => {
    await rejected(chat('Transfer-Encoding\t: chunked\r\n', '5\r\nhello\r\n0\r\n\r\n'), 400);
  });
  it('space before the colon "Transfer-Encoding : chunked" -> 400', async () => {
    await rejected(chat('Transfer-Encoding : chunked\r\n', '5\r\nhello\r\n0\r\n\r\n'), 400);
  });
  it('Transfer-Encoding on HTTP/1.0 -> 400', async () => {
    await rejected(chat('Transfer-Encoding: chunked\r\n', '5\r\nhello\r\n0\r\n\r\n', { version: '1.0' }), 400);
  });
  it('Transfer-Encoding with a tab as the only separator -> 400 (TESTING.md: refused)', async () => {
    await rejected(chat('Transfer-Encoding:\tchunked\r\n', '5\r\nhello\r\n0\r\n\r\n'), 400);
  });
  it('control: a well-formed chunked body (with an extension) is decoded and forwarded', async () => {
    await mock.clear();
    const half = Math.floor(BODY.length / 2);
    const body = `${half.toString(16)}\r\n${BODY.slice(0, half)}\r\n` +
      `${(BODY.length - half).toString(16)};ext=1\r\n${BODY.slice(half)}\r\n0\r\n\r\n`;
    const r = await h.raw(gw, chat('Transfer-Encoding: chunked\r\nConnection: close\r\n', body), { timeoutMs: 10000 });
    assert.deepEqual(r.statusCodes, [200], show(r));
    const reqs = await mock.requests();
    assert.equal(reqs.length, 1, 'the upstream should have received the request');
    const fwd = typeof reqs[0].body === 'string' ? JSON.parse(reqs[0].body) : reqs[0].body;
    assert.equal(fwd.messages[0].content, 'hello');
  });
});

describe('chunked bodies', () => {
  const bad = [
    ['non-hex size', 'zz\r\nhello\r\n0\r\n\r\n'],
    ['0x prefix', '0x5\r\nhello\r\n0\r\n\r\n'],
    ['+ prefix', '+5\r\nhello\r\n0\r\n\r\n'],
    ['negative size', '-5\r\nhello\r\n0\r\n\r\n'],
    ['space before size', ' 5\r\nhello\r\n0\r\n\r\n'],
    ['space after size', '5 \r\nhello\r\n0\r\n\r\n'],
    ['empty size line', '\r\nhello\r\n0\r\n\r\n'],
    ['size overflow (17 hex digits)', '10000000000000005\r\nhello\r\n0\r\n\r\n'],
    ['size overflow (2^64 - 1)', 'ffffffffffffffff\r\nhello\r\n0\r\n\r\n'],
    ['huge chunk extension', `5;${'a'.repeat(20000)}\r\nhello\r\n0\r\n\r\n`],
    ['missing CRLF after chunk data', '5\r\nhelloXY0\r\n\r\n'],
    ['LF only after chunk data', '5\r\nhello\n0\r\n\r\n'],
    ['oversized trailer section', `0\r\nX-Trailer: ${'a'.repeat(20000)}\r\n\r\n`],
    ['bare LF size line', '5\nhello\r\n0\r\n\r\n'],
  ];
  for (const [name, body] of bad) {
    it(`${name} -> 400, closed`, async () => {
      // The ones that overflow or exceed max_body may legitimately be 413.
      const expect = /overflow/.test(name) ? [400, 413] : 400;
      await rejected(chunked(body), expect);
    });
  }
});

describe('header syntax', () => {
  const bad = [
    ['obs-fold (continuation line)', 'X-Folded: a\r\n b\r\n'],
    ['obs-fold with tab', 'X-Folded: a\r\n\tb\r\n'],
    ['bare CR inside a value', 'X-Cr: a\rb\r\n'],
    ['NUL in a value', 'X-Nul: a\x00b\r\n'],
    ['control byte 0x01 in a value', 'X-Ctl: a\x01b\r\n'],
    ['DEL in a value', 'X-Del: a\x7fb\r\n'],
    ['underscore in a header name', 'X_Under: a\r\n'],
    ['non-token byte in a header name', 'X(Bad): a\r\n'],
    ['empty header name', ': a\r\n'],
    ['header line without a colon', 'NoColonHere\r\n'],
    ['bare LF line ending', 'X-Lf: a\n'],
  ];
  for (const [name, line] of bad) {
    it(`${name} -> 400`, async () => {
      await rejected(withCL(line), 400);
    });
  }
  it('request line with a bare LF -> 400', async () => {
    await rejected('GET /healthz HTTP/1.1\nHost: 127.0.0.1\r\n\r\n', 400);
  });
  it('unsupported HTTP version HTTP/2.0 text -> 505 or 400', async () => {
    await rejected('GET /healthz HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n', [400, 505]);
  });
  it('missing Host on HTTP/1.1 -> 400', async () => {
    await rejected(chat(`Content-Length: ${BODY.length}\r\n`, BODY, { host: false }), 400);
  });
  it('duplicate Host -> 400', async () => {
    await rejected(withCL('Host: evil.example\r\n'), 400);
  });
  it('Host with a comma list -> 400', async () => {
    await rejected(chat(`Host: a.example, b.example\r\nContent-Length: ${BODY.length}\r\n`, BODY, { host: false }), 400);
  });
});

describe('size limits', () => {
  it('too-long request line -> 414 before the line even ends', async () => {
    const t0 = Date.now();
    // No CRLF: the server must decide from the length alone.
    await rejected(`GET /${'a'.repeat(12000)}`, 414);
    assert.ok(Date.now() - t0 < HEADER_MS, 'answered before header_timeout');
  });
  it('too-long request line (complete) -> 414', async () => {
    await rejected(`GET /healthz?q=${'a'.repeat(12000)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, 414);
  });
  it('too-large header section -> 431', async () => {
    let extra = '';
    for (let i = 0; i < 24; i++) extra += `X-Big-${i}: ${'b'.repeat(1000)}\r\n`;
    await rejected(withCL(extra), 431);
  });
  it('too-large header section without its end -> 431 promptly', async () => {
    let extra = '';
    for (let i = 0; i < 24; i++) extra += `X-Big-${i}: ${'b'.repeat(1000)}\r\n`;
    const t0 = Date.now();
    await rejected(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}`, 431);
    assert.ok(Date.now() - t0 < HEADER_MS, 'answered before header_timeout');
  });
  it('too many headers -> 431', async () => {
    let extra = '';
    for (let i = 0; i < 150; i++) extra += `X-H${i}: v\r\n`;
    await rejected(withCL(extra), 431);
  });
  // A body that arrives over many reads grows (and moves) the connection's
  // read buffer under the parsed head: everything must still be read from
  // the request's own copy (a use-after-free here once refused such bodies).
  for (const size of [20 * 1024, 64 * 1024, 900 * 1024]) {
    it(`a ${size >> 10} KiB body within max_body is forwarded whole (Content-Length and chunked)`, async () => {
      const text = 'lorem ipsum dolor sit amet '.repeat(Math.ceil(size / 27)).slice(0, size);
      await mock.clear();
      const r = await h.request(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY, body: h.chatBody(text) });
      assert.equal(r.status, 200, r.body.slice(0, 300));
      let reqs = await mock.requests();
      assert.equal(reqs.length, 1);
      let fwd = typeof reqs[0].body === 'string' ? JSON.parse(reqs[0].body) : reqs[0].body;
      assert.equal(fwd.messages[0].content, text);
      await mock.clear();
      const body = JSON.stringify(h.chatBody(text));
      const pieces = [];
      for (let i = 0; i < body.length; i += 7000) {
        const part = body.slice(i, i + 7000);
        pieces.push(`${Buffer.byteLength(part).toString(16)}\r\n${part}\r\n`);
      }
      const cr = await h.raw(gw, chat('Transfer-Encoding: chunked\r\nConnection: close\r\n', pieces.join('') + '0\r\n\r\n'),
        { timeoutMs: 15000 });
      assert.deepEqual(cr.statusCodes, [200], show(cr));
      reqs = await mock.requests();
      assert.equal(reqs.length, 1);
      fwd = typeof reqs[0].body === 'string' ? JSON.parse(reqs[0].body) : reqs[0].body;
      assert.equal(fwd.messages[0].content, text);
    });
  }
  it('too-large body (Content-Length) -> 413 without waiting for the body', async () => {
    const t0 = Date.now();
    await rejected(chat('Content-Length: 1073741824\r\n', ''), 413);
    assert.ok(Date.now() - t0 < 1500, `413 should be prompt, took ${Date.now() - t0} ms`);
  });
  it('too-large body (Content-Length + Expect: 100-continue) -> 413, no 100', async () => {
    const r = await rejected(chat('Content-Length: 2097152\r\nExpect: 100-continue\r\n', ''), 413);
    assert.ok(!/^HTTP\/1\.1 100/.test(r.data), 'must not invite the body');
  });
  it('too-large chunked body (one chunk larger than max_body) -> 413 promptly', async () => {
    const t0 = Date.now();
    await rejected(chunked(`${(2 * 1024 * 1024).toString(16)}\r\n${'x'.repeat(1000)}`), 413);
    assert.ok(Date.now() - t0 < 1500, `413 should be prompt, took ${Date.now() - t0} ms`);
  });
});

describe('pipelining', () => {
  const get = (p, extra = '') => `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`;
  it('three pipelined GET /healthz in one write -> three 200s in order', async () => {
    const r = await h.raw(gw, get('/healthz') + get('/healthz') + get('/healthz', 'Connection: close\r\n'), { timeoutMs: 5000 });
    assert.deepEqual(r.statusCodes, [200, 200, 200], show(r));
    assert.ok(r.responses.every((x) => x.complete), show(r));
    const ids = r.responses.map((x) => x.headers['x-request-id']);
    assert.equal(new Set(ids).size, 3, `distinct request ids: ${ids}`);
  });
  it('pipelined responses keep request order (200, 404, 200)', async () => {
    const r = await h.raw(gw, get('/healthz') + get('/no-such-path') + get('/healthz', 'Connection: close\r\n'), { timeoutMs: 5000 });
    assert.deepEqual(r.statusCodes, [200, 404, 200], show(r));
  });
  it('after an error in a pipeline the connection is closed', async () => {
    const r = await h.raw(gw, get('/healthz') + 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX_Bad: 1\r\n\r\n' + get('/healthz'), { timeoutMs: 5000 });
    assert.deepEqual(r.statusCodes, [200, 400], show(r));
    assert.ok(r.closed, show(r));
  });
});

describe('the gateway is not a forward proxy', () => {
  it('absolute-form target -> 400', async () => {
    await rejected(chat(`Content-Length: ${BODY.length}\r\n`, BODY, { target: 'http://127.0.0.1/v1/chat/completions' }), 400);
  });
  it('absolute-form target for another host -> 400', async () => {
    await rejected('GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n', 400);
  });
  it('asterisk-form target -> 400', async () => {
    await rejected('OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', 400);
  });
  it('CONNECT -> 405 (or 400)', async () => {
    await rejected('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', [405, 400]);
  });
  it('Upgrade: websocket never switches protocols', async () => {
    await mock.clear();
    const r = await h.raw(gw, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n', { timeoutMs: 3000 });
    assert.ok(r.statusCodes.length >= 1, show(r));
    assert.ok(!r.statusCodes.includes(101), show(r));
    assert.ok(!r.responses[0].headers.upgrade, 'no Upgrade header in the answer');
    assert.ok(r.responses[0].headers['x-request-id']);
  });
  it('Upgrade: h2c on the chat endpoint never switches protocols nor reaches upstream as an upgrade', async () => {
    await mock.clear();
    const r = await h.raw(gw, withCL('Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n'), { timeoutMs: 5000 });
    assert.ok(r.statusCodes.length >= 1 && !r.statusCodes.includes(101), show(r));
    for (const rec of await mock.requests()) {
      const hd = h.mockHeaders(rec);
      assert.ok(!hd.has('upgrade') && !hd.has('http2-settings'), `upgrade headers forwarded: ${JSON.stringify(rec.headers)}`);
    }
  });
});

describe('path normalisation (never routed)', () => {
  const getPaths = ['/v1/../healthz', '/%2e%2e/healthz', '/v1/%2E%2E/healthz', '/./healthz', '//healthz',
    '/healthz%00', '/\\healthz', '/healthz/..', '/v1%2fmodels', '/v1%2Fmodels', '/%5chealthz', '/heal%zzthz'];
  for (const p of getPaths) {
    it(`GET ${p} -> 400`, async () => {
      await rejected(`GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH}Connection: close\r\n\r\n`, 400);
    });
  }
  const chatPaths = ['/v1/../v1/chat/completions', '/v1/%2e%2e/v1/chat/completions', '/v1%2fchat/completions',
    '//v1/chat/completions', '/v1/chat/completions%00', '/v1\\chat/completions', '/v1/./chat/completions'];
  for (const p of chatPaths) {
    it(`POST ${p} -> 400, nothing forwarded`, async () => {
      await rejected(chat(`Content-Length: ${BODY.length}\r\nConnection: close\r\n`, BODY, { target: p }), 400);
    });
  }
  it('unknown path -> 404 in the OpenAI error shape', async () => {
    const r = await h.request(gw, { path: '/v1/no-such-endpoint', auth: h.MASTER_KEY });
    assert.equal(r.status, 404, r.body);
    h.assertErrorShape(r);
    assert.ok(r.headers['x-request-id']);
    const r2 = await h.request(gw, { path: '/nothing-here' });
    assert.equal(r2.status, 404, r2.body);
    h.assertErrorShape(r2);
  });
  it('percent-encoded unreserved characters are decoded once: /%68ealthz is /healthz', async () => {
    const r = await h.raw(gw, 'GET /%68ealthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n', { timeoutMs: 3000 });
    assert.deepEqual(r.statusCodes, [200], show(r));
  });
});

describe('timeouts', () => {
  it('slowloris: a head trickling one byte per second is closed within header_timeout + 1 s; others unaffected', async () => {
    const pieces = [{ data: 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ' }];
    for (let i = 0; i < 10; i++) pieces.push({ data: 'a', delayMs: 1000 });
    const slow = h.raw(gw, pieces, { timeoutMs: HEADER_MS + 6000 });
    await h.sleep(500);
    // A normal request in parallel must still be answered promptly.
    const t0 = Date.now();
    const ok = await h.request(gw, { path: '/healthz' });
    const took = Date.now() - t0;
    assert.equal(ok.status, 200);
    assert.ok(took < 1000, `parallel request took ${took} ms`);
    const r = await slow;
    assert.ok(r.closed, `slowloris connection not closed; ${show(r)}`);
    assert.ok(r.closedAfterMs <= HEADER_MS + 1000, `closed after ${r.closedAfterMs} ms (header_timeout ${HEADER_MS} ms)`);
    assert.ok(r.closedAfterMs >= HEADER_MS - 300, `closed too early (${r.closedAfterMs} ms)`);
    assert.ok(r.statusCodes.every((s) => s === 408), `only a 408 may be sent: ${show(r)}`);
  });
  it('slowloris over TLS is closed within header_timeout + 1 s', async () => {
    const pieces = [{ data: 'GET /healthz HTTP/1.1\r\n' }];
    for (let i = 0; i < 8; i++) pieces.push({ data: 'X', delayMs: 1000 });
    const r = await h.raw(gw, pieces, { tls: true, timeoutMs: HEADER_MS + 5000 });
    assert.ok(r.closed && r.closedAfterMs <= HEADER_MS + 1000, `closed=${r.closed} after ${r.closedAfterMs} ms`);
  });
  it('slow POST: a body trickling in is cut off by body_timeout (3 s)', async () => {
    await mock.clear();
    const pieces = [{ data: chat('Content-Length: 100\r\n', '{') }];
    for (let i = 0; i < 10; i++) pieces.push({ data: ' ', delayMs: 1000 });
    const r = await h.raw(gw, pieces, { timeoutMs: 9000 });
    assert.ok(r.closed, `not closed; ${show(r)}`);
    assert.ok(r.closedAfterMs <= 3000 + 1500, `closed after ${r.closedAfterMs} ms`);
    assert.deepEqual(await mock.requests(), []);
  });
  it('an idle keep-alive connection is closed after idle_timeout', async () => {
    const r = await h.raw(gw, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', { timeoutMs: IDLE_MS + 5000 });
    assert.deepEqual(r.statusCodes, [200], show(r));
    assert.ok(r.closed, 'idle connection should be closed');
    assert.ok(r.closedAfterMs >= IDLE_MS - 300 && r.closedAfterMs <= IDLE_MS + 1500,
      `closed after ${r.closedAfterMs} ms (idle_timeout ${IDLE_MS} ms)`);
  });
  it('a connection that never sends anything is closed within max(header, idle timeout) + 1 s', async () => {
    const limit = Math.max(HEADER_MS, IDLE_MS) + 1000;
    const r = await h.raw(gw, '', { timeoutMs: limit + 4000 });
    assert.ok(r.closed && r.closedAfterMs <= limit, `closed=${r.closed} after ${r.closedAfterMs} ms`);
  });
});

describe('TLS', () => {
  const connect = (o) => new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port: o.port, ca: o.ca, ...o.opts }, () => {
      const proto = s.getProtocol();
      s.destroy();
      resolve({ ok: true, proto });
    });
    s.on('error', (e) => resolve({ ok: false, error: e.message }));
    s.setTimeout(5000, () => { s.destroy(); resolve({ ok: false, error: 'timeout' }); });
  });
  const legacy = (v) => ({ minVersion: v, maxVersion: v, ciphers: 'DEFAULT:@SECLEVEL=0' });

  for (const v of ['TLSv1', 'TLSv1.1']) {
    it(`${v} is refused`, async (t) => {
      // Control: make sure this Node/OpenSSL can speak the old version at all,
      // otherwise "refused" would prove nothing.
      const c = h.certs();
      const srv = tls.createServer({ cert: require('node:fs').readFileSync(c.cert), key: require('node:fs').readFileSync(c.key), ...legacy(v) }, (s) => s.end());
      await new Promise((r) => srv.listen(0, '127.0.0.1', r));
      const control = await connect({ port: srv.address().port, ca: gw.ca, opts: legacy(v) });
      srv.close();
      if (!control.ok || control.proto !== v) {
        t.skip(`this Node/OpenSSL cannot negotiate ${v} (${control.error || control.proto})`);
        return;
      }
      const r = await connect({ port: gw.httpsPort, ca: gw.ca, opts: legacy(v) });
      assert.equal(r.ok, false, `gateway accepted ${r.proto}`);
    });
  }
  for (const v of ['TLSv1.2', 'TLSv1.3']) {
    it(`${v} is accepted and serves requests`, async () => {
      const r = await connect({ port: gw.httpsPort, ca: gw.ca, opts: { minVersion: v, maxVersion: v } });
      assert.ok(r.ok, r.error);
      assert.equal(r.proto, v);
      const resp = await h.request(gw, { path: '/healthz', tlsOptions: { minVersion: v, maxVersion: v } });
      assert.equal(resp.status, 200);
    });
  }
  it('the certificate verifies against the test CA only', async () => {
    const r = await connect({ port: gw.httpsPort, ca: undefined, opts: {} });
    assert.equal(r.ok, false, 'an unknown CA must not verify (proves verification is on)');
    const r2 = await connect({ port: gw.httpsPort, ca: gw.ca, opts: { servername: 'localhost' } });
    assert.ok(r2.ok, r2.error);
  });
  it('plain HTTP sent to the TLS port does not get a 200', async () => {
    const r = await h.raw(gw, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', { port: gw.httpsPort, timeoutMs: 4000 });
    assert.ok(!r.statusCodes.includes(200), show(r));
    assert.ok(r.closed, 'closed');
  });
});

describe('responses: request id and error shape', () => {
  it('X-Request-Id is on every response: 200, 401, 404, 400, 405', async () => {
    const rs = [
      await h.request(gw, { path: '/healthz' }),
      await h.request(gw, { path: '/v1/models' }),
      await h.request(gw, { path: '/v1/unknown', auth: h.MASTER_KEY }),
      await h.request(gw, { path: '/v1/chat/completions', auth: h.MASTER_KEY, body: '{not json', headers: { 'Content-Type': 'application/json' } }),
      await h.request(gw, { path: '/v1/chat/completions', method: 'GET', auth: h.MASTER_KEY }),
    ];
    const ids = rs.map((r) => r.headers['x-request-id']);
    assert.deepEqual(rs.map((r) => r.status).slice(0, 4), [200, 401, 404, 400]);
    assert.ok([404, 405].includes(rs[4].status), `GET on a POST route: ${rs[4].status}`);
    for (const id of ids) assert.match(id || '', /^[A-Za-z0-9._-]{8,}$/);
    assert.equal(new Set(ids).size, ids.length, 'ids are unique');
    for (const r of rs.slice(1)) h.assertErrorShape(r, `status ${r.status}`);
  });
  it('a client-supplied X-Request-Id from an untrusted peer is not adopted', async () => {
    const r = await h.request(gw, { path: '/healthz', headers: { 'X-Request-Id': 'client-chosen-id-1234' } });
    assert.equal(r.status, 200);
    assert.notEqual(r.headers['x-request-id'], 'client-chosen-id-1234');
  });
});

describe('credentials and forwarded headers', () => {
  const cases = [
    ['missing Authorization', {}],
    ['wrong bearer key', { Authorization: 'Bearer mk-test-0123456789abcdeX' }],
    ['master key prefix only', { Authorization: 'Bearer mk-test-0123456789' }],
    ['empty bearer', { Authorization: 'Bearer ' }],
    ['Basic scheme', { Authorization: `Basic ${Buffer.from(`x:${h.MASTER_KEY}`).toString('base64')}` }],
  ];
  for (const [name, headers] of cases) {
    it(`${name} -> 401 with the error shape, nothing upstream`, async () => {
      await mock.clear();
      const r = await h.request(gw, { path: '/v1/chat/completions', headers, body: h.chatBody('hello') });
      assert.equal(r.status, 401, r.body);
      h.assertErrorShape(r);
      assert.ok(r.headers['x-request-id']);
      assert.ok(!r.body.includes(h.MASTER_KEY.slice(0, 12)), 'no key material echoed');
      await h.sleep(100);
      assert.deepEqual(await mock.requests(), []);
    });
  }
  it('with the master key the request reaches the upstream with the provider key, without hop-by-hop headers', async () => {
    await mock.clear();
    const r = await h.request(gw, {
      path: '/v1/chat/completions', auth: h.MASTER_KEY, body: h.chatBody('hello'),
      headers: {
        Connection: 'keep-alive, X-Hop-Secret', 'X-Hop-Secret': 'must-not-pass',
        'Keep-Alive': 'timeout=5', TE: 'trailers', 'Proxy-Authorization': 'Basic c2VjcmV0', 'Proxy-Connection': 'keep-alive',
        'X-Forwarded-For': '203.0.113.9', Forwarded: 'for=203.0.113.9', 'X-Real-IP': '203.0.113.9',
        'X-Forwarded-Host': 'evil.example', 'X-Forwarded-Proto': 'http',
      },
    });
    assert.equal(r.status, 200, r.body);
    const reqs = await mock.requests();
    assert.equal(reqs.length, 1, `upstream saw ${reqs.length} requests`);
    const rec = reqs[0];
    assert.equal(rec.path, '/v1/chat/completions');
    const hd = h.mockHeaders(rec);
    assert.deepEqual(hd.get('authorization'), [`Bearer ${h.UPSTREAM_KEY}`], 'provider key sent upstream');
    const all = JSON.stringify(rec);
    assert.ok(!all.includes(h.MASTER_KEY), 'the master key must never reach the upstream');
    for (const name of ['x-hop-secret', 'keep-alive', 'te', 'proxy-authorization', 'proxy-connection', 'upgrade']) {
      assert.ok(!hd.has(name), `hop-by-hop header ${name} reached the upstream: ${hd.get(name)}`);
    }
    for (const v of hd.get('connection') || []) assert.ok(!/x-hop-secret/i.test(v), `Connection: ${v}`);
    assert.ok(!all.includes('must-not-pass'));
    // Untrusted peer: its forwarding claims are dropped.
    assert.ok(!all.includes('203.0.113.9'), `forwarding headers from an untrusted peer passed on: ${JSON.stringify(rec.headers)}`);
    assert.ok(!all.includes('evil.example'), 'X-Forwarded-Host passed on');
  });
  it('the access log records the real peer, not X-Forwarded-For from an untrusted peer', async () => {
    const r = await h.request(gw, { path: '/healthz', headers: { 'X-Forwarded-For': '198.51.100.7' } });
    const id = r.headers['x-request-id'];
    const line = await h.waitFor(() => gw.accessLog.find((l) => JSON.stringify(l).includes(id)), 5000);
    assert.ok(line, `no access log line for ${id}`);
    assert.ok(!JSON.stringify(line).includes('198.51.100.7'), JSON.stringify(line));
  });
});

it('the gateway survived all of the above and exits 0 on SIGTERM with no sanitizer report', async () => {
  const r = await h.request(gw, { path: '/healthz' });
  assert.equal(r.status, 200);
  await gw.stop();
});
