// Several profile documents as one model (the shape parse.js gives one
// file), plus what only a merge has:
//   parts:   one entry per file {name, startMs, endMs, master, samples}
//   part:    Uint16Array, the part of every sample
//   masters: the masters (hostname, "/master name" when recorded) in order
//   gaps:    [startMs, endMs] stretches inside the span that no file covers
//   lines:   whether any file records lines (version 3); the others' are 0
// Every file is parsed into one TreeBuilder, so functions and call paths are
// shared: node n means the same call path in every file, which is what a
// comparison of two selections needs.

import { TreeBuilder, parseProfile } from './parse.js';

export function masterOf(model) {
  const m = model.meta || {};
  const host = typeof m.hostname === 'string' && m.hostname ? m.hostname : 'unknown host';
  return typeof m.master === 'string' && m.master ? `${host}/${m.master}` : host;
}

// Files parsed one by one as they arrive (each document can be dropped once
// added), then merged: add(name, doc) in any order, finish() once.
export function createMerger() {
  const tree = new TreeBuilder();
  const models = [];
  return {
    add(name, doc) { models.push({ name, model: parseProfile(doc, tree) }); },
    finish() { return mergeModels(models, tree); },
  };
}

function mergeModels(models, tree) {
  models.sort((a, b) => a.model.startMs - b.model.startMs || a.model.endMs - b.model.endMs || (a.name < b.name ? -1 : 1));
  const startMs = Math.min(...models.map((m) => m.model.startMs));
  const endMs = Math.max(...models.map((m) => m.model.endMs));
  const masters = [];
  const threadKey = new Map();
  const threads = [];
  let n = 0;
  for (const { model } of models) n += model.t.length;
  const t = new Float64Array(n), thread = new Int32Array(n), node = new Int32Array(n), weight = new Float64Array(n);
  const lineNode = new Int32Array(n);
  const count = new Float64Array(n); // each file's own counts (its threads' carry starts at 0)
  const part = new Uint16Array(n);
  const parts = [];
  let at = 0, inOrder = true, lastT = -Infinity;
  const loadParts = [];
  const buildKey = new Map();
  const stats = {};
  models.forEach(({ name, model }, pi) => {
    const master = masterOf(model);
    if (!masters.includes(master)) masters.push(master);
    const threadMap = model.threads.map((th) => {
      const key = `${master}\0${th.ident}\0${th.nativeId}\0${th.name}`;
      let id = threadKey.get(key);
      if (id === undefined) {
        id = threads.length;
        threadKey.set(key, id);
        threads.push({ ...th, master });
      }
      return id;
    });
    const offset = model.startMs - startMs;
    const m = model.t.length;
    if (m && model.t[0] + offset < lastT) inOrder = false;
    for (let i = 0; i < m; i++) {
      t[at + i] = model.t[i] + offset;
      thread[at + i] = threadMap[model.thread[i]];
    }
    node.set(model.node, at);
    lineNode.set(model.lineNode, at);
    weight.set(model.weight, at);
    count.set(model.count, at);
    part.fill(pi, at, at + m);
    if (m) lastT = t[at + m - 1];
    at += m;
    parts.push({ name, startMs: model.startMs, endMs: model.endMs, master, samples: model.count.reduce((a, b) => a + b, 0), format: model.format, meta: model.meta, lines: model.lines });
    loadParts.push({ model, offset });
    for (const b of model.builds) {
      const key = `${master}\0${b.buildid}\0${b.builder}\0${b.number}`;
      const known = buildKey.get(key);
      // The same build in two periods: the later file knows its end.
      if (!known || (known.completeMs === null && b.completeMs !== null)) buildKey.set(key, { ...b, master });
    }
    for (const [k, v] of Object.entries(model.stats || {})) if (typeof v === 'number') stats[k] = (stats[k] || 0) + v;
  });
  if (!inOrder) sortSamples(t, thread, node, lineNode, weight, count, part);

  const first = models[0].model;
  const meta = { ...first.meta };
  if (masters.length > 1) meta.hostname = masters.join(', ');
  const model = {
    format: models.every((m) => m.model.format === first.format) ? first.format : 'mixed',
    meta,
    stats,
    startMs,
    endMs,
    weightUnit: models.every((m) => m.model.weightUnit === 'us') ? 'us' : 'samples',
    threads,
    t, thread, node, lineNode, weight, count, part, parts, masters,
    lines: models.some((m) => m.model.lines),
    gaps: gapsOf(parts, startMs, endMs),
    load: mergeLoad(loadParts, first.load),
    builds: [...buildKey.values()].sort((a, b) => a.startMs - b.startMs),
  };
  // Mixed units (1.x counts samples): every weight becomes one sample.
  if (model.weightUnit !== 'us') { model.weight.fill(1); model.count.fill(1); }
  return tree.finish(model);
}

