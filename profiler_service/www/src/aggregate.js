// Aggregation over a selection (a sample index range and a thread), with
// typed arrays only: one pass over the selected samples, one pass over the
// node tree. Everything that does not depend on the selection is computed once
// per profile in prepare().

export function prepare(p) {
  const nNodes = p.nodeParent.length;
  const nFuncs = p.funcs.name.length;
  // Children in CSR form (nodes are numbered parent-first).
  const childCount = new Int32Array(nNodes + 1);
  for (let i = 0; i < nNodes; i++) childCount[p.nodeParent[i] + 1]++;
  const childStart = new Int32Array(nNodes + 2);
  for (let i = 0; i <= nNodes; i++) childStart[i + 1] = childStart[i] + childCount[i];
  const childList = new Int32Array(nNodes);
  const fill = childStart.slice(0, nNodes + 1);
  for (let i = 0; i < nNodes; i++) childList[fill[p.nodeParent[i] + 1]++] = i;
  // slot 0 holds the roots (parent -1); node i's children are in slot i + 1.
  p.childStart = childStart;
  p.childList = childList;

  // outer[n] = 1 when no ancestor of n runs the same function: a recursive
  // function's total counts each sample once.
  const outer = new Uint8Array(nNodes);
  const onPath = new Int32Array(nFuncs);
  const stack = [];
  for (let k = childStart[0]; k < childStart[1]; k++) stack.push(childList[k]);
  while (stack.length) {
    const v = stack.pop();
    if (v < 0) { onPath[p.nodeFunc[~v]]--; continue; }
    const f = p.nodeFunc[v];
    outer[v] = onPath[f] === 0 ? 1 : 0;
    onPath[f]++;
    stack.push(~v);
    for (let k = childStart[v + 1]; k < childStart[v + 2]; k++) stack.push(childList[k]);
  }
  p.outer = outer;
  return p;
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

// sel = { t0, t1 (ms since startMs, t1 exclusive), thread (>= 0, ALL_MERGED or BY_THREAD) }
export function aggregate(p, sel) {
  const nNodes = p.nodeParent.length, nThreads = p.threads.length;
  const i0 = lowerBound(p.t, sel.t0), i1 = lowerBound(p.t, sel.t1);
  const selfW = new Float64Array(nNodes), selfN = new Float64Array(nNodes);
  const perThread = new Array(nThreads).fill(null); // thread -> [weights, counts]
  let totalW = 0, totalN = 0;
  for (let i = i0; i < i1; i++) {
    const th = p.thread[i];
    if (sel.thread >= 0 && th !== sel.thread) continue;
    const n = p.node[i], w = p.weight[i];
    selfW[n] += w; selfN[n] += 1; totalW += w; totalN += 1;
    let arrays = perThread[th];
    if (arrays === null) arrays = perThread[th] = [new Float64Array(nNodes), new Float64Array(nNodes)];
    arrays[0][n] += w; arrays[1][n] += 1;
  }
  const totW = inclusive(p, selfW), totN = inclusive(p, selfN);
  const threads = [];
  perThread.forEach((arrays, th) => {
    if (arrays) threads.push({ thread: th, totW: inclusive(p, arrays[0]), totN: inclusive(p, arrays[1]) });
  });
  return { sel, i0, i1, selfW, selfN, totW, totN, totalW, totalN, threads };
}

function inclusive(p, self) {
  const tot = Float64Array.from(self);
  for (let i = tot.length - 1; i >= 0; i--) {
    const parent = p.nodeParent[i];
    if (parent >= 0) tot[parent] += tot[i];
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
  const limit = agg.totalW * minFraction;
  const build = (nodeIndex, totW, totN) => {
    const f = p.nodeFunc[nodeIndex];
    const out = { name: p.funcs.name[f], file: p.funcs.file[f], value: totW[nodeIndex], samples: totN[nodeIndex], func: f, node: nodeIndex };
    const kids = [];
    for (let k = p.childStart[nodeIndex + 1]; k < p.childStart[nodeIndex + 2]; k++) {
      const c = p.childList[k];
      if (totW[c] > limit && totW[c] > 0) kids.push(build(c, totW, totN));
    }
    if (kids.length) out.children = kids;
    return out;
  };
  const threadRoot = (entry) => {
    const kids = [];
    let value = 0, samples = 0;
    for (let k = p.childStart[0]; k < p.childStart[1]; k++) {
      const r = p.childList[k];
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
    for (let i = agg.i0; i < agg.i1; i++) if (p.thread[i] === entry.thread) counts[p.node[i]]++;
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
      if (p.thread[i] !== entry.thread) continue;
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
