// Aggregation over a selection (a sample index range and a thread), with
// typed arrays only: one pass over the selected samples, one pass over the
// node tree. Everything that does not depend on the selection is computed once
// per profile in prepare().

export function prepare(p) {
  const { childStart, childList } = childrenOf(p.nodeParent);
  p.childStart = childStart;
  p.childList = childList;
  // A recursive function's total counts each sample once.
  p.outer = outerOf(childStart, childList, p.nodeFunc, p.funcs.name.length);
  return p;
}

// The children of a prefix tree (nodes numbered parent-first) in CSR form:
// slot 0 holds the roots (parent -1); node i's children are in slot i + 1.
export function childrenOf(parent) {
  const nNodes = parent.length;
  const childCount = new Int32Array(nNodes + 1);
  for (let i = 0; i < nNodes; i++) childCount[parent[i] + 1]++;
  const childStart = new Int32Array(nNodes + 2);
  for (let i = 0; i <= nNodes; i++) childStart[i + 1] = childStart[i] + childCount[i];
  const childList = new Int32Array(nNodes);
  const fill = childStart.slice(0, nNodes + 1);
  for (let i = 0; i < nNodes; i++) childList[fill[parent[i] + 1]++] = i;
  return { childStart, childList };
}

// outer[n] = 1 when no ancestor of n has the same key (key[n] < nKeys): the
// nodes whose totals add up to a key's total with each sample counted once.
export function outerOf(childStart, childList, key, nKeys) {
  const outer = new Uint8Array(key.length);
  const onPath = new Int32Array(nKeys);
  const stack = [];
  for (let k = childStart[0]; k < childStart[1]; k++) stack.push(childList[k]);
  while (stack.length) {
    const v = stack.pop();
    if (v < 0) { onPath[key[~v]]--; continue; }
    const f = key[v];
    outer[v] = onPath[f] === 0 ? 1 : 0;
    onPath[f]++;
    stack.push(~v);
    for (let k = childStart[v + 1]; k < childStart[v + 2]; k++) stack.push(childList[k]);
  }
  return outer;
}

