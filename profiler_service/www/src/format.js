// Text helpers the viewer's panels share.

export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

// v as a share of total, with more digits for small shares.
export function pct(v, total) {
  if (!total || !v) return '0%';
  const x = (100 * v) / total;
  return (x >= 10 ? x.toFixed(1) : x >= 0.1 ? x.toFixed(2) : x.toFixed(3)) + '%';
}

// The last two components of a path ("file:line" kept).
export function shortFile(where) {
  const parts = where.split('/');
  return parts.length > 2 ? parts.slice(-2).join('/') : where;
}
