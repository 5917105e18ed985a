// modelgate admin console — the review step every save goes through: the
// diff first, then an explicit "Save", and a concurrent change (412 on
// If-Match) explained instead of overwritten.
// SPDX-License-Identifier: Apache-2.0
import { h, clear, message, focus, announce } from './dom.js';
import { diff, diffView } from './diff.js';

// opts: { box, title, path (JSON path of before/after), before, after, save,
//         onSaved(), onBack(), onConflict() }
// save() throws ApiError; 412 means someone else changed the policy since
// it was loaded: nothing was written.
export function review(opts) {
  const { box, title, before, after } = opts;
  const d = diff(before, after, opts.path || "");
  const heading = h('h2', {}, `Review: ${title}`);
  const result = h('div', {});
  const saveBtn = h('button', { type: 'button', class: 'primary', disabled: !d.length }, 'Save changes');
  const backBtn = h('button', { type: 'button' }, 'Back to editing');
  clear(box).append(heading,
    h('p', {}, d.length ? `${d.length} change${d.length > 1 ? 's' : ''} will be saved:` : ''),
    diffView(d, 'Nothing changed: there is nothing to save.'),
    h('div', { class: 'actions' }, saveBtn, backBtn), result);
  backBtn.addEventListener('click', () => opts.onBack());
  saveBtn.addEventListener('click', async () => {
    saveBtn.disabled = true;
    clear(result);
    try {
      await opts.save();
      announce(`${title}: saved`);
      opts.onSaved();
    } catch (e) {
      let m;
      if (e.status === 412) {
        m = message('error',
          h('strong', {}, 'Not saved: someone else changed the policy after you opened it. '),
          'Saving now would overwrite their change, so nothing was written. ',
          'Reload to see the current version (your edit is kept and shown against it), then review and save again.',
          h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => opts.onConflict() }, 'Reload the current version')));
      } else {
        m = message('error', h('strong', {}, 'Not saved: '), e.message, e.param ? ` (at ${e.param})` : '');
        saveBtn.disabled = false;
      }
      result.append(m);
      focus(m);
    }
  });
  focus(heading);
}
