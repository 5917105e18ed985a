// modelgate admin console — Usage: spend and tokens per day, top users,
// top models, by cost center, for a date range and filters; and the CSV
// download, which is GET /admin/v1/usage?...&format=csv — the same report
// code as `modelgate usage --format csv`, so the same bytes.
// SPDX-License-Identifier: Apache-2.0
import { api } from './api.js';
import { h, clear, message, field, focus } from './dom.js';
import { columns, hbars } from './charts.js';

const FILTERS = ['user', 'role', 'model', 'cost_center'];
const GROUPS = ['user', 'role', 'model', 'day', 'cost_center', 'key'];
const iso = (d) => d.toISOString().slice(0, 10);
const usd = (v) => `$${Number(v).toFixed(Math.abs(v) < 10 ? 4 : 2)}`;
const num = (v) => Number(v).toLocaleString('en-US', { maximumFractionDigits: 0 });

export function csvUrl(from, to, groups, filters) {
  let u = `/admin/v1/usage?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}` +
    `&group_by=${groups.map(encodeURIComponent).join(',')}&format=csv`;
  for (const [k, v] of Object.entries(filters)) if (v) u += `&${k}=${encodeURIComponent(v)}`;
  return u;
}

export async function render(main) {
  const today = new Date();
  const from = h('input', { type: 'date', required: true, value: iso(new Date(today.getTime() - 29 * 86400e3)) });
  const to = h('input', { type: 'date', required: true, value: iso(today) });
  const fIn = Object.fromEntries(FILTERS.map((k) => [k, h('input', { type: 'text', autocomplete: 'off' })]));
  const out = h('div', { 'aria-live': 'polite', 'aria-busy': 'false' });
  const form = h('form', { class: 'usage-form', novalidate: true },
    h('fieldset', {}, h('legend', {}, 'Range and filters'),
      h('div', { class: 'grid' }, field('From', from), field('To (inclusive)', to),
        FILTERS.map((k) => field(k.replace('_', ' '), fIn[k], 'exact match; empty: all')))),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Show usage')));
  const groupBoxes = GROUPS.map((g) => h('input', { type: 'checkbox', value: g, checked: g === 'user' || g === 'model' }));
  const link = h('a', { class: 'button', download: 'usage.csv', id: 'csv-link' }, 'Download CSV');
  const csvBox = h('section', { 'aria-labelledby': 'csv-h', class: 'csv' },
    h('h2', { id: 'csv-h' }, 'CSV export'),
    h('fieldset', {}, h('legend', {}, 'Group by (columns in this order)'),
      h('ul', { class: 'checks' }, GROUPS.map((g, i) => h('li', {}, h('label', {}, groupBoxes[i], ` ${g}`))))),
    h('p', {}, link, ' ', h('span', { class: 'hint' }, 'Same rows and bytes as ', h('code', { id: 'csv-cli' }, ''))));
  main.append(form, out, csvBox);

  const filters = () => Object.fromEntries(FILTERS.map((k) => [k, fIn[k].value.trim()]));
  const updateLink = () => {
    const groups = groupBoxes.filter((b) => b.checked).map((b) => b.value);
    link.href = csvUrl(from.value, to.value, groups, filters());
    const fl = Object.entries(filters()).filter(([, v]) => v).map(([k, v]) => ` --filter ${k}=${v}`).join('');
    document.getElementById('csv-cli').textContent =
      `modelgate usage --from ${from.value} --to ${to.value}${groups.length ? ` --group-by ${groups.join(',')}` : ''}${fl} --format csv`;
  };
  form.addEventListener('input', updateLink);
  csvBox.addEventListener('change', updateLink);
  updateLink();

  const show = async () => {
    clear(out);
    out.setAttribute('aria-busy', 'true');
    const q = (g) => {
      let u = `/admin/v1/usage?from=${from.value}&to=${to.value}&group_by=${g}&format=json`;
      for (const [k, v] of Object.entries(filters())) if (v) u += `&${k}=${encodeURIComponent(v)}`;
      return api('GET', u).then((r) => r.json);
    };
    try {
      const [day, user, model, cc] = await Promise.all(['day', 'user', 'model', 'cost_center'].map(q));
      const top = (rep, key) => rep.rows.map((r) => ({ label: r[key] ?? '(none)', value: Number(r.cost_usd) }))
        .sort((a, b) => b.value - a.value).slice(0, 10);
      const t = day.totals;
      out.append(
        h('h2', { id: 'usage-h' }, `Usage ${day.from} to ${day.to}`),
        h('dl', { class: 'totals' },
          h('div', {}, h('dt', {}, 'Requests'), h('dd', {}, num(t.requests))),
          h('div', {}, h('dt', {}, 'Tokens'), h('dd', {}, num(t.total_tokens))),
          h('div', {}, h('dt', {}, 'Spend'), h('dd', {}, usd(t.cost_usd)))),
        h('div', { class: 'charts' },
          columns('Spend per day (USD)', day.rows.map((r) => ({ label: r.day, value: Number(r.cost_usd) })), usd),
          columns('Tokens per day', day.rows.map((r) => ({ label: r.day, value: Number(r.total_tokens) })), num),
          hbars('Top users by spend', top(user, 'user'), usd),
          hbars('Top models by spend', top(model, 'model'), usd),
          hbars('Spend by cost center', top(cc, 'cost_center'), usd)));
    } catch (e) {
      const m = message('error', e.message);
      out.append(m); focus(m);
    } finally {
      out.setAttribute('aria-busy', 'false');
    }
  };
  form.addEventListener('submit', (ev) => { ev.preventDefault(); updateLink(); show(); });
  await show();
}
