// Turns a profile document (our format, versions 1 to 3, or the plain JSON
// of buildbot_profiler 1.x) into one in-memory model the views share:
//   funcs:   function table (name, file, line), one entry per distinct function
//   nodes:   a prefix tree of functions (nodeParent < own index, nodeFunc)
//   samples: typed arrays in time order (t ms since startMs, thread, node,
//            lineNode, weight)
//   load:    process CPU % and memory % over time; builds; header facts.
// Two stacks that differ only in line numbers share their nodes, so the flame
// graph, the table and the caller/callee view all count by function. The
// line view (lines.js) reads a second, line-level tree kept beside it:
//   sites:     (function, line) pairs, siteFunc and siteLine (0: unknown)
//   lineNodes: a prefix tree of sites (lineParent < own index, lineSite);
//              sample i's line-level path ends at lineNode[i]
// Only version 3 records lines (`lines` true); older files have every line 0.

export class ProfileError extends Error {}

// One function table and one node tree; several files parsed into the same
// builder share them (merge.js), so no file's tree is interned twice.
export class TreeBuilder {
  constructor() {
    this.funcIndex = new Map();
    this.funcName = [];
    this.funcFile = [];
    this.funcLine = [];
    this.nodeIndex = new Map();
    this.parent = [];
    this.func = [];
    this.siteIndex = new Map();
    this.siteFunc = [];
    this.siteLine = [];
    this.lineIndex = new Map();
    this.lineParent = [];
    this.lineSite = [];
  }

  intern(name, file, line) {
    const key = name + '\0' + file + '\0' + line;
    let id = this.funcIndex.get(key);
    if (id === undefined) {
      id = this.funcName.length;
      this.funcIndex.set(key, id);
      this.funcName.push(String(name));
      this.funcFile.push(String(file));
      this.funcLine.push(line | 0);
    }
    return id;
  }

  child(parent, func) {
    const key = parent * 16777216 + func; // exact: well below 2^53
    let id = this.nodeIndex.get(key);
    if (id === undefined) {
      id = this.parent.length;
      this.nodeIndex.set(key, id);
      this.parent.push(parent);
      this.func.push(func);
    }
    return id;
  }

  // A function at a line (0: unknown).
  site(func, line) {
    // exact below 2^53; a line past 2^29 (no real file has one) keys by string
    const key = line < 536870912 ? line * 16777216 + func : `${func}:${line}`;
    let id = this.siteIndex.get(key);
    if (id === undefined) {
      id = this.siteFunc.length;
      this.siteIndex.set(key, id);
      this.siteFunc.push(func);
      this.siteLine.push(line);
    }
    return id;
  }

  // The line-level tree's node for a site under lineParent (-1: a root).
  lineChild(lineParent, site) {
    const key = lineParent * 16777216 + site;
    let id = this.lineIndex.get(key);
    if (id === undefined) {
      id = this.lineParent.length;
      this.lineIndex.set(key, id);
      this.lineParent.push(lineParent);
      this.lineSite.push(site);
    }
    return id;
  }

  finish(model) {
    model.funcs = { name: this.funcName, file: this.funcFile, line: this.funcLine };
    model.nodeParent = Int32Array.from(this.parent);
    model.nodeFunc = Int32Array.from(this.func);
    model.siteFunc = Int32Array.from(this.siteFunc);
    model.siteLine = Float64Array.from(this.siteLine);
    model.lineParent = Int32Array.from(this.lineParent);
    model.lineSite = Int32Array.from(this.lineSite);
    return model;
  }
}

function need(cond, message) {
  if (!cond) throw new ProfileError(message);
}

function isIntArray(a, n) {
  return Array.isArray(a) && (n === undefined || a.length === n);
}

// How many sampling intervals (1/frequency s) each sample stands for: per
// thread, in time order, the interval boundaries its summed weight crosses
// (docs/FORMAT.md, "What a sample is, in each mode"). Integers in µs x
// millihertz, as the Python reader and Period.collapsed() compute them; exact
// while a weight x millihertz stays under 2^53 (a sample of 900 s at 10 kHz).
export function sampleCounts(thread, weight, nThreads, frequency) {
  const perS = Math.max(1, Math.round(frequency * 1000)), interval = 1e9;
  const carried = new Float64Array(nThreads), count = new Float64Array(weight.length);
  for (let i = 0; i < weight.length; i++) {
    const total = carried[thread[i]] + weight[i] * perS;
    const c = Math.floor(total / interval);
    count[i] = c;
    carried[thread[i]] = total - c * interval;
  }
  return count;
}

