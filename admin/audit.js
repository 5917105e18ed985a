// modelgate admin console — the audit log: who changed what, when, with the
// before/after of each change.
// SPDX-License-Identifier: Apache-2.0
import { api } from './api.js';
import { h, clear, message, field, table, focus, fmtDate } from './dom.js';
import { diff, diffView } from './diff.js';

export async function render(main) {
  const today = new Date();
  const iso = (d) => d.toISOString().slice(0, 10);
  const from = h('input', { type: 'date', value: iso(new Date(today.getTime() - 6 * 86400e3)) });
  const to = h('input', { type: 'date', value: iso(today) });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { novalidate: true },
    h('div', { class: 'grid' }, field('From', from), field('To (inclusive)', to)),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Show entries')));
  main.append(form, out);
  const show = async () => {
    clear(out);
    try {
      const r = await api('GET', `/admin/v1/audit?from=${from.value}&to=${to.value}`);
      const rows = Array.isArray(r.json) ? r.json : (r.json.data || r.json.entries || []);
      out.append(rows.length ? table(`${rows.length} change${rows.length === 1 ? '' : 's'}, oldest first`,
        ['When', 'Who', 'Action', 'Target', 'Version', 'Change'],
        rows.map((e) => h('tr', {}, h('td', {}, fmtDate(e.ts)), h('td', {}, e.actor), h('td', {}, h('code', {}, e.action)),
          h('td', {}, e.target), h('td', { class: 'num' }, e.policy_version ?? '—'),
          h('td', {}, h('details', {}, h('summary', {}, 'Show'), diffView(diff(e.before ?? undefined, e.after ?? undefined, e.target || ''), 'No content change recorded.'))))))
        : h('p', {}, 'No changes in this range.'));
    } catch (e) {
      const m = message('error', e.message); out.append(m); focus(m);
    }
  };
  form.addEventListener('submit', (ev) => { ev.preventDefault(); show(); });
  await show();
}
