// The timeline: process CPU %, memory % and samples per second over the
// period, the reactor's stalls as red marks (width = duration) in a lane
// below, the builds as bars in a lane below that, and a brush that selects
// the time range every other view shows. A merged profile spans several
// files: the stretches no file covers are drawn as hatched gaps (the lines
// break there), and compare mode shades the A and B ranges.

import { select } from 'd3-selection';
import { scaleLinear, scaleUtc } from 'd3-scale';
import { line } from 'd3-shape';
import { axisBottom, axisLeft, axisRight } from 'd3-axis';
import { brushX } from 'd3-brush';
import { utcFormat } from 'd3-time-format';

const PLOT_H = 130, LANE_H = 12, MARGIN = { left: 40, right: 44, top: 6 };

export const RESULT_COLORS = ['#2da44e', '#d4a72c', '#cf222e', '#8c959f', '#8250df', '#bf8700', '#6e7781'];
export const RESULT_NAMES = ['success', 'warnings', 'failure', 'skipped', 'exception', 'retry', 'cancelled'];
export const buildColor = (b) => (b.results === null ? '#0969da' : RESULT_COLORS[b.results] || '#6e7781');

export function createTimeline(el, { onRange, onBuild, onStall = () => {} }) {
  let p = null, x = null, brush = null, brushG = null, rates = null, lanes = 1, activeBuild = null, options = {};
  let bandG = null, bandList = [], activeStall = null;

  // options: binMs (the width of a rate bin, default 1000), builds (default
  // the profile's), parts (a Uint8Array mask of the files to draw, or null).
  function draw(profile, sampleRates, drawOptions = {}) {
    p = profile;
    rates = sampleRates;
    options = drawOptions;
    const binMs = options.binMs || 1000;
    const builds = options.builds || p.builds;
    const partShown = options.parts && p.load.part ? (i) => options.parts[p.load.part[i]] === 1 : () => true;
    const width = Math.max(300, el.clientWidth);
    const plotW = width - MARGIN.left - MARGIN.right;
    const laneOf = assignLanes(builds, p.startMs);
    lanes = builds.length ? Math.max(...laneOf) + 1 : 0;
    const stalls = p.stalls || [];
    const stallH = stalls.length ? LANE_H + 2 : 0;
    const height = MARGIN.top + PLOT_H + stallH + (lanes ? 6 + lanes * (LANE_H + 2) : 0) + 24;
    select(el).selectAll('*').remove();
    const svg = select(el).append('svg').attr('class', 'timeline').attr('width', width).attr('height', height);
    const g = svg.append('g').attr('transform', `translate(${MARGIN.left},${MARGIN.top})`);

    x = scaleUtc().domain([new Date(p.startMs), new Date(p.endMs)]).range([0, plotW]);
    const xs = scaleLinear().domain([0, p.endMs - p.startMs]).range([0, plotW]);
    let maxPct = 100;
    for (const v of p.load.cpu) if (v > maxPct) maxPct = v; // NaN compares false
    for (const v of p.load.mem) if (v > maxPct) maxPct = v;
    const yPct = scaleLinear().domain([0, maxPct * 1.05]).nice().range([PLOT_H, 0]);
    let maxRate = 1;
    for (const v of rates) if (v > maxRate) maxRate = v;
    const yRate = scaleLinear().domain([0, maxRate * 1.1]).nice().range([PLOT_H, 0]);

    svg.append('defs').append('clipPath').attr('id', 'bbprof-plot-clip')
      .append('rect').attr('width', plotW).attr('height', PLOT_H + 1);
    const plot = g.append('g').attr('clip-path', 'url(#bbprof-plot-clip)');
    const hatch = svg.select('defs').append('pattern').attr('id', 'bbprof-gap-hatch').attr('patternUnits', 'userSpaceOnUse')
      .attr('width', 6).attr('height', 6).attr('patternTransform', 'rotate(45)');
    hatch.append('rect').attr('width', 6).attr('height', 6).attr('class', 'gap-bg');
    hatch.append('line').attr('x1', 0).attr('y1', 0).attr('x2', 0).attr('y2', 6).attr('class', 'gap-line');
    for (const [g0, g1] of p.gaps || []) {
      plot.append('rect').attr('class', 'gap').attr('fill', 'url(#bbprof-gap-hatch)')
        .attr('x', xs(g0 - p.startMs)).attr('width', Math.max(1, xs(g1 - p.startMs) - xs(g0 - p.startMs)))
        .attr('y', 0).attr('height', PLOT_H)
        .append('title').text(`no file: ${fmtTime(new Date(g0))} to ${fmtTime(new Date(g1))}`);
    }
    bandG = plot.append('g').attr('class', 'bands');
    const series = (ts, vs, y, shown = () => true) => line().defined((i) => !Number.isNaN(vs[i]) && shown(i))
      .x((i) => xs(ts[i])).y((i) => y(vs[i]))(Array.from(ts, (_, i) => i));
    const duration = p.endMs - p.startMs;
    const rateT = Float64Array.from(rates, (_, i) => Math.min(i * binMs + binMs / 2, duration));
    if (rates.length) plot.append('path').attr('class', 'line rate').attr('d', series(rateT, rates, yRate));
    if (p.load.t.length) {
      plot.append('path').attr('class', 'line mem').attr('d', series(p.load.t, p.load.mem, yPct, partShown));
      plot.append('path').attr('class', 'line cpu').attr('d', series(p.load.t, p.load.cpu, yPct, partShown));
    }
    if (p.load.t.length < 3) { // too short for a line: dots
      for (const [cls, vs] of [['mem', p.load.mem], ['cpu', p.load.cpu]]) {
        p.load.t.forEach((t, i) => g.append('circle').attr('class', `dot ${cls}`).attr('r', 3).attr('cx', xs(t)).attr('cy', yPct(vs[i])));
      }
    }
    g.append('g').attr('class', 'axis').call(axisLeft(yPct).ticks(4).tickFormat((v) => v + '%'));
    g.append('g').attr('class', 'axis').attr('transform', `translate(${plotW},0)`).call(axisRight(yRate).ticks(4).tickFormat((v) => v + '/s'));

    const stallTop = PLOT_H + 4;
    const marks = g.append('g').selectAll('rect').data(stalls).enter().append('rect')
      .attr('class', 'stall')
      .attr('x', (s) => x(new Date(p.startMs + Math.max(s.startMs, 0))))
      .attr('y', stallTop)
      .attr('width', (s) => Math.max(3, x(new Date(p.startMs + Math.min(s.startMs + s.durationMs, p.endMs - p.startMs))) - x(new Date(p.startMs + Math.max(s.startMs, 0)))))
      .attr('height', LANE_H)
      .attr('data-start', (s) => s.startMs)
      .on('click', (event, s) => onStall(s));
    marks.append('title').text(stallTitle);

    const laneTop = PLOT_H + 6 + stallH;
    const bars = g.append('g').selectAll('rect').data(builds).enter().append('rect')
      .attr('class', 'build')
      .attr('x', (b) => x(new Date(Math.max(b.startMs, p.startMs))))
      .attr('y', (b, i) => laneTop + laneOf[i] * (LANE_H + 2))
      .attr('width', (b) => Math.max(3, x(new Date(Math.min(b.completeMs ?? p.endMs, p.endMs))) - x(new Date(Math.max(b.startMs, p.startMs)))))
      .attr('height', LANE_H)
      .attr('fill', buildColor)
      .attr('data-buildid', (b) => b.buildid)
      .on('click', (event, b) => onBuild(b));
    bars.append('title').text(buildTitle);

    const axisY = laneTop + (lanes ? lanes * (LANE_H + 2) : 0);
    g.append('g').attr('class', 'axis').attr('transform', `translate(0,${lanes || stallH ? axisY : PLOT_H})`)
      .call(axisBottom(x).ticks(Math.max(2, Math.floor(plotW / 110))).tickFormat(tickFormat(p.endMs - p.startMs)));

    brush = brushX().extent([[0, 0], [plotW, PLOT_H]]).on('end', (event) => {
      if (!event.sourceEvent) return; // moved by code
      if (!event.selection) onRange(null);
      else onRange([xs.invert(event.selection[0]), xs.invert(event.selection[1])]);
    });
    brushG = g.append('g').attr('class', 'brush').call(brush);
    highlight(activeBuild);
    bands(bandList);
    highlightStall(activeStall);
    markBuilds(markedBuilds);
  }

  // Shaded ranges [{t0, t1 (ms since start), cls, label}] (compare mode's A and B).
  function bands(list) {
    bandList = list || [];
    if (!bandG) return;
    const xs = scaleLinear().domain([0, p.endMs - p.startMs]).range(x.range());
    bandG.selectAll('*').remove();
    for (const b of bandList) {
      const x0 = xs(Math.max(0, b.t0)), x1 = xs(Math.min(b.t1, p.endMs - p.startMs));
      bandG.append('rect').attr('class', `band ${b.cls}`).attr('x', x0).attr('width', Math.max(2, x1 - x0))
        .attr('y', 0).attr('height', PLOT_H);
      bandG.append('text').attr('class', `band-label ${b.cls}`).attr('x', x0 + 3).attr('y', 12).text(b.label);
    }
  }

  // Shows a range (ms since start) on the brush without firing onRange.
  function show(range) {
    if (!brush) return;
    if (!range || (range[0] <= 0 && range[1] >= p.endMs - p.startMs)) brushG.call(brush.move, null);
    else brushG.call(brush.move, [x(new Date(p.startMs + range[0])), x(new Date(p.startMs + range[1]))]);
  }

  function highlight(build) {
    activeBuild = build;
    select(el).selectAll('rect.build').classed('active', (b) => build !== null && b.buildid === build.buildid);
  }

  function highlightStall(stall) {
    activeStall = stall;
    select(el).selectAll('rect.stall').classed('active', (s) => stall !== null && s === stall);
  }

  let markedBuilds = new Set();
  function markBuilds(buildids) {
    markedBuilds = buildids;
    select(el).selectAll('rect.build').classed('during-stall', (b) => markedBuilds.has(String(b.buildid)));
  }

  return { draw, show, highlight, highlightStall, markBuilds, bands, redraw: () => p && draw(p, rates, options) };
}

