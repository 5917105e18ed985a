// bench/portkey-cluster.mjs: runs the pinned Portkey gateway for `make bench`
// with BENCH_PORTKEY_WORKERS node:cluster workers (default 2) sharing one port,
// so it gets the same two-worker budget as nginx and modelgate. Arguments are
// passed through to the gateway's own start-server.js (e.g. --port=N --headless).
// SPDX-License-Identifier: Apache-2.0
import cluster from 'node:cluster';

const workers = Number.parseInt(process.env.BENCH_PORTKEY_WORKERS ?? '2', 10);
if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
  console.error('portkey-cluster: BENCH_PORTKEY_WORKERS must be 1..64');
  process.exit(2);
}

if (cluster.isPrimary) {
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', (w, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers).length === 0) process.exit(0);
      return;
    }
    // A dead worker would silently halve the capacity: fail loudly instead.
    console.error(`portkey-cluster: worker ${w.process.pid} exited (${signal ?? code})`);
    process.exit(1);
  });
  const stop = () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  await import(new URL('./node_modules/@portkey-ai/gateway/build/start-server.js', import.meta.url));
}
