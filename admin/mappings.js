// modelgate admin console — Role mappings: IdP claim value -> role.
// The whole array is edited and saved at once (PUT /admin/v1/role-mappings).
// SPDX-License-Identifier: Apache-2.0
import { api } from './api.js';
import { h, clear, message, focus, announce } from './dom.js';
import { review } from './review.js';
import { loadPolicy } from './roles.js';

export async function render(main, ctx) {
  let state = await loadPolicy();
  const canWrite = ctx.can('policy:write');
  const box = h('section', {});
  main.append(h('p', {}, 'Sign-ins get the roles whose claim matches: e.g. IdP group ', h('code', {}, 'ai-users'), ' becomes role ', h('code', {}, 'engineer'), '. API keys carry the role they were issued with.'), box);

  function draw(draft, note) {
    const rows = (draft || state.doc.role_mappings).map((m) => ({ ...m }));
    const roleNames = Object.keys(state.doc.roles).sort();
    const tbody = h('tbody', {});
    const line = (m, i) => {
      const claim = h('input', { type: 'text', value: m.claim, 'aria-label': `Mapping ${i + 1}: claim`, disabled: !canWrite });
      const eq = h('input', { type: 'text', value: m.equals, 'aria-label': `Mapping ${i + 1}: value`, disabled: !canWrite });
      const role = h('select', { 'aria-label': `Mapping ${i + 1}: role`, disabled: !canWrite },
        [...new Set([...roleNames, m.role])].filter(Boolean).map((r) => h('option', { value: r, selected: r === m.role }, r)));
      const del = canWrite ? h('button', { type: 'button', class: 'danger', 'aria-label': `Remove mapping ${i + 1}` }, 'Remove') : null;
      const tr = h('tr', {}, h('td', {}, claim), h('td', {}, eq), h('td', {}, role), h('td', {}, del));
      tr.read = () => ({ claim: claim.value.trim(), equals: eq.value, role: role.value });
      if (del) del.addEventListener('click', () => { tr.remove(); announce(`Mapping ${i + 1} removed`); });
      return tr;
    };
    rows.forEach((m, i) => tbody.append(line(m, i)));
    const read = () => [...tbody.children].map((tr) => tr.read());
    const form = h('form', { novalidate: true },
      h('table', {}, h('caption', {}, 'Role mappings, in order'),
        h('thead', {}, h('tr', {}, ['Claim', 'Equals', 'Role', ''].map((x) => h('th', { scope: 'col' }, x)))), tbody),
      canWrite && h('div', { class: 'actions' },
        h('button', { type: 'button', onclick: () => { const tr = line({ claim: 'groups', equals: '', role: roleNames[0] || '' }, tbody.children.length); tbody.append(tr); tr.querySelector('input').focus(); } }, 'Add mapping'),
        h('button', { type: 'submit', class: 'primary' }, 'Review changes')));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const after = read();
      review({
        box, title: 'role mappings', path: 'role_mappings', before: state.doc.role_mappings, after,
        save: () => api('PUT', '/admin/v1/role-mappings', { body: after, etag: state.etag }),
        onSaved: async () => { state = await loadPolicy(); draw(null, 'Role mappings saved.'); },
        onBack: () => draw(after),
        onConflict: async () => { state = await loadPolicy(); draw(after, 'Reloaded: the table shows your edit; review it against the current mappings.'); },
      });
    });
    clear(box);
    if (note) { const m = message('ok', note); box.append(m); focus(m); }
    if (!canWrite) box.append(message('info', 'You can read the policy but not change it (policy:write).'));
    box.append(form);
  }
  draw();
}
