// modelgate — SPEC §7 "10,000 idle keep-alive TLS connections": opens N TLS
// connections to host:port, sends one keep-alive GET /healthz on each (so
// every connection is a finished HTTP/1.1 exchange, idle in keep-alive),
// then holds them all open and prints one JSON line when they are all up;
// exits (closing them) on SIGTERM or stdin end.
//   node bench/idle_tls.mjs PORT N
// SPDX-License-Identifier: Apache-2.0
import tls from 'node:tls';

const port = Number(process.argv[2]);
const total = Number(process.argv[3] || 10000);
const parallel = 200;
const socks = [];
let failed = 0;

function one() {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      s.write('GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n');
    });
    let buf = '';
    const done = (ok) => { if (!ok) { failed++; s.destroy(); } resolve(); };
    s.setEncoding('utf8');
    s.on('data', (d) => {
      buf += d;
      if (/\r\n\r\n[\s\S]*\}/.test(buf)) {
        if (buf.startsWith('HTTP/1.1 200')) { socks.push(s); done(true); } else done(false);
      }
    });
    s.on('error', () => done(false));
    s.setTimeout(30000, () => done(false));
  });
}

let next = 0;
async function worker() {
  while (next < total) { next++; await one(); }
}
const t0 = Date.now();
await Promise.all(Array.from({ length: parallel }, worker));
for (const s of socks) s.setTimeout(0);
console.log(JSON.stringify({ open: socks.length, failed, seconds: (Date.now() - t0) / 1000 }));
const bye = () => { for (const s of socks) s.destroy(); process.exit(0); };
process.on('SIGTERM', bye);
process.stdin.on('end', bye);
process.stdin.resume();
