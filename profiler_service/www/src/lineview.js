// The line view's controls: the flame graph's "Lines" toggle (off by
// default; disabled for files that record no lines, and in compare mode,
// whose differential graph is by function) and the panel of the selected
// function's hottest lines, as `perf annotate` and py-spy's line mode show.

import { hotLines } from './lines.js';
import { escapeHtml, pct } from './format.js';

export const NO_LINES = 'This file records no lines: format versions 1 and 2 and buildbot_profiler 1.x files have none (version 3 files have them)';
const LINES_TITLE = 'Split every function by line: frames are "function (file:line)", the line executing (or, in a caller, the line of the call)';
const COMPARING = 'Compare mode shows functions: the differential flame graph has no line view';

// input: the toggle's checkbox; wanted: the user's choice, kept across
// files and re-renders. Returns whether the flame graph shows lines.
export function syncLineToggle(input, p, wanted, comparing) {
  input.disabled = !p.lines || comparing;
  input.checked = wanted && !input.disabled;
  input.closest('label').title = !p.lines ? NO_LINES : comparing ? COMPARING : LINES_TITLE;
  return input.checked;
}

// els: {title, hint, table}; func: the selected function (-1: none); shares
// of agg.totalW, the selection's weight, as every other % of the viewer.
export function renderHotLines(els, p, agg, func) {
  const body = els.table.tBodies[0];
  const say = (text) => {
    els.hint.textContent = text;
    els.hint.hidden = false;
    els.table.hidden = true;
    body.innerHTML = '';
  };
  els.title.textContent = func < 0 ? 'Hottest lines' : `Hottest lines of ${p.funcs.name[func]}`;
  if (func < 0) return say('Click a function to see its hottest lines.');
  if (!p.lines) return say(NO_LINES + '.');
  const rows = hotLines(p, agg, func);
  if (!rows.length) return say('No samples of this function in the selection.');
  els.hint.hidden = true;
  els.table.hidden = false;
  const file = p.funcs.file[func];
  body.innerHTML = rows.map((r) => {
    const where = r.line ? `${file}:${r.line}` : `${file}, line unknown (a file without lines)`;
    const title = `${where}\n${Math.round(r.samples).toLocaleString('en-US')} samples with this line on the stack`;
    return `<tr data-line="${r.line}" title="${escapeHtml(title)}">` +
      `<td>${r.line ? `line ${r.line}` : 'line unknown'}</td>` +
      `<td class="num bar-cell"><i style="width:${((100 * r.self) / agg.totalW).toFixed(1)}%"></i><span class="pct">${pct(r.self, agg.totalW)}</span></td>` +
      `<td class="num">${pct(r.total, agg.totalW)}</td></tr>`;
  }).join('');
}
