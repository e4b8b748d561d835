// Turns a profile document (our v1 format, or the plain JSON of
// buildbot_profiler 1.x) into one in-memory model the views share:
//   funcs:   function table (name, file, line), one entry per distinct function
//   nodes:   a prefix tree of functions (nodeParent < own index, nodeFunc)
//   samples: typed arrays in time order (t ms since startMs, thread, node, weight)
//   load:    process CPU % and memory % over time; builds; header facts.
// Two stacks that differ only in line numbers share their nodes, so the flame
// graph, the table and the caller/callee view all count by function.

export class ProfileError extends Error {}

class TreeBuilder {
  constructor() {
    this.funcIndex = new Map();
    this.funcName = [];
    this.funcFile = [];
    this.funcLine = [];
    this.nodeIndex = new Map();
    this.parent = [];
    this.func = [];
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

  finish(model) {
    model.funcs = { name: this.funcName, file: this.funcFile, line: this.funcLine };
    model.nodeParent = Int32Array.from(this.parent);
    model.nodeFunc = Int32Array.from(this.func);
    return model;
  }
}

function need(cond, message) {
  if (!cond) throw new ProfileError(message);
}

function isIntArray(a, n) {
  return Array.isArray(a) && (n === undefined || a.length === n);
}

export function parseProfile(doc) {
  need(doc && typeof doc === 'object' && !Array.isArray(doc), 'not a profile: the JSON document is not an object');
  if (doc.format === 'buildbot-profiler') return parseV1(doc);
  if (Array.isArray(doc.frames) && Array.isArray(doc.samples)) return parseLegacy(doc);
  throw new ProfileError('not a buildbot-profiler file: neither format v1 nor a 1.x profile');
}

function parseV1(doc) {
  need(doc.version === 1, `unsupported format version ${JSON.stringify(doc.version)} (this viewer reads version 1)`);
  const meta = doc.meta, stacks = doc.stacks, samples = doc.samples;
  need(meta && typeof meta.start_ms === 'number' && typeof meta.end_ms === 'number', 'malformed profile: meta.start_ms/end_ms missing');
  need(Array.isArray(doc.frames) && Array.isArray(doc.files), 'malformed profile: frames or files missing');
  need(stacks && isIntArray(stacks.parent) && isIntArray(stacks.frame, stacks.parent.length), 'malformed profile: stacks.parent/frame missing or of different lengths');
  const n = samples && Array.isArray(samples.dt) ? samples.dt.length : -1;
  need(n >= 0 && isIntArray(samples.thread, n) && isIntArray(samples.stack, n) && isIntArray(samples.weight, n),
    'malformed profile: samples.dt/thread/stack/weight missing or of different lengths');
  const threads = Array.isArray(doc.threads) ? doc.threads : [];

  const tree = new TreeBuilder();
  const frameFunc = new Int32Array(doc.frames.length);
  doc.frames.forEach((f, i) => {
    need(Array.isArray(f), `malformed profile: frame ${i} is not [name, file, line]`);
    frameFunc[i] = tree.intern(f[0], doc.files[f[1]] ?? '', f[2]);
  });
  const nStacks = stacks.parent.length;
  const stackNode = new Int32Array(nStacks);
  for (let s = 0; s < nStacks; s++) {
    const p = stacks.parent[s], fr = stacks.frame[s];
    need(p < s && fr >= 0 && fr < frameFunc.length, `malformed profile: stack ${s} has a bad parent or frame`);
    stackNode[s] = tree.child(p < 0 ? -1 : stackNode[p], frameFunc[fr]);
  }

  const t = new Float64Array(n), thread = new Int32Array(n), node = new Int32Array(n), weight = new Float64Array(n);
  let now = 0;
  for (let i = 0; i < n; i++) {
    now += samples.dt[i];
    t[i] = now;
    const s = samples.stack[i], th = samples.thread[i];
    need(s >= 0 && s < nStacks && th >= 0 && th < threads.length, `malformed profile: sample ${i} names a missing stack or thread`);
    node[i] = stackNode[s];
    thread[i] = th;
    weight[i] = samples.weight[i];
  }

  const load = doc.load || {};
  const lt = Array.isArray(load.t) ? load.t : [];
  const ramKb = meta.ram_kb || 0;
  const model = {
    format: 'v1',
    meta,
    stats: doc.stats || {},
    startMs: meta.start_ms,
    endMs: Math.max(meta.end_ms, meta.start_ms + now),
    weightUnit: meta.weight_unit || 'us',
    threads: threads.map((th, i) => ({ name: th.name || `thread ${i}`, ident: th.ident, nativeId: th.native_id })),
    t, thread, node, weight,
    load: {
      t: Float64Array.from(lt),
      cpu: Float64Array.from(lt, (_, i) => (load.cpu_permille?.[i] ?? 0) / 10),
      mem: Float64Array.from(lt, (_, i) => (ramKb ? (100 * (load.rss_kb?.[i] ?? 0)) / ramKb : 0)),
      rssKb: Float64Array.from(lt, (_, i) => load.rss_kb?.[i] ?? 0),
      cpuLabel: 'process CPU % (100 = one core)',
      memLabel: 'process memory % of RAM',
    },
    builds: (Array.isArray(doc.builds) ? doc.builds : []).map(normalizeBuild).sort((a, b) => a.startMs - b.startMs),
  };
  return tree.finish(model);
}

function normalizeBuild(b) {
  return {
    buildid: b.buildid, builderid: b.builderid, builder: b.builder || `builder ${b.builderid}`,
    number: b.number, startMs: b.started_ms, completeMs: b.complete_ms ?? null,
    results: b.results ?? null, stateString: b.state_string || '',
    steps: Array.isArray(b.steps) ? b.steps : [],
  };
}

function parseLegacy(doc) {
  const tree = new TreeBuilder();
  const frameFunc = doc.frames.map((f, i) => {
    need(Array.isArray(f) && f.length >= 3, `malformed 1.x profile: frame ${i} is not [file, line, function]`);
    // 1.x keeps the line being executed, not the function's first line: group by function.
    return tree.intern(f[2], f[0], 0);
  });
  const raw = doc.samples;
  const threadIndex = new Map();
  const threads = [];
  const nodeOfStack = new Map();
  const t = [], thread = [], node = [];
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
      let leaf = nodeOfStack.get(key);
      if (leaf === undefined) {
        leaf = -1;
        for (let k = frames.length - 1; k >= 0; k--) { // innermost first in 1.x
          const f = frames[k];
          need(f >= 0 && f < frameFunc.length, `malformed 1.x profile: sample ${i} names missing frame ${f}`);
          leaf = tree.child(leaf, frameFunc[f]);
        }
        nodeOfStack.set(key, leaf);
      }
      if (leaf < 0) continue;
      t.push(ms);
      thread.push(th);
      node.push(leaf);
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
    weight: new Float64Array(n).fill(1),
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
  return tree.finish(model);
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
