// The viewer page: loads the profile list and one profile, or several merged
// into one, from the API next to this script (so it works at "/" and under
// "/plugins/profiler/"), or local files; wires the header, timeline, flame
// graph, tables and exports, and compare mode (two selections A and B: a
// differential flame graph and the functions that grew and shrank most).
// The line view (lines.js, lineview.js) splits functions by line.

import './style.css';
import { utcFormat } from 'd3-time-format';
import { parseProfile, decodeBytes, ProfileError } from './parse.js';
import { prepare, aggregate, hotFunctions, callersCallees, flameTree, toCollapsed, toSpeedscope, diffFunctions, diffTree } from './aggregate.js';
import { createMerger, singleFile, partMask } from './merge.js';
import { createTimeline, buildTitle, buildColor } from './timeline.js';
import { createFlame } from './flame.js';
import { escapeHtml, pct, shortFile } from './format.js';
import { prepareLines, lineFlameTree } from './lines.js';
import { syncLineToggle, renderHotLines } from './lineview.js';

const scriptUrl = (document.currentScript && document.currentScript.src) || location.href;
const API = window.BBPROFILER_API || new URL('api/', scriptUrl).href;
const $ = (id) => document.getElementById(id);
const fmtUtc = utcFormat('%Y-%m-%d %H:%M:%S UTC');
const fmtClock = utcFormat('%H:%M:%S');

// names: the files open (one, or several merged); master: -1 (all) or an index
// of profile.masters; sides: the A and B chosen for compare ({names, t0, t1
// in epoch ms, label}); compare: null or {a, b, aggA, aggB} while comparing;
// lineView: the "Lines" toggle's choice (shown when the profile has lines).
const state = {
  profile: null, name: '', names: [], local: false, sel: null, agg: null, func: -1, build: null, listing: [],
  master: -1, sides: { a: null, b: null }, compare: null, preselected: null, lineView: false,
};
const timings = { marks: {} };
window.bbprofiler = { state, timings, renders: 0 };

const mark = (k) => { timings.marks[k] = performance.now(); };
const nextPaint = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));