// With a shared `tree`, the model's nodes and functions are interned into it
// and left for the caller to finish (tree.finish); otherwise the model is whole.
export function parseProfile(doc, tree = null) {
  need(doc && typeof doc === 'object' && !Array.isArray(doc), 'not a profile: the JSON document is not an object');
  const own = tree || new TreeBuilder();
  let model;
  if (doc.format === 'buildbot-profiler') model = parseV1(doc, own);
  else if (Array.isArray(doc.frames) && Array.isArray(doc.samples)) model = parseLegacy(doc, own);
  else throw new ProfileError('not a buildbot-profiler file: neither our format nor a 1.x profile');
  return tree ? model : own.finish(model);
}

function parseV1(doc, tree) {
  need(doc.version === 1 || doc.version === 2 || doc.version === 3,
    `unsupported format version ${JSON.stringify(doc.version)} (this viewer reads versions 1 to 3)`);
  const meta = doc.meta, stacks = doc.stacks, samples = doc.samples;
  need(meta && typeof meta.start_ms === 'number' && typeof meta.end_ms === 'number', 'malformed profile: meta.start_ms/end_ms missing');
  need(Array.isArray(doc.frames) && Array.isArray(doc.files), 'malformed profile: frames or files missing');
  need(stacks && isIntArray(stacks.parent) && isIntArray(stacks.frame, stacks.parent.length), 'malformed profile: stacks.parent/frame missing or of different lengths');
  const n = samples && Array.isArray(samples.dt) ? samples.dt.length : -1;
  need(n >= 0 && isIntArray(samples.thread, n) && isIntArray(samples.stack, n) && isIntArray(samples.weight, n),
    'malformed profile: samples.dt/thread/stack/weight missing or of different lengths');
  const threads = Array.isArray(doc.threads) ? doc.threads : [];

  const frameFunc = new Int32Array(doc.frames.length);
  doc.frames.forEach((f, i) => {
    need(Array.isArray(f), `malformed profile: frame ${i} is not [name, file, line]`);
    frameFunc[i] = tree.intern(f[0], doc.files[f[1]] ?? '', f[2]);
  });
  const nStacks = stacks.parent.length;
  // Version 3's lines; the schema lets a writer leave them out (all unknown).
  const lines = doc.version >= 3 && stacks.line !== undefined ? stacks.line : null;
  need(lines === null || isIntArray(lines, nStacks),
    `malformed profile: stacks.line is not an array as long as stacks.parent (${nStacks} stacks)`);
  const stackNode = new Int32Array(nStacks), stackLine = new Int32Array(nStacks);
  for (let s = 0; s < nStacks; s++) {
    const p = stacks.parent[s], fr = stacks.frame[s];
    need(p < s && fr >= 0 && fr < frameFunc.length, `malformed profile: stack ${s} has a bad parent or frame`);
    const line = lines === null ? 0 : lines[s];
    need(Number.isInteger(line) && line >= 0, `malformed profile: stacks.line[${s}] is ${JSON.stringify(line)}, not a line number`);
    stackNode[s] = tree.child(p < 0 ? -1 : stackNode[p], frameFunc[fr]);
    stackLine[s] = tree.lineChild(p < 0 ? -1 : stackLine[p], tree.site(frameFunc[fr], line));
  }

  const t = new Float64Array(n), thread = new Int32Array(n), node = new Int32Array(n), weight = new Float64Array(n);
  const lineNode = new Int32Array(n);
  let now = 0;
  for (let i = 0; i < n; i++) {
    now += samples.dt[i];
    t[i] = now;
    const s = samples.stack[i], th = samples.thread[i];
    need(s >= 0 && s < nStacks && th >= 0 && th < threads.length, `malformed profile: sample ${i} names a missing stack or thread`);
    node[i] = stackNode[s];
    lineNode[i] = stackLine[s];
    thread[i] = th;
    weight[i] = samples.weight[i];
  }

  const load = doc.load || {};
  const lt = Array.isArray(load.t) ? load.t : [];
  const ramKb = meta.ram_kb || 0;
  const stalls = parseStalls(doc.stalls, stackNode, stackLine, threads.length);
  const model = {
    format: 'v1',
    meta,
    stats: doc.stats || {},
    startMs: meta.start_ms,
    endMs: Math.max(meta.end_ms, meta.start_ms + now),
    weightUnit: meta.weight_unit || 'us',
    threads: threads.map((th, i) => ({ name: th.name || `thread ${i}`, ident: th.ident, nativeId: th.native_id })),
    t, thread, node, lineNode, weight,
    lines: lines !== null,
    count: sampleCounts(thread, weight, threads.length, meta.frequency || 1),
    load: {
      t: Float64Array.from(lt),
      cpu: Float64Array.from(lt, (_, i) => (load.cpu_permille?.[i] ?? 0) / 10),
      mem: Float64Array.from(lt, (_, i) => (ramKb ? (100 * (load.rss_kb?.[i] ?? 0)) / ramKb : 0)),
      rssKb: Float64Array.from(lt, (_, i) => load.rss_kb?.[i] ?? 0),
      cpuLabel: 'process CPU % (100 = one core)',
      memLabel: 'process memory % of RAM',
    },
    builds: (Array.isArray(doc.builds) ? doc.builds : []).map(normalizeBuild).sort((a, b) => a.startMs - b.startMs),
    stalls,
    stallsDropped: doc.stalls?.dropped ?? 0,
    stallThresholdMs: (doc.stalls?.threshold_us ?? 0) / 1000,
  };
  return model;
}

