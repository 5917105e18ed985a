// modelgate admin console — tiny inline-SVG charts (no library): vertical
// bars over days, horizontal bars for top-N lists. Every chart comes with
// its numbers as a table (screen readers, exact values, copy and paste).
// SPDX-License-Identifier: Apache-2.0
import { h } from './dom.js';

const svg = (tag, attrs, ...kids) => h(`svg:${tag}`, attrs, ...kids);

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// points: [{label, value}], fmt(value) -> text.
export function columns(title, points, fmt) {
  const W = 640, H = 220, L = 56, B = 36, T = 12;
  const max = niceMax(Math.max(0, ...points.map((p) => p.value)));
  const bw = points.length ? Math.min(48, (W - L - 8) / points.length) : 0;
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const ticks = [0, 0.5, 1].map((f) => f * max);
  const step = Math.max(1, Math.ceil(points.length / 8));
  const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': `${title} (bar chart; the numbers are in the table below)` },
    ticks.map((t) => svg('g', {},
      svg('line', { x1: L, x2: W, y1: y(t), y2: y(t), class: 'grid' }),
      svg('text', { x: L - 6, y: y(t) + 4, 'text-anchor': 'end', class: 'axis' }, fmt(t)))),
    points.map((p, i) => svg('rect', { x: L + i * bw + 1, y: y(p.value), width: Math.max(1, bw - 2), height: Math.max(0, y(0) - y(p.value)), class: 'bar' },
      svg('title', {}, `${p.label}: ${fmt(p.value)}`))),
    points.map((p, i) => (i % step === 0 ? svg('text', { x: L + i * bw + bw / 2, y: H - B + 16, 'text-anchor': 'middle', class: 'axis' }, p.label.slice(5)) : null)));
  return figure(title, g, points, fmt);
}

export function hbars(title, points, fmt) {
  const W = 640, row = 24, L = 200, R = 90;
  const H = Math.max(row, points.length * row) + 4;
  const max = niceMax(Math.max(0, ...points.map((p) => p.value)));
  const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': `${title} (bar chart; the numbers are in the table below)` },
    points.map((p, i) => svg('g', {},
      svg('text', { x: L - 8, y: i * row + 16, 'text-anchor': 'end', class: 'axis' }, p.label.length > 28 ? `${p.label.slice(0, 27)}…` : p.label),
      svg('rect', { x: L, y: i * row + 4, height: row - 8, width: Math.max(1, (W - L - R) * p.value / max), class: 'bar' }, svg('title', {}, `${p.label}: ${fmt(p.value)}`)),
      svg('text', { x: L + (W - L - R) * p.value / max + 6, y: i * row + 16, class: 'axis' }, fmt(p.value)))));
  return figure(title, g, points, fmt);
}

function figure(title, chart, points, fmt) {
  return h('figure', { class: 'chart-fig' },
    h('figcaption', {}, title),
    points.length ? chart : h('p', { class: 'hint' }, 'No usage in this range.'),
    points.length ? h('details', {}, h('summary', {}, `${title}: numbers`),
      h('table', {}, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Item'), h('th', { scope: 'col' }, 'Value'))),
        h('tbody', {}, points.map((p) => h('tr', {}, h('th', { scope: 'row' }, p.label), h('td', { class: 'num' }, fmt(p.value))))))) : null);
}