function fmtDuration(ms) {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${(ms / 1000).toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min ${s % 60 ? (s % 60) + ' s' : ''}`.trim();
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function fmtWeight(p, w) {
  if (p.weightUnit === 'us') return w >= 1e6 ? `${(w / 1e6).toFixed(2)} s` : `${(w / 1e3).toFixed(1)} ms`;
  return `${w} samples`;
}

function funcLabel(p, f) {
  if (f < 0) return '(thread root)';
  return p.funcs.name[f];
}

function funcWhere(p, f) {
  if (f < 0) return '';
  const file = p.funcs.file[f], line = p.funcs.line[f];
  return file ? (line ? `${file}:${line}` : file) : '';
}

function setState(s) { document.body.dataset.state = s; }

function showError(title, message) {
  const box = $('error');
  box.innerHTML = `<h2>${escapeHtml(title)}</h2><p>${escapeHtml(message)}</p>` +
    '<p class="hint">Pick another profile above, or open a local file (ours: .json.gz; buildbot_profiler 1.x: .json).</p>';
  box.hidden = false;
  setState('error');
}

// ---- loading ---------------------------------------------------------------

async function fetchListing() {
  try {
    const r = await fetch(new URL('profiles', API));
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const body = await r.json();
    state.preselected = Array.isArray(body.selected) ? body.selected : null;
    return body.profiles || [];
  } catch (e) {
    return null; // no server (e.g. opened from disk): local files still work
  }
}

function describeEntry(e) {
  const when = e.error ? `⚠ ${e.error}` : `${fmtUtc(new Date(e.start_ms))}, ${fmtDuration(e.end_ms - e.start_ms)}, ${e.samples} samples${e.format && e.format !== 'buildbot-profiler' ? ', 1.x' : ''}`;
  return `${e.name} — ${when}${e.hostname ? ' · ' + e.hostname : ''}`;
}

// current: the open file names. One file is the picker's choice; several
// show as one "merged" entry, and are selected in the files list.
function fillPicker(listing, current, localName) {
  const picker = $('picker');
  const names = Array.isArray(current) ? current : current ? [current] : [];
  picker.innerHTML = '';
  if (localName) picker.add(new Option(localName, '', true, true));
  else if (names.length > 1) picker.add(new Option(`${names.length} files merged`, '', true, true));
  if (!listing.length && !localName) picker.add(new Option('no profiles found', ''));
  for (const e of listing) {
    picker.add(new Option(describeEntry(e), e.name, false, !localName && names.length === 1 && e.name === names[0]));
  }
  const files = $('files');
  files.innerHTML = '';
  for (const e of listing) {
    const opt = new Option(describeEntry(e), e.name, false, names.includes(e.name));
    opt.disabled = Boolean(e.error);
    files.add(opt);
  }
  files.size = Math.min(12, Math.max(4, listing.length));
}

async function loadFromServer(name) {
  const entry = state.listing.find((e) => e.name === name);
  if (entry && entry.error) throw new ProfileError(entry.error);
  let r;
  try {
    r = await fetch(new URL('profiles/' + encodeURIComponent(name), API));
  } catch (e) {
    throw new ProfileError(`cannot download it: ${e.message} (a corrupt gzip file fails this way)`);
  }
  if (!r.ok) {
    let msg = `HTTP ${r.status}`;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new ProfileError(msg);
  }
  let buffer;
  try {
    buffer = await r.arrayBuffer();
  } catch (e) {
    throw new ProfileError(`cannot download it: ${e.message} (a corrupt gzip file fails this way)`);
  }
  return decodeBytes(buffer); // already inflated by the browser (Content-Encoding: gzip)
}

async function openDocument(name, getDoc) {
  return openDocuments([name], [getDoc]);
}

function mergedLabel(names) {
  return names.length === 1 ? names[0] : `${names.length} files (${names[0]} … ${names[names.length - 1]})`;
}

// names[i] is read by getDocs[i]; several are fetched at once and parsed one
// by one as they arrive, into one merged model.
async function openDocuments(names, getDocs, { local = false, keepCompare = false } = {}) {
  $('error').hidden = true;
  setState('loading');
  const label = mergedLabel(names);
  try {
    mark('fetchStart');
    let model;
    if (names.length === 1) {
      const doc = await getDocs[0]();
      mark('parseStart');
      model = singleFile(names[0], parseProfile(doc));
    } else {
      const merger = createMerger();
      let failed = null;
      await Promise.all(getDocs.map(async (get, i) => {
        try {
          const doc = await get();
          if (!failed) merger.add(names[i], doc);
        } catch (e) {
          failed = failed || new ProfileError(`${names[i]}: ${e.message}`);
        }
      }));
      if (failed) throw failed;
      mark('parseStart');
      model = merger.finish();
    }
    const p = prepare(model);
    if (p.lines) prepareLines(p);
    mark('parseEnd');
    state.profile = p;
    state.names = p.parts.map((part) => part.name); // in time order
    state.name = mergedLabel(state.names);
    state.local = local;
    state.func = -1;
    state.build = null;
    state.master = -1;
    if (!keepCompare) state.compare = null;
    state.sel = { t0: 0, t1: p.endMs - p.startMs + 1, thread: -1, parts: null, stall: null };
    $('views').hidden = false;
    renderHeader();
    fillMasters();
    fillThreads();
    drawTimeline();
    renderBuilds();
    renderSides();
    if (!keepCompare) await render();
    mark('firstRender');
    setState('ready');
    return true;
  } catch (e) {
    if (!(e instanceof ProfileError)) console.error(e);
    showError(`Cannot open ${label}`, e.message);
    return false;
  }
}

async function openLocalFiles(files) {
  files = [...files];
  if (!files.length) return;
  fillPicker(state.listing, '', files.length === 1 ? `${files[0].name} (local file)` : `${files.length} files merged (local files)`);
  await openDocuments(files.map((f) => f.name), files.map((f) => async () => decodeBytes(await f.arrayBuffer())), { local: true });
}

async function openServerFiles(names, options) {
  fillPicker(state.listing, names);
  return openDocuments(names, names.map((n) => () => loadFromServer(n)), options);
}

// ---- header, threads, builds -----------------------------------------------

function renderHeader() {
  const p = state.profile, m = p.meta, s = p.stats;
  const items = [];
  const add = (k, v) => { if (v !== undefined && v !== null && v !== '') items.push(`<span class="item"><b>${k}</b>${escapeHtml(v)}</span>`); };
  add(p.parts.length > 1 ? 'Files' : 'File', state.name);
  if (p.parts.length > 1) add('Gaps', p.gaps.length ? `${p.gaps.length} (${fmtDuration(p.gaps.reduce((a, g) => a + g[1] - g[0], 0))} without a file)` : 'none');
  add('Host', m.hostname || (p.format === '1.x' ? 'unknown (1.x file)' : ''));
  add('Buildbot', m.buildbot);
  add('Python', m.python);
  add('Period', `${fmtUtc(new Date(p.startMs))} → ${fmtClock(new Date(p.endMs))} (${fmtDuration(p.endMs - p.startMs)})`);
  add('Mode', m.mode || (p.format === '1.x' ? '1.x' : ''));
  add('Frequency', m.frequency !== undefined ? `${m.frequency} Hz` : '');
  // Samples are sampling intervals (p.count), as in every other count shown;
  // the file's stats.samples counts its sample records.
  const kept = p.count.reduce((a, b) => a + b, 0);
  add('Samples kept', kept.toLocaleString('en-US'));
  const records = s.samples ?? p.t.length;
  if (records !== kept) add('Sample records', records.toLocaleString('en-US'));
  add('Idle dropped', s.idle !== undefined ? s.idle.toLocaleString('en-US') : p.format === '1.x' ? 'not recorded (1.x)' : '');
  if (s.truncated) add('Truncated', s.truncated.toLocaleString('en-US'));
  if (s.missed) add('Missed ticks', s.missed.toLocaleString('en-US'));
  $('info').innerHTML = items.join('');
  $('cpu-label').textContent = p.load.cpuLabel;
  $('mem-label').textContent = p.load.memLabel;
  document.title = `${state.name} — buildbot-profiler`;
}

// The master picker, shown when the files come from several masters.
function fillMasters() {
  const p = state.profile, sel = $('master');
  $('master-label').hidden = p.masters.length < 2;
  sel.innerHTML = '';
  sel.add(new Option(`all masters, merged (${p.masters.length})`, '-1'));
  p.masters.forEach((m, i) => {
    const files = p.parts.filter((part) => part.master === m).length;
    sel.add(new Option(`${m} — ${files} file${files > 1 ? 's' : ''}`, String(i)));
  });
  sel.value = String(state.master);
}

function fillThreads() {
  const p = state.profile, sel = $('thread');
  const counts = new Float64Array(p.threads.length);
  let all = 0;
  for (let i = 0; i < p.thread.length; i++) { counts[p.thread[i]] += p.count[i]; all += p.count[i]; }
  const several = p.masters.length > 1;
  sel.innerHTML = '';
  sel.add(new Option(`all threads, merged (${p.threads.length})`, '-1'));
  sel.add(new Option('all threads, one root each', '-2'));
  p.threads.map((t, i) => [t, i]).sort((a, b) => counts[b[1]] - counts[a[1]]).forEach(([t, i]) => {
    if (state.master >= 0 && t.master !== p.masters[state.master]) return;
    sel.add(new Option(`${several ? t.master + ': ' : ''}${t.name} — ${pct(counts[i], all)} of samples`, String(i)));
  });
  sel.value = String(state.sel ? state.sel.thread : -1);
  if (sel.value === '') sel.value = '-1';
}

// Samples per second in bins of at least a second (at most ~2000 bins); NaN
// for a bin that no shown file covers, so the line breaks at gaps.
function sampleRates(p, thread, mask) {
  const duration = Math.max(1, p.endMs - p.startMs);
  const binMs = Math.max(1000, Math.ceil(duration / 2000 / 1000) * 1000);
  const bins = Math.max(1, Math.ceil(duration / binMs));
  const counts = new Float64Array(bins);
  const part = p.part;
  for (let i = 0; i < p.t.length; i++) {
    if (thread >= 0 && p.thread[i] !== thread) continue;
    if (mask && mask[part[i]] === 0) continue;
    counts[Math.min(bins - 1, Math.max(0, Math.floor(p.t[i] / binMs)))] += p.count[i];
  }
  const covered = new Uint8Array(bins);
  p.parts.forEach((part, k) => {
    if (mask && mask[k] === 0) return;
    const b0 = Math.max(0, Math.floor((part.startMs - p.startMs) / binMs));
    const b1 = Math.min(bins - 1, Math.floor((part.endMs - 1 - p.startMs) / binMs));
    covered.fill(1, b0, b1 + 1);
  });
  const rates = Float64Array.from(counts, (c, b) => (covered[b] ? c / (binMs / 1000) : NaN));
  return { rates, binMs };
}

function masterMask() {
  return state.master >= 0 ? partMask(state.profile, state.master) : null;
}

function shownBuilds() {
  const p = state.profile;
  return state.master >= 0 ? p.builds.filter((b) => b.master === p.masters[state.master]) : p.builds;
}

let timeline = null;
const ratesCache = { profile: null, key: '', value: null };
function drawTimeline() {
  const mask = masterMask();
  const key = `${state.sel.thread}|${state.master}`;
  if (ratesCache.profile !== state.profile || ratesCache.key !== key) {
    Object.assign(ratesCache, { profile: state.profile, key, value: sampleRates(state.profile, state.sel.thread, mask) });
  }
  const { rates, binMs } = ratesCache.value;
  window.bbprofiler.sampleRates = { rates, binMs }; // for the browser tests
  timeline.draw(state.profile, rates, { binMs, parts: mask, builds: shownBuilds() });
  timeline.show(state.compare ? null : rangeOf(state.sel));
  timeline.bands(compareBands());
}

function rangeOf(sel) { return [sel.t0, sel.t1]; }

function renderBuilds() {
  const p = state.profile, box = $('builds');
  const several = p.masters.length > 1 && state.master < 0;
  box.innerHTML = '';
  for (const b of [...shownBuilds()].reverse()) {
    const btn = document.createElement('button');
    btn.dataset.buildid = b.buildid;
    btn.title = buildTitle(b) + (several ? ` on ${b.master}` : '') + ' — click to restrict the view to this build';
    btn.innerHTML = `<span class="dot" style="background:${buildColor(b)}"></span>${several ? escapeHtml(b.master) + ': ' : ''}${escapeHtml(b.builder)} #${escapeHtml(b.number)}`;
    btn.classList.toggle('active', state.build === b);
    btn.addEventListener('click', () => selectBuild(b));
    box.appendChild(btn);
  }
}

