// The viewer page: loads the profile list and one profile from the API next
// to this script (so it works at "/" and under "/plugins/profiler/"), or a
// local file; wires the header, timeline, flame graph, tables and exports.

import './style.css';
import { utcFormat } from 'd3-time-format';
import { parseProfile, decodeBytes, ProfileError } from './parse.js';
import { prepare, aggregate, hotFunctions, callersCallees, flameTree, toCollapsed, toSpeedscope } from './aggregate.js';
import { createTimeline, buildTitle, buildColor } from './timeline.js';
import { createFlame } from './flame.js';

const scriptUrl = (document.currentScript && document.currentScript.src) || location.href;
const API = window.BBPROFILER_API || new URL('api/', scriptUrl).href;
const $ = (id) => document.getElementById(id);
const fmtUtc = utcFormat('%Y-%m-%d %H:%M:%S UTC');
const fmtClock = utcFormat('%H:%M:%S');

const state = { profile: null, name: '', sel: null, agg: null, func: -1, build: null, listing: [] };
const timings = { marks: {} };
window.bbprofiler = { state, timings, renders: 0 };

const mark = (k) => { timings.marks[k] = performance.now(); };
const nextPaint = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function pct(v, total) {
  if (!total || !v) return '0%';
  const x = (100 * v) / total;
  return (x >= 10 ? x.toFixed(1) : x >= 0.1 ? x.toFixed(2) : x.toFixed(3)) + '%';
}

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
    return body.profiles || [];
  } catch (e) {
    return null; // no server (e.g. opened from disk): local files still work
  }
}

function fillPicker(listing, current, localName) {
  const picker = $('picker');
  picker.innerHTML = '';
  if (localName) picker.add(new Option(`${localName} (local file)`, '', true, true));
  if (!listing.length && !localName) picker.add(new Option('no profiles found', ''));
  for (const e of listing) {
    const when = e.error ? `⚠ ${e.error}` : `${fmtUtc(new Date(e.start_ms))}, ${fmtDuration(e.end_ms - e.start_ms)}, ${e.samples} samples${e.format && e.format !== 'buildbot-profiler' ? ', 1.x' : ''}`;
    const opt = new Option(`${e.name} — ${when}`, e.name, false, !localName && e.name === current);
    picker.add(opt);
  }
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
  $('error').hidden = true;
  setState('loading');
  try {
    mark('fetchStart');
    const doc = await getDoc();
    mark('parseStart');
    const p = prepare(parseProfile(doc));
    mark('parseEnd');
    state.profile = p;
    state.name = name;
    state.func = -1;
    state.build = null;
    state.sel = { t0: 0, t1: p.endMs - p.startMs + 1, thread: -1 };
    $('views').hidden = false;
    renderHeader();
    fillThreads();
    drawTimeline();
    renderBuilds();
    await render();
    mark('firstRender');
    setState('ready');
  } catch (e) {
    if (!(e instanceof ProfileError)) console.error(e);
    showError(`Cannot open ${name}`, e.message);
  }
}

async function openLocalFile(file) {
  fillPicker(state.listing, '', file.name);
  await openDocument(file.name, async () => decodeBytes(await file.arrayBuffer()));
}

// ---- header, threads, builds -----------------------------------------------

function renderHeader() {
  const p = state.profile, m = p.meta, s = p.stats;
  const items = [];
  const add = (k, v) => { if (v !== undefined && v !== null && v !== '') items.push(`<span class="item"><b>${k}</b>${escapeHtml(v)}</span>`); };
  add('File', state.name);
  add('Host', m.hostname || (p.format === '1.x' ? 'unknown (1.x file)' : ''));
  add('Buildbot', m.buildbot);
  add('Python', m.python);
  add('Period', `${fmtUtc(new Date(p.startMs))} → ${fmtClock(new Date(p.endMs))} (${fmtDuration(p.endMs - p.startMs)})`);
  add('Mode', m.mode || (p.format === '1.x' ? '1.x' : ''));
  add('Frequency', m.frequency !== undefined ? `${m.frequency} Hz` : '');
  add('Samples kept', (s.samples ?? p.t.length).toLocaleString('en-US'));
  add('Idle dropped', s.idle !== undefined ? s.idle.toLocaleString('en-US') : p.format === '1.x' ? 'not recorded (1.x)' : '');
  if (s.truncated) add('Truncated', s.truncated.toLocaleString('en-US'));
  if (s.missed) add('Missed ticks', s.missed.toLocaleString('en-US'));
  $('info').innerHTML = items.join('');
  $('cpu-label').textContent = p.load.cpuLabel;
  $('mem-label').textContent = p.load.memLabel;
  document.title = `${state.name} — buildbot-profiler`;
}

function fillThreads() {
  const p = state.profile, sel = $('thread');
  const counts = new Float64Array(p.threads.length);
  for (let i = 0; i < p.thread.length; i++) counts[p.thread[i]]++;
  sel.innerHTML = '';
  sel.add(new Option(`all threads, merged (${p.threads.length})`, '-1'));
  sel.add(new Option('all threads, one root each', '-2'));
  p.threads.map((t, i) => [t, i]).sort((a, b) => counts[b[1]] - counts[a[1]]).forEach(([t, i]) => {
    sel.add(new Option(`${t.name} — ${pct(counts[i], p.thread.length)} of samples`, String(i)));
  });
}

function sampleRates(p, thread) {
  const seconds = Math.max(1, Math.ceil((p.endMs - p.startMs) / 1000));
  const rates = new Float64Array(seconds);
  for (let i = 0; i < p.t.length; i++) {
    if (thread >= 0 && p.thread[i] !== thread) continue;
    const s = Math.min(seconds - 1, Math.max(0, Math.floor(p.t[i] / 1000)));
    rates[s]++;
  }
  return rates;
}

