// The flame graph: d3-flame-graph (click to zoom, search highlight,
// tooltips), with frames narrower than MIN_FRAME_PX not drawn so a big
// profile stays fast. In diff mode frames are coloured by their `diff`
// (share of B minus share of A, in points): red grew, blue shrank.

import { select } from 'd3-selection';
import { timerFlush } from 'd3-timer';
import flamegraph, { tooltip as flameTooltip } from 'd3-flame-graph';

const MIN_FRAME_PX = 2;
const FULL_COLOUR_POINTS = 5; // a frame that moved this many points gets the full colour

// grey (no change) to red (grew) or blue (shrank).
export function diffColor(points) {
  const k = Math.min(1, Math.abs(points) / FULL_COLOUR_POINTS);
  const [r, g, b] = points >= 0 ? [215, 48, 39] : [44, 123, 182];
  const mix = (c, grey) => Math.round(grey + (c - grey) * k);
  return `rgb(${mix(r, 225)},${mix(g, 225)},${mix(b, 225)})`;
}

export function createFlame(el, { describe, label, onClick, details }) {
  let chart = null, total = 0, searchTerm = '', inverted = false, diffMode = false;

  const tip = flameTooltip.defaultFlamegraphTooltip().html((d) => describe(d.data, d.value, total));

  function make(width) {
    select(el).selectAll('*').remove();
    chart = flamegraph()
      .width(width)
      .cellHeight(18)
      .minFrameSize(MIN_FRAME_PX)
      .transitionDuration(0)
      .resetHeightOnZoom(true)
      .minHeight(120)
      .sort(false)
      .inverted(inverted)
      .tooltip(tip)
      .setDetailsElement(details)
      .setLabelHandler((d) => label(d.data, total))
      .setColorMapper((d, original) => (diffMode && d.data.diff !== undefined ? diffColor(d.data.diff) : original))
      .setSearchHandler((results, sum) => {
        details.textContent = results.length
          ? `search: ${results.length} frames match, ${(100 * sum / (total || 1)).toFixed(2)}% of the selection`
          : 'search: no match';
      })
      .setSearchMatch((d, term) => {
        if (!term) return false;
        const t = term.toLowerCase();
        return (d.data.name || '').toLowerCase().includes(t) || (d.data.file || '').toLowerCase().includes(t);
      })
      .onClick((d) => {
        finish();
        onClick(d.data);
      });
  }

  // d3-flame-graph animates new frames' widths (250 ms) and sets labels in
  // transitions: end them now, so the graph is complete and exact when a call
  // returns (and a re-render never shows half-grown frames).
  function finish() {
    timerFlush();
    const root = select(el).datum();
    if (!chart || !root || root.x1 === undefined) return;
    const kx = chart.width() / (root.x1 - root.x0);
    select(el).selectAll('g.frame').each(function (d) {
      const g = select(this);
      g.interrupt();
      g.select('rect').interrupt().attr('width', (d.x1 - d.x0) * kx);
      g.select('div').interrupt().text(d.data.name);
    });
  }

  function update(tree) {
    total = tree.value;
    const width = Math.max(300, el.clientWidth);
    if (!chart || chart.width() !== width) {
      make(width);
      select(el).datum(tree).call(chart);
    } else {
      chart.update(tree);
    }
    if (searchTerm) chart.search(searchTerm);
    finish();
  }

  return {
    update,
    setDiff(value) { diffMode = value; el.classList.toggle('diff', value); },
    search(term) {
      searchTerm = term;
      if (!chart) return;
      if (term) chart.search(term); else chart.clear();
      finish();
    },
    setInverted(value, tree) {
      inverted = value;
      chart = null; // rebuilt by the next update
      if (tree) update(tree);
    },
    resetZoom() {
      if (chart) chart.resetZoom();
      finish();
    },
  };
}
