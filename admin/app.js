// modelgate admin console — start-up, navigation, permissions.
// Pages are modules with render(main, ctx); the URL hash picks the page
// (#/roles, #/keys, ...), so reloads and the back button work.
// SPDX-License-Identifier: Apache-2.0
import { api, loginUrl } from './api.js';
import { h, clear, message, focus } from './dom.js';
import * as roles from './roles.js';
import * as mappings from './mappings.js';
import * as filters from './filters.js';
import * as keys from './keys.js';
import * as usage from './usage.js';
import * as audit from './audit.js';

const PAGES = {
  roles: { mod: roles, perm: 'policy:read', title: 'Roles' },
  mappings: { mod: mappings, perm: 'policy:read', title: 'Role mappings' },
  filters: { mod: filters, perm: 'policy:read', title: 'Filters' },
  keys: { mod: keys, perm: 'keys:read', title: 'API keys' },
  usage: { mod: usage, perm: 'usage:read', title: 'Usage' },
  audit: { mod: audit, perm: 'audit:read', title: 'Audit log' },
};

let ctx = null;

async function boot() {
  const main = document.getElementById('main');
  try {
    const r = await api('GET', '/admin/v1/console');
    ctx = r.json;
  } catch (e) {
    clear(main).append(message('error', e.message, ' ', h('a', { href: loginUrl() }, 'Sign in')));
    return;
  }
  ctx.can = (p) => ctx.permissions.includes(p);
  document.getElementById('who').textContent =
    `${ctx.email || ctx.subject || ctx.kind}${ctx.roles.length ? ` (${ctx.roles.join(', ')})` : ''}`;
  for (const li of document.querySelectorAll('#nav li')) {
    if (!ctx.can(li.dataset.perm)) li.remove();
  }
  window.addEventListener('hashchange', route);
  route();
}

function route() {
  const main = document.getElementById('main');
  const name = (location.hash.match(/^#\/([a-z]+)/) || [])[1];
  const allowed = Object.keys(PAGES).filter((k) => ctx.can(PAGES[k].perm));
  if (!allowed.length) {
    clear(main).append(h('h1', {}, 'Nothing to administer'),
      message('info', 'Your roles grant no admin permissions (policy:read, policy:write, keys:read, keys:write, usage:read, audit:read). Ask an administrator if you need access.'));
    return;
  }
  if (!name || !PAGES[name]) { location.replace(`#/${allowed[0]}`); return; }
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.getAttribute('href') === `#/${name}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const page = PAGES[name];
  document.title = `${page.title} — modelgate admin`;
  clear(main);
  if (!ctx.can(page.perm)) {
    main.append(h('h1', {}, page.title), message('error', `This page needs the ${page.perm} permission, which your roles do not grant.`));
    return;
  }
  const heading = h('h1', {}, page.title);
  main.append(heading);
  page.mod.render(main, ctx).catch((e) => main.append(message('error', e.message)));
  focus(heading);
}

boot();