function sortSamples(t, thread, node, lineNode, weight, count, part) {
  const order = new Uint32Array(t.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  order.sort((a, b) => t[a] - t[b] || a - b);
  for (const column of [t, thread, node, lineNode, weight, count, part]) {
    const copy = column.slice();
    for (let i = 0; i < order.length; i++) column[i] = copy[order[i]];
  }
}

// Back-to-back periods leave a few ms between files: not a gap.
export const MIN_GAP_MS = 1000;

function gapsOf(parts, startMs, endMs) {
  const gaps = [];
  let covered = startMs;
  for (const p of [...parts].sort((a, b) => a.startMs - b.startMs)) {
    if (p.startMs - covered >= MIN_GAP_MS) gaps.push([covered, p.startMs]);
    covered = Math.max(covered, p.endMs);
  }
  if (endMs - covered >= MIN_GAP_MS) gaps.push([covered, endMs]);
  return gaps;
}

// The load series of every file, ms since the merged start, with a NaN
// point between files so the lines break at the gaps.
function mergeLoad(loadParts, firstLoad) {
  const t = [], cpu = [], mem = [], rss = [], part = [];
  loadParts.forEach(({ model, offset }, pi) => {
    const l = model.load;
    if (pi > 0 && l.t.length) { t.push(offset); cpu.push(NaN); mem.push(NaN); rss.push(NaN); part.push(pi); }
    for (let i = 0; i < l.t.length; i++) {
      t.push(l.t[i] + offset);
      cpu.push(l.cpu[i]);
      mem.push(l.mem[i]);
      rss.push(l.rssKb ? l.rssKb[i] : NaN);
      part.push(pi);
    }
  });
  return {
    t: Float64Array.from(t), cpu: Float64Array.from(cpu), mem: Float64Array.from(mem), rssKb: Float64Array.from(rss),
    part: Uint16Array.from(part), cpuLabel: firstLoad.cpuLabel, memLabel: firstLoad.memLabel,
  };
}

// One file as a model with the merge's extra members (no copy of its samples).
export function singleFile(name, model) {
  const master = masterOf(model);
  model.parts = [{ name, startMs: model.startMs, endMs: model.endMs, master, samples: model.t.length, format: model.format, meta: model.meta, lines: model.lines }];
  model.part = new Uint16Array(model.t.length);
  model.masters = [master];
  model.gaps = [];
  model.threads.forEach((th) => { th.master = master; });
  model.builds.forEach((b) => { b.master = master; });
  model.load.part = new Uint16Array(model.load.t.length);
  return model;
}

// The parts' mask for a master (-1: all) and an optional set of file names.
export function partMask(p, master, names = null) {
  const mask = new Uint8Array(p.parts.length);
  p.parts.forEach((part, i) => {
    mask[i] = (master < 0 || part.master === p.masters[master]) && (!names || names.includes(part.name)) ? 1 : 0;
  });
  return mask;
}
