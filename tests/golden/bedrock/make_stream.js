// Writes the binary ConverseStream golden files (application/vnd.amazon.eventstream)
// from readable event lists, so the .stream files can be regenerated and reviewed.
// Usage: node tests/golden/bedrock/make_stream.js   (needs node >= 20.15 for zlib.crc32)
// SPDX-License-Identifier: Apache-2.0
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

function header(name, value) {
  const n = Buffer.from(name), v = Buffer.from(value);
  const b = Buffer.alloc(1 + n.length + 1 + 2 + v.length);
  b.writeUInt8(n.length, 0); n.copy(b, 1);
  b.writeUInt8(7, 1 + n.length);                 // type 7 = string
  b.writeUInt16BE(v.length, 2 + n.length); v.copy(b, 4 + n.length);
  return b;
}

function message(headers, payload) {
  const h = Buffer.concat(Object.entries(headers).map(([k, v]) => header(k, v)));
  const p = Buffer.from(JSON.stringify(payload));
  const total = 12 + h.length + p.length + 4;
  const prelude = Buffer.alloc(12);
  prelude.writeUInt32BE(total, 0);
  prelude.writeUInt32BE(h.length, 4);
  prelude.writeUInt32BE(zlib.crc32(prelude.subarray(0, 8)), 8);
  const body = Buffer.concat([prelude, h, p]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(body), 0);
  return Buffer.concat([body, crc]);
}

const ev = (type, payload) => message({':event-type': type, ':content-type': 'application/json', ':message-type': 'event'}, payload);

const streams = {
  stream_text: [
    ev('messageStart', {role: 'assistant'}),
    ev('contentBlockDelta', {contentBlockIndex: 0, delta: {text: 'Hi'}}),
    ev('contentBlockDelta', {contentBlockIndex: 0, delta: {text: ' there'}}),
    ev('contentBlockStop', {contentBlockIndex: 0}),
    ev('messageStop', {stopReason: 'end_turn'}),
    ev('metadata', {usage: {inputTokens: 11, outputTokens: 3, totalTokens: 14}, metrics: {latencyMs: 120}}),
  ],
  stream_tools: [
    ev('messageStart', {role: 'assistant'}),
    ev('contentBlockDelta', {contentBlockIndex: 0, delta: {text: 'Ok.'}}),
    ev('contentBlockStop', {contentBlockIndex: 0}),
    ev('contentBlockStart', {contentBlockIndex: 1, start: {toolUse: {toolUseId: 'tooluse_1', name: 'get_weather'}}}),
    ev('contentBlockDelta', {contentBlockIndex: 1, delta: {toolUse: {input: '{"city":'}}}),
    ev('contentBlockDelta', {contentBlockIndex: 1, delta: {toolUse: {input: '"Oslo"}'}}}),
    ev('contentBlockStop', {contentBlockIndex: 1}),
    ev('messageStop', {stopReason: 'tool_use'}),
    ev('metadata', {usage: {inputTokens: 200, outputTokens: 40, totalTokens: 240}}),
  ],
  stream_exception: [
    ev('messageStart', {role: 'assistant'}),
    message({':exception-type': 'throttlingException', ':content-type': 'application/json', ':message-type': 'exception'},
            {message: 'Too many requests'}),
  ],
};

for (const [name, msgs] of Object.entries(streams))
  fs.writeFileSync(path.join(__dirname, name + '.stream'), Buffer.concat(msgs));
