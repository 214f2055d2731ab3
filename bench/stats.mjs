// Summary statistics used by trials and the report.

/** Percentile of an ascending-sorted array, linear interpolation between closest ranks. */
export function percentile(sorted, p) {
  const n = sorted.length;
  if (n === 0) return null;
  const x = (n - 1) * p;
  const lo = Math.floor(x);
  const hi = Math.ceil(x);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (x - lo);
}

/** { median, min, max, n } of the finite numbers in `values` (null when there are none). */
export function summarize(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  return { median: percentile(v, 0.5), min: v[0], max: v[v.length - 1], n: v.length };
}