let timeline = null;
function drawTimeline() {
  timeline.draw(state.profile, sampleRates(state.profile, state.sel.thread));
  timeline.show(rangeOf(state.sel));
}

function rangeOf(sel) { return [sel.t0, sel.t1]; }

function renderBuilds() {
  const p = state.profile, box = $('builds');
  box.innerHTML = '';
  for (const b of [...p.builds].reverse()) {
    const btn = document.createElement('button');
    btn.dataset.buildid = b.buildid;
    btn.title = buildTitle(b) + ' — click to restrict the view to this build';
    btn.innerHTML = `<span class="dot" style="background:${buildColor(b)}"></span>${escapeHtml(b.builder)} #${escapeHtml(b.number)}`;
    btn.classList.toggle('active', state.build === b);
    btn.addEventListener('click', () => selectBuild(b));
    box.appendChild(btn);
  }
}

function selectBuild(b) {
  const p = state.profile;
  const t0 = Math.max(0, b.startMs - p.startMs);
  const t1 = Math.min(p.endMs - p.startMs + 1, (b.completeMs ?? p.endMs) - p.startMs);
  state.build = b;
  state.sel = { ...state.sel, t0, t1: Math.max(t1, t0 + 1) };
  timeline.show([t0, t1]);
  timeline.highlight(b);
  for (const el of $('builds').children) el.classList.toggle('active', el.dataset.buildid === String(b.buildid));
  rerender('build');
}

function setRange(range) {
  const p = state.profile;
  state.build = null;
  timeline.highlight(null);
  for (const el of $('builds').children) el.classList.remove('active');
  state.sel = range ? { ...state.sel, t0: range[0], t1: range[1] } : { ...state.sel, t0: 0, t1: p.endMs - p.startMs + 1 };
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

async function render() {
  const p = state.profile;
  const t0 = performance.now();
  const agg = (state.agg = aggregate(p, state.sel));
  const t1 = performance.now();
  const sel = state.sel;
  const whole = sel.t0 <= 0 && sel.t1 >= p.endMs - p.startMs;
  $('selection').textContent = `${whole ? 'Whole period' : `${fmtClock(new Date(p.startMs + sel.t0))} → ${fmtClock(new Date(p.startMs + Math.min(sel.t1, p.endMs - p.startMs)))} (${fmtDuration(sel.t1 - sel.t0)})`}` +
    `${state.build ? ` · build ${state.build.builder} #${state.build.number}` : ''} · ${agg.totalN.toLocaleString('en-US')} samples${p.weightUnit === 'us' ? ' · ' + fmtWeight(p, agg.totalW) + (p.meta.mode === 'real' ? ' wall' : ' CPU') : ''}`;
  const tree = flameTree(p, agg);
  const t2 = performance.now();
  flame.update(tree);
  const t3 = performance.now();
  renderHot();
  renderCallers();
  const t4 = performance.now();
  window.bbprofiler.renders++;
  await nextPaint();
  timings.phases = { aggregate: t1 - t0, tree: t2 - t1, flame: t3 - t2, tables: t4 - t3, paint: performance.now() - t4 };
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

function shortFile(where) {
  const parts = where.split('/');
  return parts.length > 2 ? parts.slice(-2).join('/') : where;
}

function renderCallers() {
  const p = state.profile, agg = state.agg, box = $('callers');
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
  return `<b>${escapeHtml(data.name)}</b>${where ? `<br>${escapeHtml(where)}` : ''}` +
    `<br>${Math.round(data.samples).toLocaleString('en-US')} samples, ${fmtWeight(p, data.value)}` +
    `<br>${pct(data.value, state.agg.totalW)} of the selection`;
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
  const base = state.name.replace(/\.json(\.gz)?$/, '');
  const th = state.sel.thread >= 0 ? '-' + state.profile.threads[state.sel.thread].name.replace(/[^\w.-]+/g, '_') : '';
  return base + th;
}

// ---- wiring ------------------------------------------------------------------

async function boot() {
  mark('boot');
  timeline = createTimeline($('timeline'), { onRange: setRange, onBuild: selectBuild });
  flame = createFlame($('flame'), {
    describe,
    label: (d, total) => `${d.name}: ${Math.round(d.samples).toLocaleString('en-US')} samples, ${pct(d.value, total)}`,
    onClick: (d) => selectFunc(d.func),
    details: $('flame-details'),
  });

  $('hot').addEventListener('click', (e) => { const tr = e.target.closest('tr[data-func]'); if (tr) selectFunc(Number(tr.dataset.func)); });
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
    flame.setInverted(e.target.checked, state.agg ? flameTree(state.profile, state.agg) : null);
  });
  $('search').addEventListener('input', (e) => flame.search(e.target.value.trim()));
  $('picker').addEventListener('change', (e) => {
    if (!e.target.value) return;
    const url = new URL(location.href);
    url.searchParams.set('profile', e.target.value);
    history.pushState(null, '', url);
    openDocument(e.target.value, () => loadFromServer(e.target.value));
  });
  $('file-input').addEventListener('change', (e) => { if (e.target.files[0]) openLocalFile(e.target.files[0]); });
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
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) openLocalFile(file);
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
  await start();
}

async function start() {
  const listing = await fetchListing();
  state.listing = listing || [];
  const wanted = new URL(location.href).searchParams.get('profile');
  const name = wanted || (state.listing.find((e) => !e.error) || state.listing[0] || {}).name;
  fillPicker(state.listing, name);
  if (wanted && !state.listing.some((e) => e.name === wanted)) {
    showError(`Cannot open ${wanted}`, 'no such profile on this server');
    return;
  }
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
