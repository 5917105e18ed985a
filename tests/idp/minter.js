// modelgate — loopback token minter for the bearer-JWT negative matrix.
//
// Serves an OpenID discovery document and a JWKS on 127.0.0.1 and signs
// whatever claims and headers a test asks for (wrong iss/aud, alg none,
// expired, HS256 keyed with the RSA public key, unknown kid, bad signature).
// Only node:crypto; no dependencies. Counts JWKS fetches so tests can check
// refetch throttling.
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const crypto = require('node:crypto');
const http = require('node:http');

const b64u = (b) => Buffer.from(b).toString('base64url');

function makeKeys() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const rsa2 = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });   // rotated-in later
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ed = crypto.generateKeyPairSync('ed25519');
  const jwk = (k, kid, alg) => ({ ...k.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' });
  return {
    rsa: { ...rsa, kid: 'rsa-1', jwk: jwk(rsa, 'rsa-1', 'RS256') },
    rsa2: { ...rsa2, kid: 'rsa-2', jwk: jwk(rsa2, 'rsa-2', 'RS256') },
    ec: { ...ec, kid: 'ec-1', jwk: jwk(ec, 'ec-1', 'ES256') },
    ed: { ...ed, kid: 'ed-1', jwk: jwk(ed, 'ed-1', 'EdDSA') },
  };
}

// Signs header.payload. alg decides the algorithm; key is one of keys.*.
function sign(alg, key, data) {
  const buf = Buffer.from(data);
  switch (alg) {
    case 'RS256': return crypto.sign('sha256', buf, key.privateKey);
    case 'RS384': return crypto.sign('sha384', buf, key.privateKey);
    case 'PS256': return crypto.sign('sha256', buf, { key: key.privateKey, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    case 'ES256': return crypto.sign('sha256', buf, { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
    case 'EdDSA': return crypto.sign(null, buf, key.privateKey);
    default: throw new Error(`minter cannot sign ${alg}`);
  }
}

async function startMinter(opts = {}) {
  const keys = makeKeys();
  const published = [keys.rsa.jwk, keys.ec.jwk, keys.ed.jwk];
  let jwksFetches = 0;
  let issuer;
  let hang = false;
  const held = [];
  const server = http.createServer((req, res) => {
    if (hang) { held.push(res); return; }   // a hung IdP: accept, never answer
    if (req.url === '/.well-known/openid-configuration') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({
        issuer, jwks_uri: `${issuer}/jwks`, authorization_endpoint: `${issuer}/auth`,
        token_endpoint: `${issuer}/token`, response_types_supported: ['code'],
        subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['RS256'],
      }));
    } else if (req.url === '/jwks') {
      jwksFetches++;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: published }));
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  issuer = `http://127.0.0.1:${server.address().port}`;

  const m = {
    issuer, keys,
    get jwksFetches() { return jwksFetches; },
    publish(jwk) { published.push(jwk); },
    // hang(true): every request is accepted and never answered (like SIGSTOP).
    hang(on) { hang = on; if (!on) while (held.length) held.pop().destroy(); },
    close() {
      hang = false;
      while (held.length) held.pop().destroy();
      server.closeAllConnections();
      return new Promise((r) => server.close(r));
    },
    // claims: merged over sane defaults; o.header merged over {alg, kid, typ}.
    // o.key: keys.rsa (default) ...; o.alg 'none' / 'HS256-pub' / o.tamper.
    token(claims = {}, o = {}) {
      const now = Math.floor(Date.now() / 1000);
      const key = o.key || keys.rsa;
      const alg = o.alg || (key === keys.ec ? 'ES256' : key === keys.ed ? 'EdDSA' : 'RS256');
      const header = { alg: alg === 'HS256-pub' ? 'HS256' : alg, kid: key.kid, typ: 'at+jwt', ...(o.header || {}) };
      const payload = {
        iss: issuer, sub: 'user-1', aud: opts.audience || 'modelgate', exp: now + 600, iat: now,
        email: 'alice@example.com', groups: ['ai-users'], ...claims,
      };
      for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
      const data = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`;
      let sig;
      if (alg === 'none') sig = Buffer.alloc(0);
      else if (alg === 'HS256-pub') {
        // The classic confusion attack: HMAC keyed with the RSA public key PEM.
        const pem = key.publicKey.export({ type: 'spki', format: 'pem' });
        sig = crypto.createHmac('sha256', pem).update(data).digest();
      } else sig = sign(alg, key, data);
      if (o.tamper) sig[0] ^= 1;
      return `${data}.${b64u(sig)}`;
    },
  };
  return m;
}

module.exports = { startMinter };