// First sample index with t >= ms (samples are in time order).
export function lowerBound(t, ms) {
  let lo = 0, hi = t.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (t[mid] < ms) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// Thread choices besides a thread index: all threads merged, or all threads
// with one flame graph root per thread.
export const ALL_MERGED = -1, BY_THREAD = -2;

// The samples of a reactor stall (parse.js) as (thread, node, weight µs,
// line node): the reactor's and the busy thread's, each standing for the
// time since the stall's previous sample (the first: since the stall
// reached the threshold).
export function stallSamples(p, stall) {
  const out = [];
  let previous = p.stallThresholdMs ?? 0;
  stall.t.forEach((at, i) => {
    const w = Math.max(at - stall.startMs - previous, 1) * 1000;
    previous = at - stall.startMs;
    if (stall.node[i] >= 0 && stall.thread[i] >= 0) out.push([stall.thread[i], stall.node[i], w, stall.lineNode[i]]);
    if (stall.busyNode[i] >= 0 && stall.busyThread[i] >= 0) out.push([stall.busyThread[i], stall.busyNode[i], w, stall.busyLineNode[i]]);
  });
  return out;
}

// A selection is sel = { t0, t1 (ms since startMs, t1 exclusive), thread
// (>= 0, ALL_MERGED or BY_THREAD), parts (optional: a Uint8Array, 1 for the
// files to count), stall (optional: a stall of p.stalls; then its
// wall-clock samples are what is aggregated, not the period's) }.

// The sample index range of a selection and its files' mask (null: all).
function sampleRange(p, sel) {
  const mask = sel.parts && sel.parts.includes(0) ? sel.parts : null;
  return { i0: lowerBound(p.t, sel.t0), i1: lowerBound(p.t, sel.t1), mask };
}

// Calls visit(thread, node, lineNode, weight, count) for every sample of the
// selection: the one definition of what a selection holds, for the function
// view (aggregate) and the line view (lines.js).
export function selectedSamples(p, sel, visit) {
  if (sel.stall) {
    // A stall's wall-clock samples count one each.
    for (const [th, n, w, ln] of stallSamples(p, sel.stall)) if (sel.thread < 0 || th === sel.thread) visit(th, n, ln, w, 1);
    return;
  }
  const { i0, i1, mask } = sampleRange(p, sel), part = p.part, count = p.count;
  for (let i = i0; i < i1; i++) {
    const th = p.thread[i];
    if (sel.thread >= 0 && th !== sel.thread) continue;
    if (mask !== null && mask[part[i]] === 0) continue;
    visit(th, p.node[i], p.lineNode[i], p.weight[i], count[i]);
  }
}

// Self and total weights and counts per node of a tree (its parent array),
// all threads and per thread, with `pick(node, lineNode)` the tree's node of
// a sample. The shape flameTreeOf reads.
export function aggregateTree(p, sel, parent, pick) {
  const nNodes = parent.length, nThreads = p.threads.length;
  const selfW = new Float64Array(nNodes), selfN = new Float64Array(nNodes);
  const perThread = new Array(nThreads).fill(null); // thread -> [weights, counts]
  let totalW = 0, totalN = 0;
  selectedSamples(p, sel, (th, node, lineNode, w, c) => {
    const n = pick(node, lineNode);
    selfW[n] += w; selfN[n] += c; totalW += w; totalN += c;
    let arrays = perThread[th];
    if (arrays === null) arrays = perThread[th] = [new Float64Array(nNodes), new Float64Array(nNodes)];
    arrays[0][n] += w; arrays[1][n] += c;
  });
  const totW = inclusive(parent, selfW), totN = inclusive(parent, selfN);
  const threads = [];
  perThread.forEach((arrays, th) => {
    if (arrays) threads.push({ thread: th, totW: inclusive(parent, arrays[0]), totN: inclusive(parent, arrays[1]) });
  });
  return { sel, selfW, selfN, totW, totN, totalW, totalN, threads };
}

// The function view's aggregation of a selection (the tree of p.nodeParent).
export function aggregate(p, sel) {
  const { i0, i1, mask } = sampleRange(p, sel);
  return { ...aggregateTree(p, sel, p.nodeParent, (node) => node), i0, i1, mask };
}

// Whether sample i is in the aggregation's files (threads are checked apart).
const inParts = (p, agg, i) => agg.mask === null || agg.mask[p.part[i]] === 1;

function inclusive(parent, self) {
  const tot = Float64Array.from(self);
  for (let i = tot.length - 1; i >= 0; i--) {
    if (parent[i] >= 0) tot[parent[i]] += tot[i];
  }
  return tot;
}

// Hottest functions: self and total weight per function, sorted by self.
export function hotFunctions(p, agg, limit = 50) {
  const nFuncs = p.funcs.name.length;
  const self = new Float64Array(nFuncs), total = new Float64Array(nFuncs), count = new Float64Array(nFuncs);
  for (let n = 0; n < agg.selfW.length; n++) {
    const tw = agg.totW[n];
    if (tw === 0) continue;
    const f = p.nodeFunc[n];
    self[f] += agg.selfW[n];
    if (p.outer[n]) { total[f] += tw; count[f] += agg.totN[n]; }
  }
  const ids = [];
  for (let f = 0; f < nFuncs; f++) if (total[f] > 0) ids.push(f);
  ids.sort((a, b) => self[b] - self[a] || total[b] - total[a]);
  return ids.slice(0, limit).map((f) => ({ func: f, self: self[f], total: total[f], samples: count[f] }));
}

// Callers and callees of one function within the selection, by weight.
export function callersCallees(p, agg, func) {
  const callers = new Map(), callees = new Map();
  let total = 0, self = 0;
  const add = (m, k, v) => m.set(k, (m.get(k) || 0) + v);
  for (let n = 0; n < p.nodeFunc.length; n++) {
    if (p.nodeFunc[n] !== func || agg.totW[n] === 0) continue;
    self += agg.selfW[n];
    if (!p.outer[n]) continue;
    total += agg.totW[n];
    const parent = p.nodeParent[n];
    add(callers, parent < 0 ? -1 : p.nodeFunc[parent], agg.totW[n]);
    for (let k = p.childStart[n + 1]; k < p.childStart[n + 2]; k++) {
      const c = p.childList[k];
      if (agg.totW[c] > 0) add(callees, p.nodeFunc[c], agg.totW[c]);
    }
  }
  const sorted = (m) => [...m.entries()].map(([f, w]) => ({ func: f, weight: w })).sort((a, b) => b.weight - a.weight);
  return { func, total, self, callers: sorted(callers), callees: sorted(callees) };
}

// The flame graph's tree: {name, value, children}: all threads merged under
// "all threads", one root per thread under it (BY_THREAD), or the chosen
// thread. Nodes below minFraction (0.01%) of the total are folded into their
// parent's self time.
export function flameTree(p, agg, minFraction = 1e-4) {
  const frame = (n) => {
    const f = p.nodeFunc[n];
    return { name: p.funcs.name[f], file: p.funcs.file[f], func: f };
  };
  return flameTreeOf(p, agg, { childStart: p.childStart, childList: p.childList, frame }, minFraction);
}

// The same over any node tree: {childStart, childList} (childrenOf) and
// frame(node) -> {name, file, func, ...}; agg is aggregateTree's over it.
export function flameTreeOf(p, agg, tree, minFraction = 1e-4) {
  const limit = agg.totalW * minFraction;
  const { childStart, childList } = tree;
  const build = (nodeIndex, totW, totN) => {
    const out = { ...tree.frame(nodeIndex), value: totW[nodeIndex], samples: totN[nodeIndex], node: nodeIndex };
    const kids = [];
    for (let k = childStart[nodeIndex + 1]; k < childStart[nodeIndex + 2]; k++) {
      const c = childList[k];
      if (totW[c] > limit && totW[c] > 0) kids.push(build(c, totW, totN));
    }
    if (kids.length) out.children = kids;
    return out;
  };
  const threadRoot = (entry) => {
    const kids = [];
    let value = 0, samples = 0;
    for (let k = childStart[0]; k < childStart[1]; k++) {
      const r = childList[k];
      value += entry.totW[r]; samples += entry.totN[r];
      if (entry.totW[r] > limit && entry.totW[r] > 0) kids.push(build(r, entry.totW, entry.totN));
    }
    const name = entry.thread >= 0 ? p.threads[entry.thread].name : 'all threads';
    return { name, value, samples, func: -1, thread: entry.thread, children: kids };
  };
  if (agg.sel.thread >= 0) {
    const entry = agg.threads.find((e) => e.thread === agg.sel.thread);
    if (entry) return threadRoot(entry);
    return { name: p.threads[agg.sel.thread].name, value: 0, samples: 0, func: -1, children: [] };
  }
  if (agg.sel.thread === BY_THREAD) {
    const children = agg.threads.map(threadRoot).filter((c) => c.value > 0).sort((a, b) => b.value - a.value);
    return { name: 'all threads', value: agg.totalW, samples: agg.totalN, func: -1, children };
  }
  const merged = threadRoot({ thread: -1, totW: agg.totW, totN: agg.totN });
  return { ...merged, name: 'all threads' };
}

// Exports of the selection: speedscope "sampled" JSON and collapsed stacks.
function stackFuncs(p, n) {
  const out = [];
  for (; n >= 0; n = p.nodeParent[n]) out.push(p.nodeFunc[n]);
  return out.reverse();
}

export function toCollapsed(p, agg) {
  const lines = [];
  const esc = (s) => s.replace(/;/g, ':').replace(/[\r\n]/g, ' ');
  for (const entry of agg.threads) {
    const counts = new Float64Array(p.nodeParent.length);
    for (let i = agg.i0; i < agg.i1; i++) if (p.thread[i] === entry.thread && inParts(p, agg, i)) counts[p.node[i]] += p.count[i];
    counts.forEach((c, n) => {
      if (c > 0) {
        const names = stackFuncs(p, n).map((f) => esc(p.funcs.name[f]));
        lines.push(esc(p.threads[entry.thread].name) + ';' + names.join(';') + ' ' + c);
      }
    });
  }
  return lines.join('\n') + '\n';
}

export function toSpeedscope(p, agg, title) {
  const frames = p.funcs.name.map((name, f) => ({ name, file: p.funcs.file[f] || undefined, line: p.funcs.line[f] || undefined }));
  const unit = p.weightUnit === 'us' ? 'microseconds' : 'none';
  const profiles = agg.threads.map((entry) => {
    const samples = [], weights = [];
    const cache = new Map();
    for (let i = agg.i0; i < agg.i1; i++) {
      if (p.thread[i] !== entry.thread || !inParts(p, agg, i)) continue;
      const n = p.node[i];
      let st = cache.get(n);
      if (!st) cache.set(n, (st = stackFuncs(p, n)));
      samples.push(st);
      weights.push(p.weight[i]);
    }
    const endValue = weights.reduce((a, b) => a + b, 0);
    return { type: 'sampled', name: p.threads[entry.thread].name, unit, startValue: 0, endValue, samples, weights };
  });
  return {
    $schema: 'https://www.speedscope.app/file-format-schema.json',
    name: title,
    exporter: 'buildbot-profiler viewer',
    activeProfileIndex: 0,
    shared: { frames },
    profiles,
  };
}

// ---- compare: two aggregations A and B of one (merged) model -------------

// Per function: self and total weight (a recursive function counted once).
function functionWeights(p, agg) {
  const nFuncs = p.funcs.name.length;
  const self = new Float64Array(nFuncs), total = new Float64Array(nFuncs);
  for (let n = 0; n < agg.selfW.length; n++) {
    const tw = agg.totW[n];
    if (tw === 0) continue;
    const f = p.nodeFunc[n];
    self[f] += agg.selfW[n];
    if (p.outer[n]) total[f] += tw;
  }
  return { self, total };
}

// The functions whose share of their side's total grew and shrank most
// (normalised by total weight: a busier B is not a regression). points: self
// share B - A in percentage points; totalPoints: the same for the total.
export function diffFunctions(p, aggA, aggB, limit = 40) {
  const a = functionWeights(p, aggA), b = functionWeights(p, aggB);
  const wa = aggA.totalW || 1, wb = aggB.totalW || 1;
  const rows = [];
  for (let f = 0; f < p.funcs.name.length; f++) {
    if (a.total[f] === 0 && b.total[f] === 0) continue;
    const points = 100 * (b.self[f] / wb - a.self[f] / wa);
    const totalPoints = 100 * (b.total[f] / wb - a.total[f] / wa);
    if (Math.abs(points) < 0.005 && Math.abs(totalPoints) < 0.005) continue;
    rows.push({ func: f, points, totalPoints, selfA: a.self[f], selfB: b.self[f], shareA: (100 * a.self[f]) / wa, shareB: (100 * b.self[f]) / wb });
  }
  const grew = rows.filter((r) => r.points > 0 || (r.points === 0 && r.totalPoints > 0))
    .sort((x, y) => y.points - x.points || y.totalPoints - x.totalPoints).slice(0, limit);
  const shrank = rows.filter((r) => r.points < 0 || (r.points === 0 && r.totalPoints < 0))
    .sort((x, y) => x.points - y.points || x.totalPoints - y.totalPoints).slice(0, limit);
  return { grew, shrank };
}

// The differential flame graph: B's tree (frames sized by B), each frame
// carrying diff = its share of B minus the same call path's share of A
// (in percentage points of each side's total).
export function diffTree(p, aggA, aggB, minFraction = 1e-4) {
  const tree = flameTree(p, aggB, minFraction);
  const wa = aggA.totalW || 1, wb = aggB.totalW || 1;
  const threadA = new Map(aggA.threads.map((e) => [e.thread, e]));
  const walk = (d, entryA) => {
    if (d.node !== undefined) d.diff = 100 * (d.value / wb - (entryA ? entryA.totW[d.node] : 0) / wa);
    (d.children || []).forEach((c) => {
      let e = entryA;
      if (c.node === undefined && c.thread !== undefined) e = threadA.get(c.thread);
      if (c.node === undefined && c.thread !== undefined) c.diff = 100 * (c.value / wb - (e ? rootWeight(p, e) : 0) / wa);
      walk(c, e);
    });
  };
  tree.diff = 100 * (tree.value / wb - (aggA.sel.thread >= 0 ? (threadA.get(aggA.sel.thread) ? rootWeight(p, threadA.get(aggA.sel.thread)) : 0) : aggA.totalW) / wa);
  const rootEntry = aggB.sel.thread >= 0 ? threadA.get(aggB.sel.thread) : { totW: aggA.totW };
  walk(tree, rootEntry);
  return tree;
}

function rootWeight(p, entry) {
  let w = 0;
  for (let k = p.childStart[0]; k < p.childStart[1]; k++) w += entry.totW[p.childList[k]];
  return w;
}