// Version 2's reactor stalls: times in ms since meta.start_ms, stacks as
// tree nodes and line-tree nodes (-1: none), in time order.
function parseStalls(stalls, stackNode, stackLine, nThreads) {
  if (!stalls || !Array.isArray(stalls.items)) return [];
  const node = (s) => (s >= 0 && s < stackNode.length ? stackNode[s] : -1);
  const lineNode = (s) => (s >= 0 && s < stackLine.length ? stackLine[s] : -1);
  const thread = (th) => (th >= 0 && th < nThreads ? th : -1);
  return stalls.items.map((item, i) => {
    const sm = item.samples || {};
    need(typeof item.start === 'number' && typeof item.duration_us === 'number' && isIntArray(sm.t),
      `malformed profile: stall ${i} lacks start, duration_us or samples`);
    return {
      startMs: item.start,
      durationMs: item.duration_us / 1000,
      mainCpuUs: item.main_cpu_us ?? 0,
      sampledUs: item.sampled_us ?? 0,
      t: sm.t.map((dt) => item.start + dt),
      thread: (sm.thread || []).map(thread),
      node: (sm.stack || []).map(node),
      lineNode: (sm.stack || []).map(lineNode),
      busyThread: (sm.busy_thread || []).map(thread),
      busyNode: (sm.busy_stack || []).map(node),
      busyLineNode: (sm.busy_stack || []).map(lineNode),
    };
  }).sort((a, b) => a.startMs - b.startMs);
}

function normalizeBuild(b) {
  return {
    buildid: b.buildid, builderid: b.builderid, builder: b.builder || `builder ${b.builderid}`,
    number: b.number, startMs: b.started_ms, completeMs: b.complete_ms ?? null,
    results: b.results ?? null, stateString: b.state_string || '',
    steps: Array.isArray(b.steps) ? b.steps : [],
  };
}

