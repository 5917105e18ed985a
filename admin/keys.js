// modelgate admin console — API keys: create (the key is shown once, with
// a copy button), list, revoke.
// SPDX-License-Identifier: Apache-2.0
import { api } from './api.js';
import { h, clear, message, field, table, focus, announce, fmtDate } from './dom.js';

export async function render(main, ctx) {
  const canWrite = ctx.can('keys:write');
  const createBox = h('section', { 'aria-labelledby': 'key-new-h' });
  const listBox = h('section', { 'aria-labelledby': 'key-list-h' });
  main.append(createBox, listBox);
  let roleNames = [];
  if (ctx.can('policy:read')) {
    try { roleNames = Object.keys((await api('GET', '/admin/v1/policy')).json.roles).sort(); } catch { /* free text then */ }
  }

  async function drawList() {
    const r = await api('GET', '/admin/v1/keys');
    const keys = r.json.data;
    clear(listBox).append(h('h2', { id: 'key-list-h' }, 'Keys'),
      keys.length ? table('API keys (the secret itself is never shown again)',
        ['Id', 'Prefix', 'User', 'Role', 'Name', 'Created', 'Expires', 'State', 'Last used', ''],
        keys.map((k) => h('tr', {}, h('th', { scope: 'row' }, h('code', {}, k.id)), h('td', {}, h('code', {}, k.prefix || '')),
          h('td', {}, k.user), h('td', {}, k.role), h('td', {}, k.name || '—'), h('td', {}, fmtDate(k.created_at)),
          h('td', {}, fmtDate(k.expires_at)), h('td', {}, k.state), h('td', {}, fmtDate(k.last_used_at)),
          h('td', {}, canWrite && k.state === 'active'
            ? h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke key ${k.id}${k.name ? ` (${k.name})` : ''}`, onclick: () => revoke(k) }, 'Revoke') : null))))
        : h('p', {}, 'No keys yet.'));
  }

  function revoke(k) {
    const yes = h('button', { type: 'button', class: 'danger' }, 'Revoke now');
    const no = h('button', { type: 'button' }, 'Keep it');
    const box = h('div', { role: 'alertdialog', 'aria-labelledby': 'rv-h', class: 'confirm' },
      h('h3', { id: 'rv-h' }, `Revoke key ${k.id}?`),
      h('p', {}, `Owner ${k.user}, role ${k.role}${k.name ? `, "${k.name}"` : ''}. Requests with it are refused from now on; this cannot be undone.`),
      h('div', { class: 'actions' }, yes, no));
    listBox.prepend(box);
    yes.focus();
    no.addEventListener('click', () => { box.remove(); announce('Not revoked'); });
    yes.addEventListener('click', async () => {
      try {
        await api('DELETE', `/admin/v1/keys/${encodeURIComponent(k.id)}`);
        await drawList();
        const m = message('ok', `Key ${k.id} revoked.`);
        listBox.prepend(m); focus(m);
      } catch (e) { box.append(message('error', e.message)); }
    });
  }

  function drawCreate() {
    clear(createBox).append(h('h2', { id: 'key-new-h' }, 'Create a key'));
    if (!canWrite) { createBox.append(message('info', 'Creating and revoking keys needs keys:write.')); return; }
    const user = h('input', { type: 'email', required: true, autocomplete: 'off' });
    const role = roleNames.length ? h('select', { required: true }, roleNames.map((r) => h('option', { value: r }, r)))
      : h('input', { type: 'text', required: true });
    const name = h('input', { type: 'text', maxlength: '200' });
    const expires = h('select', {}, [['30d', '30 days'], ['90d', '90 days'], ['365d', '1 year'], ['', 'never']].map(([v, t]) => h('option', { value: v, selected: v === '90d' }, t)));
    const out = h('div', {});
    const form = h('form', { novalidate: true },
      h('div', { class: 'grid' }, field('Owner (email)', user), field('Role', role), field('Name', name, 'What it is for, e.g. ci-pipeline'), field('Expires', expires)),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create key')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clear(out);
      const body = { user: user.value.trim(), role: role.value.trim() };
      if (name.value.trim()) body.name = name.value.trim();
      if (expires.value) body.expires = expires.value;
      try {
        const r = await api('POST', '/admin/v1/keys', { body });
        out.append(shownOnce(r.json));
        form.reset();
        await drawList();
      } catch (e) { const m = message('error', e.message); out.append(m); focus(m); }
    });
    createBox.append(form, out);
  }

  drawCreate();
  await drawList();
}

// The new key, once: a read-only field, a copy button, and a warning.
function shownOnce(k) {
  const keyIn = h('input', { type: 'text', readonly: true, value: k.key, id: 'new-key', class: 'secret', spellcheck: 'false' });
  const copied = h('span', { role: 'status', class: 'hint' });
  const copy = h('button', { type: 'button' }, 'Copy key');
  copy.addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(keyIn.value); copied.textContent = 'Copied to the clipboard.'; }
    catch { keyIn.select(); copied.textContent = 'Selected: press Ctrl+C (or ⌘C) to copy.'; }
  });
  const box = message('warn',
    h('h3', {}, `Key ${k.id} created for ${k.user} (role ${k.role})`),
    h('p', {}, h('strong', {}, 'Copy it now: it is shown only this once. '), 'modelgate stores only a hash; a lost key has to be revoked and replaced.'),
    h('div', { class: 'copyrow' }, h('label', { for: 'new-key' }, 'New key'), keyIn, copy), copied,
    k.expires_at ? h('p', {}, `Expires ${fmtDate(k.expires_at)}.`) : h('p', {}, 'Does not expire.'));
  setTimeout(() => { keyIn.focus(); keyIn.select(); }, 0);
  return box;
}
