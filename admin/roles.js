// modelgate admin console — Roles: list, create, edit, delete.
// The role editor picks models from the gateway's configured models (plus
// free-form globs), the filters defined in the policy, limits and admin
// permissions. Saves go through review.js (diff first, If-Match).
// SPDX-License-Identifier: Apache-2.0
import { api } from './api.js';
import { h, clear, message, field, table, focus, announce } from './dom.js';
import { review } from './review.js';

export const LIMITS = ['requests_per_minute', 'tokens_per_minute', 'tokens_per_day', 'tokens_per_month',
  'usd_per_day', 'usd_per_month', 'max_tokens'];
export const PERMISSIONS = ['policy:read', 'policy:write', 'keys:read', 'keys:write', 'usage:read', 'audit:read'];
const NAME_RE = /^[A-Za-z0-9_.:-]{1,64}$/;

export async function loadPolicy() {
  const r = await api('GET', '/admin/v1/policy');
  return { doc: r.json, etag: r.etag };
}

export async function render(main, ctx) {
  const listBox = h('section', { 'aria-labelledby': 'roles-list-h' });
  const editBox = h('section', { class: 'editor', 'aria-live': 'off' });
  const note = h('div', {});
  main.append(note, listBox, editBox);
  let state = await loadPolicy();
  const canWrite = ctx.can('policy:write');

  const refresh = async (msg) => {
    state = await loadPolicy();
    clear(editBox);
    drawList();
    clear(note);
    if (msg) { const m = message('ok', msg); note.append(m); focus(m); }
  };

  function drawList() {
    const names = Object.keys(state.doc.roles).sort();
    const rows = names.map((n) => {
      const r = state.doc.roles[n];
      const lim = Object.entries(r.limits || {}).map(([k, v]) => `${k}: ${v}`).join(', ');
      return h('tr', {},
        h('th', { scope: 'row' }, n),
        h('td', {}, r.models.length ? r.models.join(', ') : h('em', {}, 'none')),
        h('td', {}, r.filters.join(', ') || '—'),
        h('td', {}, lim || '—'),
        h('td', {}, r.permissions.join(', ') || '—'),
        h('td', { class: 'actions' }, canWrite && [
          h('button', { type: 'button', onclick: () => edit(n), 'aria-label': `Edit role ${n}` }, 'Edit'),
          h('button', { type: 'button', class: 'danger', onclick: () => remove(n), 'aria-label': `Delete role ${n}` }, 'Delete'),
        ]));
    });
    clear(listBox).append(
      h('h2', { id: 'roles-list-h' }, `${names.length} role${names.length === 1 ? '' : 's'}`),
      canWrite ? h('p', {}, h('button', { type: 'button', class: 'primary', onclick: () => edit(null) }, 'New role'))
        : message('info', 'You can read the policy but not change it (policy:write).'),
      names.length ? table('Roles in the policy in force', ['Role', 'Models', 'Filters', 'Limits per user', 'Permissions', 'Actions'], rows)
        : h('p', {}, 'No roles yet.'));
  }

  // draft: the role object being edited (kept across a conflict reload).
  function edit(name, draft) {
    const isNew = name === null;
    const cur = isNew ? null : state.doc.roles[name];
    const d = draft || structuredClone(cur || { models: [], filters: [], permissions: [] });
    const form = roleForm(d, ctx.models.map((m) => m.name), Object.keys(state.doc.filters).sort(), isNew);
    const heading = h('h2', {}, isNew ? 'New role' : `Edit role ${name}`);
    const err = h('div', {});
    clear(editBox).append(heading, form.el, err);
    form.el.addEventListener('submit', (ev) => {
      ev.preventDefault();
      clear(err);
      const n = isNew ? form.name() : name;
      if (!NAME_RE.test(n)) {
        const m = message('error', 'Role name: 1-64 letters, digits, _ . : -');
        err.append(m); focus(m); return;
      }
      if (isNew && state.doc.roles[n]) {
        const m = message('error', `A role named ${n} already exists; edit it instead.`);
        err.append(m); focus(m); return;
      }
      const after = form.value();
      const before = state.doc.roles[n] || {};
      review({
        box: editBox, title: isNew ? `new role ${n}` : `role ${n}`, path: `roles.${n}`, before, after,
        save: () => api('PUT', `/admin/v1/roles/${encodeURIComponent(n)}`, { body: after, etag: state.etag }),
        onSaved: () => refresh(`Role ${n} saved.`),
        onBack: () => edit(isNew ? null : n, after),
        onConflict: async () => {
          state = await loadPolicy();
          drawList();
          announce('Reloaded the current policy');
          edit(state.doc.roles[n] ? n : null, after);
        },
      });
    });
    form.cancel.addEventListener('click', () => { clear(editBox); announce('Edit cancelled'); });
    focus(heading);
  }

  function remove(name) {
    review({
      box: editBox, title: `delete role ${name}`, path: `roles.${name}`,
      before: state.doc.roles[name], after: undefined,
      save: () => api('DELETE', `/admin/v1/roles/${encodeURIComponent(name)}`, { etag: state.etag }),
      onSaved: () => refresh(`Role ${name} deleted.`),
      onBack: () => clear(editBox),
      onConflict: () => refresh('The policy was reloaded; check the role is still to be deleted.'),
    });
  }

  drawList();
}

