// modelgate admin console — Filters: list, create, edit, and "try it":
// a sample text run through the server's real filter engine
// (POST /admin/v1/filters/{name}/test with the draft definition).
// SPDX-License-Identifier: Apache-2.0
import { api } from './api.js';
import { h, clear, message, field, table, focus } from './dom.js';
import { review } from './review.js';
import { loadPolicy } from './roles.js';

const DETECTORS = ['email', 'phone', 'credit_card', 'ssn', 'iban', 'api_key', 'private_key'];
const NAME_RE = /^[A-Za-z0-9_.:-]{1,64}$/;

export async function render(main, ctx) {
  let state = await loadPolicy();
  const canWrite = ctx.can('policy:write');
  const listBox = h('section', {});
  const editBox = h('section', { class: 'editor' });
  main.append(listBox, editBox);

  function drawList(note) {
    const names = Object.keys(state.doc.filters).sort();
    clear(listBox);
    if (note) { const m = message('ok', note); listBox.append(m); focus(m); }
    listBox.append(
      h('p', {}, h('button', { type: 'button', class: canWrite ? 'primary' : '', onclick: () => edit(null) }, canWrite ? 'New filter' : 'Try a new pattern')),
      names.length ? table('Filters in the policy in force', ['Filter', 'Detectors', 'Patterns', 'Action', 'Direction', ''],
        names.map((n) => {
          const f = state.doc.filters[n];
          return h('tr', {}, h('th', { scope: 'row' }, n), h('td', {}, (f.detectors || []).join(', ') || '—'),
            h('td', {}, (f.patterns || []).map((p) => h('code', {}, p, ' '))), h('td', {}, f.action), h('td', {}, f.direction),
            h('td', {}, h('button', { type: 'button', onclick: () => edit(n), 'aria-label': `${canWrite ? 'Edit' : 'Try'} filter ${n}` }, canWrite ? 'Edit / try' : 'Try')));
        })) : h('p', {}, 'No filters yet.'));
  }

  function edit(name, draft) {
    const isNew = name === null;
    const d = draft || structuredClone(state.doc.filters[name] || { detectors: [], patterns: [], action: 'redact', direction: 'input' });
    const nameIn = h('input', { type: 'text', autocomplete: 'off' });
    const dets = DETECTORS.map((x) => h('input', { type: 'checkbox', value: x, checked: (d.detectors || []).includes(x) }));
    const pats = h('textarea', { rows: '3', spellcheck: 'false' });
    pats.value = (d.patterns || []).join('\n');
    const sel = (label, opts, v) => field(label, h('select', {}, opts.map((o) => h('option', { value: o, selected: o === v }, o))));
    const action = sel('Action', ['block', 'redact', 'flag'], d.action);
    const direction = sel('Direction', ['input', 'output', 'both'], d.direction);
    const value = () => {
      const f = {};
      const ds = dets.filter((x) => x.checked).map((x) => x.value);
      const ps = pats.value.split('\n').map((s) => s.trim()).filter(Boolean);
      if (ds.length) f.detectors = ds;
      if (ps.length) f.patterns = ps;
      f.action = action.querySelector('select').value;
      f.direction = direction.querySelector('select').value;
      return f;
    };
    const heading = h('h2', {}, isNew ? 'New filter' : `Filter ${name}`);
    const err = h('div', {});
    const form = h('form', { novalidate: true },
      isNew ? field('Filter name', nameIn) : null,
      h('fieldset', {}, h('legend', {}, 'Built-in detectors'),
        h('ul', { class: 'checks' }, DETECTORS.map((x, i) => h('li', {}, h('label', {}, dets[i], ` ${x}`))))),
      field('Custom patterns (PCRE2, one per line)', pats, 'e.g. (?i)\\bproject\\s+bluebird\\b'),
      h('div', { class: 'grid' }, action, direction),
      canWrite && h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Review changes'),
        h('button', { type: 'button', onclick: () => clear(editBox) }, 'Cancel')));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      clear(err);
      const n = isNew ? nameIn.value.trim() : name;
      if (!NAME_RE.test(n)) { const m = message('error', 'Filter name: 1-64 letters, digits, _ . : -'); err.append(m); focus(m); return; }
      const after = value();
      review({
        box: editBox, title: `filter ${n}`, path: `filters.${n}`, before: state.doc.filters[n] || {}, after,
        save: () => api('PUT', `/admin/v1/filters/${encodeURIComponent(n)}`, { body: after, etag: state.etag }),
        onSaved: async () => { state = await loadPolicy(); clear(editBox); drawList(`Filter ${n} saved.`); },
        onBack: () => edit(isNew ? null : n, after),
        onConflict: async () => { state = await loadPolicy(); drawList(); edit(state.doc.filters[n] ? n : null, after); },
      });
    });
    clear(editBox).append(heading, form, err, tryIt(() => (isNew ? nameIn.value.trim() || 'draft' : name), value));
    focus(heading);
  }
  drawList();
}

// The "try it" box: what the real engine would block or redact in a sample.
function tryIt(nameOf, draftOf) {
  const text = h('textarea', { rows: '4' });
  const dir = h('select', {}, ['input', 'output'].map((o) => h('option', { value: o }, o)));
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'try', novalidate: true },
    h('h3', {}, 'Try it'),
    h('p', { class: 'hint' }, 'Runs the gateway\'s own filter engine on this text with the definition above (saved or not). Nothing is stored or sent upstream.'),
    field('Sample text', text), field('As', dir),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Test')), out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(out);
    const name = NAME_RE.test(nameOf()) ? nameOf() : 'draft';
    try {
      const r = await api('POST', `/admin/v1/filters/${encodeURIComponent(name)}/test`,
        { body: { text: text.value, direction: dir.value, filter: draftOf() } });
      const j = r.json;
      out.append(j.blocked
        ? message('warn', h('strong', {}, 'Blocked. '), j.block_reason || '', ' The request would be refused.')
        : !j.applies ? message('info', `This filter does not act on ${dir.value}.`)
          : message('ok', `${j.redactions || 0} redaction${j.redactions === 1 ? '' : 's'}`, j.decision ? ` (${j.decision})` : '', '. ',
            h('span', {}, dir.value === 'input' ? 'The model would receive:' : 'The client would receive:'),
            h('pre', { class: 'sample' }, j.text)));
    } catch (e) {
      out.append(message('error', e.message, e.param ? ` (at ${e.param})` : ''));
    }
  });
  return form;
}
