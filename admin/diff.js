// modelgate admin console — what a save would change, shown before saving.
// Lines like `modelgate policy import` prints: + added, - removed, ~ changed.
// SPDX-License-Identifier: Apache-2.0
import { h } from './dom.js';

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const show = (v) => (v === undefined ? '(none)' : JSON.stringify(v));

// Lists the differences between a and b under path. Arrays of scalars
// (model lists, permissions) are compared as sets, so a reordering is no
// change and additions/removals are named one by one.
export function diff(a, b, path = '') {
  const out = [];
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const k of keys) out.push(...diff(a[k], b[k], path ? `${path}.${k}` : k));
    return out;
  }
  const scalars = (x) => Array.isArray(x) && x.every((e) => e === null || typeof e !== 'object');
  if (scalars(a) && scalars(b)) {
    for (const v of b) if (!a.includes(v)) out.push({ op: '+', path, value: v });
    for (const v of a) if (!b.includes(v)) out.push({ op: '-', path, value: v });
    return out;
  }
  if (JSON.stringify(a) === JSON.stringify(b)) return out;
  if (a === undefined) out.push({ op: '+', path, value: b });
  else if (b === undefined) out.push({ op: '-', path, value: a });
  else out.push({ op: '~', path, before: a, after: b });
  return out;
}

export function diffText(d) {
  return d.map((x) => (x.op === '~' ? `~ ${x.path}: ${show(x.before)} -> ${show(x.after)}` : `${x.op} ${x.path}: ${show(x.value)}`));
}

// The diff as a list, for the review step (screen readers hear "added",
// "removed", "changed", not just a sign).
export function diffView(d, emptyText = 'No changes.') {
  if (!d.length) return h('p', { class: 'diff-empty' }, emptyText);
  const word = { '+': 'added', '-': 'removed', '~': 'changed' };
  return h('ul', { class: 'diff', 'aria-label': 'Changes' }, diffText(d).map((line, i) =>
    h('li', { class: `diff-${word[d[i].op]}` },
      h('span', { class: 'visually-hidden' }, `${word[d[i].op]}: `), h('code', {}, line))));
}