function buildsDuring(p, t0, t1) {
  return p.builds.filter((b) => b.startMs - p.startMs < t1 && (b.completeMs ?? p.endMs) - p.startMs > t0);
}

function selectStall(stall) {
  const p = state.profile;
  const t0 = Math.max(0, stall.startMs);
  const t1 = Math.max(t0 + 1, Math.min(p.endMs - p.startMs + 1, stall.startMs + stall.durationMs));
  state.build = null;
  state.sel = { ...state.sel, t0, t1, stall };
  timeline.highlight(null);
  timeline.show([t0, t1]);
  timeline.highlightStall(stall);
  const running = new Set(buildsDuring(p, t0, t1).map((b) => String(b.buildid)));
  timeline.markBuilds(running);
  for (const el of $('builds').children) {
    el.classList.remove('active');
    el.classList.toggle('during-stall', running.has(el.dataset.buildid));
  }
  rerender('stall');
}

function clearStall() {
  timeline.highlightStall(null);
  timeline.markBuilds(new Set());
  for (const el of $('builds').children) el.classList.remove('during-stall');
}

function selectBuild(b) {
  const p = state.profile;
  clearStall();
  const t0 = Math.max(0, b.startMs - p.startMs);
  const t1 = Math.min(p.endMs - p.startMs + 1, (b.completeMs ?? p.endMs) - p.startMs);
  state.build = b;
  state.sel = { ...state.sel, t0, t1: Math.max(t1, t0 + 1), stall: null };
  timeline.show([t0, t1]);
  timeline.highlight(b);
  for (const el of $('builds').children) el.classList.toggle('active', el.dataset.buildid === String(b.buildid));
  rerender('build');
}