function tickFormat(durationMs) {
  if (durationMs < 20000) return utcFormat('%H:%M:%S.%L');
  if (durationMs > 36 * 3600 * 1000) return utcFormat('%m-%d %H:%M');
  return utcFormat('%H:%M:%S');
}

function assignLanes(builds, startMs) {
  const laneEnd = [];
  return builds.map((b) => {
    const s = b.startMs ?? startMs, e = b.completeMs ?? Infinity;
    let lane = laneEnd.findIndex((end) => end <= s);
    if (lane < 0) { lane = laneEnd.length; laneEnd.push(0); }
    laneEnd[lane] = e;
    return lane;
  });
}

const fmtTime = utcFormat('%Y-%m-%d %H:%M:%S UTC');
export function stallTitle(s) {
  return `reactor stall: ${(s.durationMs / 1000).toFixed(2)} s, ${s.t.length} samples — click to see what blocked it`;
}

export function buildTitle(b) {
  const result = b.results === null ? 'running' : RESULT_NAMES[b.results] || `result ${b.results}`;
  const span = b.completeMs ? `${fmtTime(new Date(b.startMs))}, ${((b.completeMs - b.startMs) / 1000).toFixed(1)} s` : `started ${fmtTime(new Date(b.startMs))}`;
  return `${b.builder} #${b.number}: ${result} (${span})${b.stateString ? ' ' + b.stateString : ''}`;
}