function parseLegacy(doc, tree) {
  const frameFunc = doc.frames.map((f, i) => {
    need(Array.isArray(f) && f.length >= 3, `malformed 1.x profile: frame ${i} is not [file, line, function]`);
    // 1.x keeps the line being executed, not the function's first line: group by function.
    return tree.intern(f[2], f[0], 0);
  });
  const raw = doc.samples;
  const threadIndex = new Map();
  const threads = [];
  const nodeOfStack = new Map(); // frame list -> [node, line node]
  const t = [], thread = [], node = [], lineNode = [];
  const loadT = [], loadCpu = [], loadMem = [];
  raw.forEach((s, i) => {
    need(s && typeof s.time === 'number' && s.threads && typeof s.threads === 'object', `malformed 1.x profile: sample ${i} lacks time or threads`);
  });
  // Times can go backwards (the 1.x handler re-entered by the next tick): take
  // the samples in time order, ties in file order (Array sort is stable).
  const order = raw.map((_, i) => i).sort((a, b) => raw[a].time - raw[b].time);
  const start = order.length ? raw[order[0]].time * 1000 : 0;
  order.forEach((i) => {
    const s = raw[i];
    const ms = s.time * 1000 - start;
    if (Array.isArray(s.cpu) && s.cpu.length) {
      loadT.push(ms);
      loadCpu.push(s.cpu.reduce((a, b) => a + b, 0) / s.cpu.length);
      loadMem.push(s.mem && typeof s.mem.percent === 'number' ? s.mem.percent : 0);
    }
    for (const [tid, frames] of Object.entries(s.threads)) {
      need(Array.isArray(frames), `malformed 1.x profile: sample ${i} thread ${tid} is not a frame list`);
      let th = threadIndex.get(tid);
      if (th === undefined) {
        th = threads.length;
        threadIndex.set(tid, th);
        threads.push({ name: `thread ${tid}`, ident: Number(tid) });
      }
      const key = frames.join(',');
      let leaves = nodeOfStack.get(key);
      if (leaves === undefined) {
        let leaf = -1, lineLeaf = -1;
        for (let k = frames.length - 1; k >= 0; k--) { // innermost first in 1.x
          const f = frames[k];
          need(f >= 0 && f < frameFunc.length, `malformed 1.x profile: sample ${i} names missing frame ${f}`);
          leaf = tree.child(leaf, frameFunc[f]);
          lineLeaf = tree.lineChild(lineLeaf, tree.site(frameFunc[f], 0)); // lines unknown (docs/FORMAT.md)
        }
        nodeOfStack.set(key, (leaves = [leaf, lineLeaf]));
      }
      if (leaves[0] < 0) continue;
      t.push(ms);
      thread.push(th);
      node.push(leaves[0]);
      lineNode.push(leaves[1]);
    }
  });
  const n = t.length;
  const lastMs = order.length ? raw[order[order.length - 1]].time * 1000 : 0;
  const model = {
    format: '1.x',
    meta: { frequency: doc.frequency, gatherperiod: doc.gatherperiod, start_ms: start, end_ms: lastMs },
    stats: { samples: n },
    startMs: start,
    endMs: Math.max(lastMs, start + 1),
    weightUnit: 'samples',
    threads,
    t: Float64Array.from(t), thread: Int32Array.from(thread), node: Int32Array.from(node),
    lineNode: Int32Array.from(lineNode),
    lines: false,
    weight: new Float64Array(n).fill(1),
    count: new Float64Array(n).fill(1), // a 1.x sample is one tick
    load: {
      t: Float64Array.from(loadT), cpu: Float64Array.from(loadCpu), mem: Float64Array.from(loadMem), rssKb: null,
      cpuLabel: 'machine CPU % (1.x: all cores)', memLabel: 'machine memory % (1.x)',
    },
    builds: (Array.isArray(doc.builds) ? doc.builds : []).filter((b) => b && typeof b.started_at === 'number').map((b) => normalizeBuild({
      ...b,
      started_ms: Math.round(b.started_at * 1000),
      complete_ms: typeof b.complete_at === 'number' ? Math.round(b.complete_at * 1000) : null,
    })).sort((a, b) => a.startMs - b.startMs),
  };
  return model;
}

// Reads bytes (gzip or plain) into a document; gzip through the browser's own
// DecompressionStream, so nothing is bundled for it.
export async function decodeBytes(buffer) {
  let bytes = new Uint8Array(buffer);
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
      bytes = new Uint8Array(await new Response(stream).arrayBuffer());
    } catch (e) {
      throw new ProfileError(`cannot decompress: the gzip data is corrupt or truncated (${e.message})`);
    }
  }
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    throw new ProfileError('not a profile: the file is neither gzip nor UTF-8 JSON');
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ProfileError(`not valid JSON: ${e.message}`);
  }
}