function setRange(range) {
  const p = state.profile;
  clearStall();
  state.build = null;
  timeline.highlight(null);
  for (const el of $('builds').children) el.classList.remove('active');
  state.sel = range ? { ...state.sel, t0: range[0], t1: range[1], stall: null } : { ...state.sel, t0: 0, t1: p.endMs - p.startMs + 1, stall: null };
  if (!range) timeline.show(null);
  rerender('brush');
}

// ---- the views that follow the selection -----------------------------------

let flame = null;

async function rerender(reason) {
  const start = performance.now();
  await render();
  timings.last = { reason, ms: performance.now() - start };
  (timings.rerenders = timings.rerenders || []).push(timings.last);
}

// The flame graph's tree of the current selection: by function, or by line.
function currentTree() {
  const lines = syncLineToggle($('lines'), state.profile, state.lineView, Boolean(state.compare));
  return lines ? lineFlameTree(state.profile, state.agg) : flameTree(state.profile, state.agg);
}

async function render() {
  if (state.compare) {
    syncLineToggle($('lines'), state.profile, state.lineView, true);
    return renderCompare();
  }
  const p = state.profile;
  const t0 = performance.now();
  const agg = (state.agg = aggregate(p, state.sel));
  const t1 = performance.now();
  const sel = state.sel;
  const whole = sel.t0 <= 0 && sel.t1 >= p.endMs - p.startMs;
  const span = p.endMs - p.startMs > 86400000 ? fmtUtc : fmtClock;
  if (sel.stall) {
    const st = sel.stall, running = buildsDuring(p, sel.t0, sel.t1);
    $('selection').textContent = `Reactor stall at ${fmtClock(new Date(p.startMs + st.startMs))}, ${(st.durationMs / 1000).toFixed(2)} s` +
      ` · ${agg.totalN.toLocaleString('en-US')} wall-clock samples of the reactor and the thread holding the GIL` +
      ` · builds running: ${running.length ? running.map((b) => `${b.builder} #${b.number}`).join(', ') : 'none'}`;
  } else $('selection').textContent = `${whole ? (p.parts.length > 1 ? 'All files' : 'Whole period') : `${span(new Date(p.startMs + sel.t0))} → ${span(new Date(p.startMs + Math.min(sel.t1, p.endMs - p.startMs)))} (${fmtDuration(sel.t1 - sel.t0)})`}` +
    `${state.master >= 0 ? ` · ${p.masters[state.master]}` : ''}` +
    `${state.build ? ` · build ${state.build.builder} #${state.build.number}` : ''} · ${agg.totalN.toLocaleString('en-US')} samples${p.weightUnit === 'us' ? ' · ' + fmtWeight(p, agg.totalW) + (p.meta.mode === 'real' ? ' wall' : ' CPU') : ''}`;
  const tree = currentTree();
  const t2 = performance.now();
  flame.setDiff(false);
  flame.update(tree);
  const t3 = performance.now();
  showPanels(false);
  renderHot();
  renderCallers();
  const t4 = performance.now();
  window.bbprofiler.renders++;
  await nextPaint();
  timings.phases = { aggregate: t1 - t0, tree: t2 - t1, flame: t3 - t2, tables: t4 - t3, paint: performance.now() - t4 };
}