function checkboxes(legend, options, selected, hint) {
  const boxes = options.map((o) => h('input', { type: 'checkbox', value: o, checked: selected.includes(o) }));
  const el = h('fieldset', {}, h('legend', {}, legend), hint ? h('p', { class: 'hint' }, hint) : null,
    options.length ? h('ul', { class: 'checks' }, options.map((o, i) => h('li', {}, h('label', {}, boxes[i], ` ${o}`))))
      : h('p', {}, '(none defined)'));
  return { el, value: () => boxes.filter((b) => b.checked).map((b) => b.value) };
}

function limitsBox(legend, limits, names) {
  const inputs = names.map((k) => h('input', { type: 'number', min: '0', step: k.startsWith('usd') ? '0.01' : '1', inputmode: 'decimal', value: limits && limits[k] !== undefined ? String(limits[k]) : '' }));
  const el = h('fieldset', { class: 'limits' }, h('legend', {}, legend),
    h('p', { class: 'hint' }, 'Empty means no limit.'),
    h('div', { class: 'grid' }, names.map((k, i) => field(k.replaceAll('_', ' '), inputs[i]))));
  return {
    el,
    value: () => {
      const o = {};
      names.forEach((k, i) => { if (inputs[i].value.trim() !== '') o[k] = Number(inputs[i].value); });
      return Object.keys(o).length ? o : undefined;
    },
  };
}

export function roleForm(d, models, filters, isNew) {
  const nameIn = h('input', { type: 'text', required: true, pattern: '[A-Za-z0-9_.:\\-]{1,64}', autocomplete: 'off' });
  const picked = d.models.filter((m) => models.includes(m));
  const other = d.models.filter((m) => !models.includes(m));
  const modelBox = checkboxes('Models', models, picked, 'Configured models this role may use.');
  const otherIn = h('input', { type: 'text', value: other.join(', '), autocomplete: 'off' });
  modelBox.el.append(field('Other model names or patterns', otherIn, 'Comma-separated; * matches anything, e.g. gpt-4o*, or * for every model.'));
  const filterBox = checkboxes('Content filters', filters, d.filters || []);
  const lim = limitsBox('Limits per user', d.limits, LIMITS);
  const team = limitsBox('Team limits (all holders of the role together)', d.team_limits, LIMITS.filter((k) => k !== 'max_tokens'));
  const permBox = checkboxes('Admin permissions', PERMISSIONS, d.permissions || []);
  const cancel = h('button', { type: 'button' }, 'Cancel');
  const el = h('form', { class: 'role-form', novalidate: true },
    isNew ? field('Role name', nameIn, 'Letters, digits, _ . : -') : null,
    modelBox.el, filterBox.el, lim.el, team.el, permBox.el,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Review changes'), cancel));
  return {
    el, cancel,
    name: () => nameIn.value.trim(),
    value: () => {
      const extra = otherIn.value.split(',').map((s) => s.trim()).filter(Boolean);
      const r = { models: [...new Set([...modelBox.value(), ...extra])], filters: filterBox.value() };
      const l = lim.value(); if (l) r.limits = l;
      const t = team.value(); if (t) r.team_limits = t;
      r.permissions = permBox.value();
      return r;
    },
  };
}
