// modelgate — a real OpenID provider (oidc-provider 9.x) on loopback for the
// browser SSO tests: one static confidential client (client_secret_basic),
// the built-in dev login form (any password), automatic consent, a `groups`
// claim (also in the id_token) and RP-initiated logout.
//
// SPDX-License-Identifier: Apache-2.0
'use strict';

const http = require('node:http');

const USERS = {
  alice: { email: 'alice@example.com', name: 'Alice Example', groups: ['ai-users', 'admins'], department: 'cc-42' },
  bob: { email: 'bob@example.com', name: 'Bob Example', groups: ['ai-users'], department: 'cc-7' },
};

// opts: { redirectUri, postLogoutRedirectUri, clientId, clientSecret }
async function startProvider(opts) {
  const { default: Provider } = await import('oidc-provider');
  const server = http.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${server.address().port}`;
  let tokenRequests = 0;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: opts.clientId || 'modelgate',
      client_secret: opts.clientSecret || 'test-secret',
      redirect_uris: [opts.redirectUri],
      post_logout_redirect_uris: [opts.postLogoutRedirectUri],
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code'],
      response_types: ['code'],
    }],
    async findAccount(ctx, id) {
      const u = USERS[id] || { email: `${id}@example.com`, name: id, groups: [], department: null };
      return {
        accountId: id,
        async claims() { return { sub: id, email: u.email, email_verified: true, name: u.name, groups: u.groups, department: u.department }; },
      };
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups', 'department'] },
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    pkce: { required: () => true },
    cookies: { keys: ['modelgate-test-idp-cookie-key'] },
    // Auto-consent: every requested scope is granted.
    async loadExistingGrant(ctx) {
      const clientId = ctx.oidc.client.clientId;
      const grantId = ctx.oidc.session.grantIdFor(clientId);
      let grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
      if (!grant) {
        grant = new ctx.oidc.provider.Grant({ clientId, accountId: ctx.oidc.session.accountId });
      }
      grant.addOIDCScope('openid email profile groups');
      grant.addOIDCClaims(['groups', 'department', 'email', 'name']);
      await grant.save();
      return grant;
    },
  });
  provider.on('grant.success', () => { tokenRequests++; });
  const cb = provider.callback();
  server.on('request', (req, res) => cb(req, res));
  return {
    issuer,
    provider,
    get tokenRequests() { return tokenRequests; },
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

module.exports = { startProvider, USERS };