// ---- compare mode ------------------------------------------------------------

function masterIndex(name) {
  const i = state.profile.masters.indexOf(name);
  return i;
}

// A side's selection in the open model: its files (and master), its range.
function sideSel(side) {
  const p = state.profile, duration = p.endMs - p.startMs;
  const master = side.master ? masterIndex(side.master) : state.master;
  return {
    t0: side.t0 === null ? 0 : side.t0 - p.startMs,
    t1: side.t1 === null ? duration + 1 : side.t1 - p.startMs,
    thread: state.sel.thread === -2 ? -1 : state.sel.thread,
    parts: partMask(p, master, side.names),
  };
}

function describeSide(side) {
  if (!side) return 'not set';
  const files = side.names.length === 1 ? side.names[0] : `${side.names.length} files`;
  const range = side.t0 === null ? '' : `, ${fmtUtc(new Date(side.t0))} → ${fmtClock(new Date(side.t1))}`;
  return `${files}${range}${side.master ? ' · ' + side.master : ''}`;
}

function renderSides() {
  $('side-a').textContent = describeSide(state.sides.a);
  $('side-b').textContent = describeSide(state.sides.b);
  $('compare').disabled = !(state.sides.a && state.sides.b);
  $('exit-compare').hidden = !state.compare;
  document.body.classList.toggle('comparing', Boolean(state.compare));
}

// The current view (open files, brushed range, master) as side A or B.
function setSideFromView(which) {
  const p = state.profile;
  if (!p) return;
  const whole = state.sel.t0 <= 0 && state.sel.t1 >= p.endMs - p.startMs;
  state.sides[which] = {
    names: [...state.names],
    t0: whole ? null : p.startMs + state.sel.t0,
    t1: whole ? null : p.startMs + state.sel.t1,
    master: state.master >= 0 ? p.masters[state.master] : null,
  };
  renderSides();
}

// The files selected in the files list as side A or B (their whole span).
function setSideFromFiles(which) {
  const names = [...$('files').selectedOptions].map((o) => o.value);
  if (!names.length) return;
  state.sides[which] = { names, t0: null, t1: null, master: null };
  renderSides();
}

function compareBands() {
  if (!state.compare) return [];
  const p = state.profile;
  return ['a', 'b'].map((k) => {
    const side = state.compare[k];
    // A side of whole files: shade the files' spans.
    const t0 = side.t0 ?? Math.min(...p.parts.filter((x) => side.names.includes(x.name)).map((x) => x.startMs));
    const t1 = side.t1 ?? Math.max(...p.parts.filter((x) => side.names.includes(x.name)).map((x) => x.endMs));
    return { t0: t0 - p.startMs, t1: t1 - p.startMs, cls: 'band-' + k, label: k.toUpperCase() };
  });
}

// Compare A and B; the files of both are opened (merged) first unless the
// open model holds them all already.
async function startCompare(a = state.sides.a, b = state.sides.b) {
  if (!a || !b) return false;
  mark('compareStart');
  state.sides = { a, b };
  const union = [...new Set([...a.names, ...b.names])];
  if (!union.every((n) => state.names.includes(n))) {
    if (state.local) {
      showError('Cannot compare', 'A and B name local files that are not open together: open them all at once (select or drop them together), then set A and B.');
      return false;
    }
    const order = state.listing.map((e) => e.name);
    union.sort((x, y) => order.indexOf(x) - order.indexOf(y));
    if (!(await openServerFiles(union, { keepCompare: true }))) return false;
  }
  state.compare = { a, b };
  state.build = null;
  renderSides();
  drawTimeline();
  await rerender('compare');
  mark('compareEnd');
  return true;
}

