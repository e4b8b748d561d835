// The flame graph: d3-flame-graph (click to zoom, search highlight,
// tooltips), with frames narrower than MIN_FRAME_PX not drawn so a big
// profile stays fast.

import { select } from 'd3-selection';
import { timerFlush } from 'd3-timer';
import flamegraph, { tooltip as flameTooltip } from 'd3-flame-graph';

const MIN_FRAME_PX = 2;

export function createFlame(el, { describe, onClick, details }) {
  let chart = null, total = 0, searchTerm = '';

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
      .tooltip(tip)
      .setDetailsElement(details)
      .setSearchMatch((d, term) => {
        if (!term) return false;
        const t = term.toLowerCase();
        return (d.data.name || '').toLowerCase().includes(t) || (d.data.file || '').toLowerCase().includes(t);
      })
      .onClick((d) => onClick(d.data));
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
    // d3-flame-graph sets widths and labels in (zero-length) transitions:
    // run them now so the graph is complete when update() returns.
    timerFlush();
  }

  return {
    update,
    search(term) {
      searchTerm = term;
      if (!chart) return;
      if (term) chart.search(term); else chart.clear();
    },
    resetZoom() { if (chart) chart.resetZoom(); },
  };
}
