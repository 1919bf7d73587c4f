/**
 * The number formats of the simulation report, one place for each, so every section prints the
 * same quantity the same way:
 *
 * - accuracies and shares as percent with one decimal (`91.3 %`), differences in points (`+4.2 pts`);
 * - counts with thousands separators (`60,000`);
 * - durations in seconds, minutes and hours (`4.20 s`, `2 min 05 s`);
 * - bytes in decimal SI units, 1 kB = 1000 B, 1 MB = 10⁶ B (traffic and memory alike).
 */

/** A no-break space between a number and its unit, so `18.4 %` never wraps between the two. */
export const NBSP = '\u00a0';

/** Non-null and finite. */
export function isNumber(value: number | null | undefined): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/** A fraction as percent: `0.9134` → `91.3 %`; `—` for a missing value. */
export function formatPercent(value: number | null | undefined, decimals = 1): string {
  return isNumber(value) ? `${(value * 100).toFixed(decimals)}${NBSP}%` : '—';
}

/** A difference of two fractions in percentage points, signed: `+4.2 pts`, `−0.8 pts`. */
export function formatPoints(value: number | null | undefined): string {
  if (!isNumber(value)) return '—';
  const points = (value * 100).toFixed(1);
  // −0.0 reads as a loss: a difference that rounds to zero is shown unsigned.
  if (Number(points) === 0) return `0.0${NBSP}pts`;
  return value > 0 ? `+${points}${NBSP}pts` : `−${points.slice(1)}${NBSP}pts`;
}

/** A plain number with at most `decimals` decimals: `0.2346`. */
export function formatNumber(value: number | null | undefined, decimals = 4): string {
  return isNumber(value) ? String(Number(value.toFixed(decimals))) : '—';
}

const COUNT = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** A count with thousands separators: `60000` → `60,000`. */
export function formatCount(value: number | null | undefined): string {
  return isNumber(value) ? COUNT.format(value) : '—';
}

/** Bytes for people, in decimal units (1 kB = 1000 B), the convention for network traffic. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return '—';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${bytes < 0 ? '-' : ''}${value.toFixed(digits)} ${units[unit]!}`;
}

/** Seconds for people: `4.20 s`, `2 min 05 s`, `1 h 02 min`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '—';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h > 0 ? `${h} h ${String(m).padStart(2, '0')} min` : `${m} min ${String(s).padStart(2, '0')} s`;
}