async function exitCompare() {
  state.compare = null;
  renderSides();
  drawTimeline();
  await rerender('exit-compare');
}

async function renderCompare() {
  const p = state.profile, c = state.compare;
  const start = performance.now();
  const aggA = aggregate(p, sideSel(c.a)), aggB = aggregate(p, sideSel(c.b));
  c.aggA = aggA;
  c.aggB = aggB;
  state.agg = aggB;
  const t1 = performance.now();
  const tree = diffTree(p, aggA, aggB);
  const t2 = performance.now();
  flame.setDiff(true);
  flame.update(tree);
  const t3 = performance.now();
  const unit = p.meta.mode === 'real' ? ' wall' : ' CPU';
  const side = (k, agg) => `${k}: ${agg.totalN.toLocaleString('en-US')} samples${p.weightUnit === 'us' ? ', ' + fmtWeight(p, agg.totalW) + unit : ''}`;
  $('selection').textContent = `Compare · ${side('A', aggA)} · ${side('B', aggB)} · shares of each side's total`;
  showPanels(true);
  c.rows = diffFunctions(p, aggA, aggB, 40);
  renderDiffTable(c.rows);
  renderCallers();
  const t4 = performance.now();
  window.bbprofiler.renders++;
  await nextPaint();
  timings.phases = { aggregate: t1 - start, tree: t2 - t1, flame: t3 - t2, tables: t4 - t3, paint: performance.now() - t4 };
}

function showPanels(comparing) {
  $('hot-panel').hidden = comparing;
  $('diff-panel').hidden = !comparing;
  $('flame-title').textContent = comparing ? 'Differential flame graph' : 'Flame graph';
  $('diff-legend').hidden = !comparing;
}

function fmtPoints(v) {
  return (v > 0 ? '+' : v < 0 ? '−' : '±') + Math.abs(v).toFixed(2);
}

function renderDiffTable(rows) {
  const p = state.profile;
  const seconds = (us) => (p.weightUnit === 'us' ? `${us >= 0 ? '+' : '−'}${Math.abs(us / 1e6).toFixed(2)} s` : `${us >= 0 ? '+' : '−'}${Math.abs(us)}`);
  const body = (list) => (list.length ? list.map((r) => {
    const where = funcWhere(p, r.func);
    return `<tr data-func="${r.func}" title="${escapeHtml(p.funcs.name[r.func] + (where ? '\n' + where : '') + `\ntotal (with callees): ${fmtPoints(r.totalPoints)} points`)}">` +
      `<td>${escapeHtml(p.funcs.name[r.func])}<span class="file">${escapeHtml(shortFile(where))}</span></td>` +
      `<td class="num points ${r.points > 0 ? 'up' : r.points < 0 ? 'down' : ''}">${fmtPoints(r.points)}</td>` +
      `<td class="num">${r.shareA.toFixed(2)}%</td><td class="num">${r.shareB.toFixed(2)}%</td>` +
      `<td class="num">${seconds(r.selfB - r.selfA)}</td></tr>`;
  }).join('') : '<tr><td colspan="5" class="hint">none</td></tr>');
  $('grew').tBodies[0].innerHTML = body(rows.grew);
  $('shrank').tBodies[0].innerHTML = body(rows.shrank);
}

function renderHot() {
  const p = state.profile, agg = state.agg;
  const rows = hotFunctions(p, agg, 60);
  const body = $('hot').tBodies[0];
  if (!rows.length) {
    body.innerHTML = '<tr><td colspan="3" class="hint">No samples in this selection.</td></tr>';
    return;
  }
  body.innerHTML = rows.map((r) => {
    const where = funcWhere(p, r.func);
    return `<tr data-func="${r.func}" class="${r.func === state.func ? 'selected' : ''}" title="${escapeHtml(p.funcs.name[r.func] + (where ? '\n' + where : ''))}">` +
      `<td>${escapeHtml(p.funcs.name[r.func])}<span class="file">${escapeHtml(shortFile(where))}</span></td>` +
      `<td class="num bar-cell"><i style="width:${((100 * r.self) / agg.totalW).toFixed(1)}%"></i><span class="pct">${pct(r.self, agg.totalW)}</span></td>` +
      `<td class="num">${pct(r.total, agg.totalW)}</td></tr>`;
  }).join('');
}

