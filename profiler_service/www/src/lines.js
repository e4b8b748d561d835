// The line view (docs/FORMAT.md, "Lines (version 3)"): the line-level tree
// parse.js keeps beside the function tree, aggregated over the same
// selection as the function view, for a flame graph whose frames are
// "func (file:line)" and for the hottest lines of one function. Pure
// computation, like aggregate.js.

import { aggregateTree, childrenOf, flameTreeOf, outerOf } from './aggregate.js';

// Once per profile: the line tree's children, and per line node whether no
// ancestor has its site, so a line's total counts each sample once however
// often the function recurses through that line.
export function prepareLines(p) {
  const { childStart, childList } = childrenOf(p.lineParent);
  p.lineChildStart = childStart;
  p.lineChildList = childList;
  p.lineOuter = outerOf(childStart, childList, p.lineSite, p.siteFunc.length);
  return p;
}

// aggregate()'s result -> the line tree's aggregation of the same selection,
// made once however many views ask.
const lineAggregations = new WeakMap();

export function aggregateLines(p, agg) {
  let lines = lineAggregations.get(agg);
  if (!lines) {
    lines = aggregateTree(p, agg.sel, p.lineParent, (node, lineNode) => lineNode);
    lineAggregations.set(agg, lines);
  }
  return lines;
}

const baseName = (file) => file.slice(file.lastIndexOf('/') + 1);

// "hot (work.py:12)"; "hot (work.py)" when the line is unknown (a file
// without lines in a merge); a synthetic frame (no file) by its name alone.
export function siteLabel(p, site) {
  const f = p.siteFunc[site], line = p.siteLine[site];
  const name = p.funcs.name[f], file = p.funcs.file[f];
  if (!file) return name;
  return `${name} (${baseName(file)}${line ? ':' + line : ''})`;
}

// The line-level flame graph of agg's selection (flameTree's shape; each
// frame also carries its line).
export function lineFlameTree(p, agg, minFraction = 1e-4) {
  const frame = (n) => {
    const site = p.lineSite[n], f = p.siteFunc[site];
    return { name: siteLabel(p, site), file: p.funcs.file[f], func: f, line: p.siteLine[site] };
  };
  const tree = { childStart: p.lineChildStart, childList: p.lineChildList, frame };
  return flameTreeOf(p, aggregateLines(p, agg), tree, minFraction);
}

// The lines of function `func` in agg's selection, as weights: self (the
// samples whose leaf is func at that line), total (the samples with func at
// that line anywhere on the stack, each once) and samples (total's count).
// Hottest first: by total, then self, then line number.
export function hotLines(p, agg, func) {
  const lines = aggregateLines(p, agg);
  const rows = new Map(); // site -> row
  for (let n = 0; n < p.lineSite.length; n++) {
    const site = p.lineSite[n];
    if (p.siteFunc[site] !== func || lines.totW[n] === 0) continue;
    let row = rows.get(site);
    if (!row) rows.set(site, (row = { line: p.siteLine[site], self: 0, total: 0, samples: 0 }));
    row.self += lines.selfW[n];
    if (p.lineOuter[n]) {
      row.total += lines.totW[n];
      row.samples += lines.totN[n];
    }
  }
  return [...rows.values()].sort((a, b) => b.total - a.total || b.self - a.self || a.line - b.line);
}
