// modelgate — a throwaway PostgreSQL cluster for integration tests.
//
// initdb into a temp dir (owned by the `postgres` system user when we run as
// root: PostgreSQL refuses to run as root), listening on a unix socket in
// that dir and on a free TCP port on 127.0.0.1. fsync is off: these tests
// check the gateway's crash behaviour, not PostgreSQL's.
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const { execFileSync, spawnSync } = require('node:child_process');

const PGBIN = process.env.PGBIN || '/usr/lib/postgresql/15/bin';
const isRoot = process.getuid && process.getuid() === 0;

function asPg(cmd, args, opts = {}) {
  const bin = path.join(PGBIN, cmd);
  const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  return execFileSync(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...opts }).toString();
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function available() {
  return fs.existsSync(path.join(PGBIN, 'initdb'));
}

async function startPg() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgpg-'));
  if (isRoot) execFileSync('chown', ['postgres:postgres', dir]);
  fs.chmodSync(dir, 0o755);
  const data = path.join(dir, 'data');
  asPg('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync']);
  const port = await freePort();
  const pg = {
    dir, data, port,
    url: `postgresql://postgres@127.0.0.1:${port}/mg`,
    start() {
      asPg('pg_ctl', ['-D', data, '-l', path.join(dir, 'log'), '-w', '-t', '30', 'start', '-o',
        `-k ${dir} -p ${port} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off ` +
        '-c max_wal_size=4GB -c shared_buffers=256MB -c work_mem=64MB']);
    },
    stop(mode = 'fast') {
      try { asPg('pg_ctl', ['-D', data, '-m', mode, '-w', 'stop']); } catch (_) { /* already down */ }
    },
    // SQL through psql over TCP; returns unaligned, tuples-only output
    sql(q, db = 'mg') {
      const r = spawnSync('psql', ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port),
        '-U', 'postgres', '-d', db, '-c', q], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`psql failed: ${r.stderr}`);
      return r.stdout.trim();
    },
    destroy() {
      pg.stop('immediate');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  pg.start();
  pg.sql('CREATE DATABASE mg', 'postgres');
  return pg;
}

module.exports = { startPg, available, freePort, PGBIN };