function renderCallers() {
  const p = state.profile, agg = state.agg, box = $('callers');
  renderHotLines({ title: $('lines-title'), hint: $('lines-hint'), table: $('hot-lines') }, p, agg, state.func);
  if (state.func < 0) {
    $('callers-title').textContent = 'Callers and callees';
    box.innerHTML = '<p class="hint">Click a function in the table or the flame graph.</p>';
    return;
  }
  const cc = callersCallees(p, agg, state.func);
  $('callers-title').textContent = `Callers and callees`;
  const table = (title, rows) => `<h3>${title}</h3><table class="cc"><tbody>` +
    (rows.length ? rows.slice(0, 30).map((r) => `<tr data-func="${r.func}" title="${escapeHtml(funcWhere(p, r.func))}"><td>${escapeHtml(funcLabel(p, r.func))}</td><td class="num">${pct(r.weight, cc.total)}</td></tr>`).join('')
      : '<tr><td class="hint">none</td></tr>') + '</tbody></table>';
  box.innerHTML = `<div class="fn-title">${escapeHtml(p.funcs.name[state.func])}</div>` +
    `<div class="hint">${escapeHtml(funcWhere(p, state.func))}</div>` +
    `<div class="hint">total ${pct(cc.total, agg.totalW)} of the selection, self ${pct(cc.self, agg.totalW)} · ${fmtWeight(p, cc.total)}</div>` +
    table('Called by (% of this function’s time)', cc.callers) +
    table('Calls (% of this function’s time)', cc.callees);
}

function selectFunc(f) {
  if (f === undefined || f < 0) return;
  state.func = f;
  for (const tr of $('hot').tBodies[0].rows) tr.classList.toggle('selected', Number(tr.dataset.func) === f);
  renderCallers();
}

function describe(data, value, total) {
  const p = state.profile;
  const where = data.func >= 0 ? funcWhere(p, data.func) : '';
  const diff = state.compare && data.diff !== undefined
    ? `<br>${pct(data.value, state.agg.totalW)} of B, ${fmtPoints(data.diff)} points from A (share of B − share of A)` : '';
  const line = data.line ? `<br>at line ${data.line}` : '';
  return `<b>${escapeHtml(data.name)}</b>${where ? `<br>${escapeHtml(where)}` : ''}${line}` +
    `<br>${Math.round(data.samples).toLocaleString('en-US')} samples, ${fmtWeight(p, data.value)}` +
    (diff || `<br>${pct(data.value, state.agg.totalW)} of the selection`);
}

// ---- exports -----------------------------------------------------------------

