/**
 * Order statistics shared by the coordinator (the example-count cap), partition summaries and
 * the benchmarks, so each reports the same median.
 */

/**
 * The median of a non-empty list: the middle value, or the mean of the middle two for an even
 * count. Does not modify `values`. Throws a RangeError on an empty list (there is no median to
 * report; callers with a natural empty-case value check first).
 */
export function median(values: ArrayLike<number>): number {
  if (values.length === 0) throw new RangeError('median of an empty list');
  const sorted = Float64Array.from(values).sort();
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
