// modelgate admin console — small DOM helpers (no framework).
// SPDX-License-Identifier: Apache-2.0

// h('button', {type: 'button', onclick: f}, 'Save') -> element.
// Attributes starting with "on" become listeners; class -> className;
// children may be strings, nodes, arrays, null/false (skipped).
export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', v);
    else if (k === 'value' && 'value' in el && !tag.startsWith('svg:')) el.value = v;
    else if (k === 'checked' || k === 'selected' || k === 'disabled') el[k] = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }

// Tells screen readers (and the sighted, via the message area) what happened.
export function announce(text) {
  const s = document.getElementById('status');
  s.textContent = '';
  setTimeout(() => { s.textContent = text; }, 30);
}

let uid = 0;
export const newId = (p = 'f') => `${p}-${++uid}`;

// A labelled form field: label + control (+ optional hint), ids wired up.
export function field(label, control, hint) {
  const id = control.id || (control.id = newId());
  let hintEl = null;
  if (hint) {
    hintEl = h('span', { class: 'hint', id: `${id}-hint` }, hint);
    control.setAttribute('aria-describedby', hintEl.id);
  }
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl);
}

// A message box; kind: 'error' | 'ok' | 'warn' | 'info'. Errors get role=alert.
export function message(kind, ...content) {
  return h('div', { class: `msg msg-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, ...content);
}

export function table(caption, headers, rows) {
  return h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows));
}

// Moves focus to el (a heading or message) so keyboard and screen reader
// users land where the new content is.
export function focus(el) {
  if (!el.hasAttribute('tabindex')) el.setAttribute('tabindex', '-1');
  el.focus();
}

export const fmtDate = (s) => (s ? String(s).replace('T', ' ').replace(/\.\d+/, '').replace(/\+00(:00)?$/, ' UTC') : '—');