function download(filename, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function exportBase() {
  const base = (state.names.length > 1 ? `merged-${state.names.length}-files` : state.name).replace(/\.json(\.gz)?$/, '');
  const th = state.sel.thread >= 0 ? '-' + state.profile.threads[state.sel.thread].name.replace(/[^\w.-]+/g, '_') : '';
  return base + th;
}

// ---- wiring ------------------------------------------------------------------

async function boot() {
  mark('boot');
  timeline = createTimeline($('timeline'), { onRange: setRange, onBuild: selectBuild, onStall: selectStall });
  flame = createFlame($('flame'), {
    describe,
    label: (d, total) => `${d.name}: ${Math.round(d.samples).toLocaleString('en-US')} samples, ${pct(d.value, total)}`,
    onClick: (d) => selectFunc(d.func),
    details: $('flame-details'),
  });

  $('hot').addEventListener('click', (e) => { const tr = e.target.closest('tr[data-func]'); if (tr) selectFunc(Number(tr.dataset.func)); });
  $('diff-panel').addEventListener('click', (e) => { const tr = e.target.closest('tr[data-func]'); if (tr) selectFunc(Number(tr.dataset.func)); });
  $('master').addEventListener('change', () => {
    state.master = Number($('master').value);
    state.build = null;
    state.sel = { ...state.sel, thread: -1, parts: masterMask() };
    fillThreads();
    drawTimeline();
    renderBuilds();
    rerender('master');
  });
  $('open-files').addEventListener('click', () => {
    const names = [...$('files').selectedOptions].map((o) => o.value);
    if (names.length) window.bbprofiler.openMany(names);
  });
  $('files-a').addEventListener('click', () => setSideFromFiles('a'));
  $('files-b').addEventListener('click', () => setSideFromFiles('b'));
  $('view-a').addEventListener('click', () => setSideFromView('a'));
  $('view-b').addEventListener('click', () => setSideFromView('b'));
  $('compare').addEventListener('click', () => startCompare());
  $('exit-compare').addEventListener('click', () => exitCompare());
  $('callers').addEventListener('click', (e) => { const tr = e.target.closest('tr[data-func]'); if (tr && Number(tr.dataset.func) >= 0) selectFunc(Number(tr.dataset.func)); });
  $('thread').addEventListener('change', () => {
    state.sel = { ...state.sel, thread: Number($('thread').value) };
    drawTimeline();
    timeline.highlight(state.build);
    rerender('thread');
  });
  $('reset-range').addEventListener('click', () => state.profile && setRange(null));
  $('reset-zoom').addEventListener('click', () => flame.resetZoom());
  $('icicle').addEventListener('change', (e) => {
    flame.setInverted(e.target.checked, state.agg ? currentTree() : null);
  });
  $('lines').addEventListener('change', (e) => {
    state.lineView = e.target.checked;
    if (state.profile) rerender('lines');
  });
  $('search').addEventListener('input', (e) => flame.search(e.target.value.trim()));
  $('picker').addEventListener('change', (e) => {
    if (!e.target.value) return;
    const url = new URL(location.href);
    url.searchParams.set('profile', e.target.value);
    history.pushState(null, '', url);
    openDocument(e.target.value, () => loadFromServer(e.target.value));
  });
  $('file-input').addEventListener('change', (e) => { if (e.target.files.length) openLocalFiles(e.target.files); });
  $('export-speedscope').addEventListener('click', () => {
    if (!state.profile) return;
    download(exportBase() + '.speedscope.json', JSON.stringify(toSpeedscope(state.profile, state.agg, state.name)), 'application/json');
  });
  $('export-collapsed').addEventListener('click', () => {
    if (!state.profile) return;
    download(exportBase() + '.collapsed.txt', toCollapsed(state.profile, state.agg), 'text/plain');
  });
  let dragDepth = 0;
  window.addEventListener('dragenter', (e) => { e.preventDefault(); dragDepth++; $('drop').hidden = false; });
  window.addEventListener('dragleave', () => { if (--dragDepth <= 0) { dragDepth = 0; $('drop').hidden = true; } });
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => {
    e.preventDefault();
    dragDepth = 0;
    $('drop').hidden = true;
    const files = e.dataTransfer && e.dataTransfer.files;
    if (files && files.length) openLocalFiles(files);
  });
  let resizeTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (state.profile && document.body.dataset.state === 'ready') { drawTimeline(); timeline.highlight(state.build); render(); } }, 200);
  });
  window.addEventListener('popstate', () => start());
  // For pages that embed the viewer (the Buildbot plugin's recording controls).
  window.bbprofiler.refresh = async () => {
    state.listing = (await fetchListing()) || [];
    fillPicker(state.listing, state.name);
    return state.listing;
  };
  window.bbprofiler.open = async (name) => {
    await window.bbprofiler.refresh();
    const url = new URL(location.href);
    url.searchParams.set('profile', name);
    history.pushState(null, '', url);
    fillPicker(state.listing, name);
    await openDocument(name, () => loadFromServer(name));
  };
  // Several served files as one profile.
  window.bbprofiler.openMany = async (names) => {
    const url = new URL(location.href);
    url.searchParams.delete('profile');
    names.forEach((n) => url.searchParams.append('profile', n));
    history.pushState(null, '', url);
    return openServerFiles(names);
  };
  // sides: {names: [...], t0, t1 (epoch ms or null), master (or null)}.
  window.bbprofiler.compare = (a, b) => startCompare(
    { t0: null, t1: null, master: null, ...a }, { t0: null, t1: null, master: null, ...b });
  await start();
}

async function start() {
  const listing = await fetchListing();
  state.listing = listing || [];
  const params = new URL(location.href).searchParams;
  const compareA = params.getAll('a'), compareB = params.getAll('b');
  const several = params.getAll('profile');
  const missing = [...several, ...compareA, ...compareB].find((n) => !state.listing.some((e) => e.name === n));
  if (missing) {
    fillPicker(state.listing, several);
    showError(`Cannot open ${missing}`, 'no such profile on this server');
    return;
  }
  if (compareA.length && compareB.length) {
    fillPicker(state.listing, [...new Set([...compareA, ...compareB])]);
    await startCompare({ names: compareA, t0: null, t1: null, master: null }, { names: compareB, t0: null, t1: null, master: null });
    return;
  }
  const preselected = !several.length && state.preselected && state.preselected.length ? state.preselected : null;
  if (several.length > 1 || (preselected && preselected.length > 1)) {
    await openServerFiles(several.length > 1 ? several : preselected);
    return;
  }
  const wanted = several[0] || (preselected && preselected[0]);
  const name = wanted || (state.listing.find((e) => !e.error) || state.listing[0] || {}).name;
  fillPicker(state.listing, name);
  if (!name) {
    $('views').hidden = true;
    showError(listing === null ? 'No profile server' : 'No profiles found',
      listing === null ? 'The profile list could not be loaded.' : 'The served paths hold no .json.gz or .json files.');
    return;
  }
  await openDocument(name, () => loadFromServer(name));
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
else boot();
