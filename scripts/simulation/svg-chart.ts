/**
 * Dependency-free SVG charts for the simulation report: a line chart (several series, legend,
 * dashed reference lines with optional shaded bands) and a stacked bar chart.
 *
 * Output is a standalone `<svg>` string with a viewBox, so it scales inside HTML and needs no
 * script, font or stylesheet from elsewhere. Every piece of caller text (titles, labels, series
 * names, colours) is XML-escaped, because series names come from configs and client ids.
 * Hovering a marker or bar shows its value through the native SVG `<title>` tooltip.
 *
 * @example
 * ```ts
 * const svg = renderLineChart({
 *   title: 'Test accuracy',
 *   yRange: 'unit',
 *   series: [{ name: 'FedAvg', points: rounds.map((r) => ({ x: r.round, y: r.accuracy })) }],
 *   references: [{ label: 'centralized', y: 0.91 }],
 * });
 * ```
 */

/** One (x, y) sample. Points whose x or y is not finite are skipped (e.g. rounds not evaluated). */
export interface Point {
  x: number;
  y: number;
}

/** A line of the line chart. */
export interface LineSeries {
  /** Legend text. */
  name: string;
  points: readonly Point[];
  /**
   * Stroke colour (any CSS colour).
   * @default the next colour of the built-in palette
   */
  color?: string;
  /** @default false */
  dashed?: boolean;
}

/** A horizontal line across the plot, e.g. a baseline accuracy, drawn dashed with its label. */
export interface ReferenceLine {
  label: string;
  y: number;
  /** @default '#6b7280' (grey) */
  color?: string;
  /** Optional shaded band, e.g. mean ± std of local-only accuracy. */
  band?: { low: number; high: number };
}

/**
 * A marked point of the plot, e.g. the best round: a dotted vertical line at `x` across the plot,
 * a ring at (`x`, `y`) when `y` is given, and the label at the top of the line.
 */
export interface PointMarker {
  label: string;
  x: number;
  y?: number;
  /** @default '#6b7280' (grey) */
  color?: string;
}

/** `'auto'` fits the data (and reference lines); `'unit'` is [0, 1]; or a fixed [min, max]. */
export type YRange = 'auto' | 'unit' | readonly [number, number];

/** Options shared by both chart kinds. */
export interface ChartFrameOptions {
  title: string;
  xLabel?: string;
  yLabel?: string;
  /** @default 720 */
  width?: number;
  /** @default 300 */
  height?: number;
  /**
   * Formats y tick labels and tooltips.
   * @default a number with as many decimals as the tick step needs
   */
  formatY?: (value: number) => string;
  /**
   * Add the SVG namespace so the string is a valid standalone `.svg` file. Inline SVG in HTML
   * does not need it, and leaving it out keeps reports free of any `http:` string.
   * @default false
   */
  standalone?: boolean;
}

/** Options of {@link renderLineChart}. */
export interface LineChartOptions extends ChartFrameOptions {
  series: readonly LineSeries[];
  references?: readonly ReferenceLine[];
  /** @default 'auto' */
  yRange?: YRange;
  /**
   * Draw x ticks at integers only (rounds).
   * @default true
   */
  integerX?: boolean;
  /**
   * With `yRange: 'auto'`, extend the range to include 0 (counts, bytes, loss), so differences
   * are not exaggerated by a truncated axis.
   * @default false
   */
  includeZero?: boolean;
  /**
   * Draw a dot on every point when a series has at most this many points.
   * @default 40
   */
  maxMarkers?: number;
  /** Marked points (best round, target reached), drawn over the series. @default none */
  markers?: readonly PointMarker[];
}

/** One layer of a stacked bar chart, e.g. "participants" then "dropped". */
export interface BarStack {
  name: string;
  /** One value per category; missing or non-finite values count as 0. */
  values: readonly number[];
  /** @default the next colour of the built-in palette */
  color?: string;
}

/** Options of {@link renderBarChart}. */
export interface BarChartOptions extends ChartFrameOptions {
  /** The x categories in order (e.g. round numbers); one bar each. */
  categories: readonly (number | string)[];
  /** Layers stacked bottom to top. */
  stacks: readonly BarStack[];
}

/**
 * Colour-blind-friendly palette (Okabe & Ito 2008, "Color Universal Design"), darkened slightly
 * where the original is too light to read as a thin line on white.
 */
export const CHART_PALETTE: readonly string[] = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#7A5C00', '#000000'];

const REFERENCE_GREY = '#6b7280';
const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif';

/** Escapes text for XML/HTML content and attribute values (`& < > " '`). */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => {
    switch (ch) {
      case '&':
        return '&amp;';
      case '<':
        return '&lt;';
      case '>':
        return '&gt;';
      case '"':
        return '&quot;';
      default:
        return '&#39;';
    }
  });
}

/**
 * "Nice" tick values covering [min, max] with steps of 1, 2 or 5 × 10^k (Heckbert, "Nice
 * Numbers for Graph Labels", Graphics Gems 1990).
 *
 * @param count - roughly how many ticks to aim for. @default 5
 */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (max < min) [min, max] = [max, min];
  if (max === min) return [min];
  const step = niceStep((max - min) / Math.max(1, count));
  const first = Math.ceil(min / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let v = first; v <= max + step * 1e-9; v += step) ticks.push(roundToStep(v, step));
  return ticks;
}

function niceStep(rough: number): number {
  const exponent = Math.floor(Math.log10(rough));
  const fraction = rough / 10 ** exponent;
  const nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10;
  return nice * 10 ** exponent;
}

/** Removes float noise such as 0.30000000000000004 by rounding to the step's decimals. */
function roundToStep(value: number, step: number): number {
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  return Number(value.toFixed(Math.min(12, decimals)));
}

function defaultFormatter(ticks: readonly number[]): (value: number) => string {
  const step = ticks.length > 1 ? Math.abs(ticks[1]! - ticks[0]!) : 1;
  const decimals = Math.min(6, Math.max(0, -Math.floor(Math.log10(step || 1))));
  return (value) => value.toFixed(decimals);
}

/** Four significant digits, without trailing zeros: 0.9123, 1523, 0.0042. */
function preciseFormatter(value: number): string {
  return String(Number(value.toPrecision(4)));
}

/** Trims coordinates to two decimals: smaller SVGs, no visible difference. */
function px(value: number): string {
  return String(Math.round(value * 100) / 100);
}

interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

interface LegendItem {
  name: string;
  color: string;
  kind: 'line' | 'dashed' | 'box';
}

/** Lays the legend out in rows under the title; returns the SVG and the height it uses. */
function renderLegend(items: readonly LegendItem[], width: number, top: number): { svg: string; height: number } {
  if (items.length === 0) return { svg: '', height: 0 };
  const rowHeight = 18;
  const parts: string[] = [];
  let x = 16;
  let row = 0;
  for (const item of items) {
    // Width estimate: about 6.6 px per character at 12 px, plus the swatch.
    const itemWidth = 28 + item.name.length * 6.6 + 16;
    if (x + itemWidth > width - 8 && x > 16) {
      row++;
      x = 16;
    }
    const y = top + row * rowHeight;
    const color = escapeXml(item.color);
    if (item.kind === 'box') {
      parts.push(`<rect x="${px(x)}" y="${px(y - 9)}" width="18" height="10" rx="2" fill="${color}"/>`);
    } else {
      const dash = item.kind === 'dashed' ? ' stroke-dasharray="5 4"' : '';
      parts.push(`<line x1="${px(x)}" y1="${px(y - 4)}" x2="${px(x + 20)}" y2="${px(y - 4)}" stroke="${color}" stroke-width="2.5"${dash}/>`);
    }
    parts.push(`<text x="${px(x + 26)}" y="${px(y)}" font-size="12" fill="#374151">${escapeXml(item.name)}</text>`);
    x += itemWidth;
  }
  return { svg: `<g class="legend">${parts.join('')}</g>`, height: (row + 1) * rowHeight };
}

function openSvg(width: number, height: number, options: ChartFrameOptions): string {
  const title = options.title;
  const namespace = options.standalone ? ' xmlns="http://www.w3.org/2000/svg"' : '';
  return (
    `<svg${namespace} viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" ` +
    `role="img" aria-label="${escapeXml(title)}" font-family='${FONT}' style="max-width:100%;height:auto">` +
    `<rect width="${width}" height="${height}" fill="#ffffff"/>` +
    `<text x="16" y="22" font-size="15" font-weight="600" fill="#111827">${escapeXml(title)}</text>`
  );
}

function renderAxes(
  frame: Frame,
  yTicks: readonly number[],
  yOf: (v: number) => number,
  formatY: (v: number) => string,
  xTicks: readonly { position: number; label: string }[],
  options: ChartFrameOptions,
): string {
  const parts: string[] = [];
  const { left, right, top, bottom, height } = frame;
  for (const tick of yTicks) {
    const y = px(yOf(tick));
    parts.push(`<line x1="${left}" y1="${y}" x2="${right}" y2="${y}" stroke="#e5e7eb" stroke-width="1"/>`);
    parts.push(`<text x="${left - 6}" y="${y}" dy="0.32em" text-anchor="end" font-size="11" fill="#4b5563">${escapeXml(formatY(tick))}</text>`);
  }
  parts.push(`<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#9ca3af" stroke-width="1"/>`);
  parts.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#9ca3af" stroke-width="1"/>`);
  for (const tick of xTicks) {
    const x = px(tick.position);
    parts.push(`<line x1="${x}" y1="${bottom}" x2="${x}" y2="${bottom + 4}" stroke="#9ca3af" stroke-width="1"/>`);
    parts.push(`<text x="${x}" y="${bottom + 16}" text-anchor="middle" font-size="11" fill="#4b5563">${escapeXml(tick.label)}</text>`);
  }
  if (options.xLabel) {
    parts.push(`<text x="${px((left + right) / 2)}" y="${height - 6}" text-anchor="middle" font-size="12" fill="#374151">${escapeXml(options.xLabel)}</text>`);
  }
  if (options.yLabel) {
    const cy = px((top + bottom) / 2);
    parts.push(`<text transform="translate(14 ${cy}) rotate(-90)" text-anchor="middle" font-size="12" fill="#374151">${escapeXml(options.yLabel)}</text>`);
  }
  return `<g class="axes">${parts.join('')}</g>`;
}

/** The plot area: leaves room for the title, legend, axis titles and the widest y tick label. */
function makeFrame(options: ChartFrameOptions, legendHeight: number, yTickLabels: readonly string[]): Frame {
  const width = options.width ?? 720;
  const height = options.height ?? 300;
  const top = 34 + legendHeight + 10;
  // About 6.2 px per character at 11 px.
  const widestLabel = Math.max(0, ...yTickLabels.map((label) => label.length)) * 6.2;
  const left = Math.round(Math.max(36, widestLabel + 14) + (options.yLabel ? 22 : 0));
  return { width, height, left, right: width - 20, top, bottom: height - (options.xLabel ? 40 : 26) };
}

function noData(frame: Frame): string {
  return `<text x="${px((frame.left + frame.right) / 2)}" y="${px((frame.top + frame.bottom) / 2)}" text-anchor="middle" font-size="13" fill="#9ca3af">no data</text>`;
}

/**
 * Renders a line chart as an SVG string: one `<polyline>` per series that has at least one
 * finite point, reference lines as dashed `<line>`s labelled at their right end.
 */
export function renderLineChart(options: LineChartOptions): string {
  const references = options.references ?? [];
  const maxMarkers = options.maxMarkers ?? 40;
  const series = options.series.map((s, i) => ({
    name: s.name,
    color: s.color ?? CHART_PALETTE[i % CHART_PALETTE.length]!,
    dashed: s.dashed ?? false,
    points: s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)),
  }));

  const legendItems: LegendItem[] = [
    ...series.map((s): LegendItem => ({ name: s.name, color: s.color, kind: s.dashed ? 'dashed' : 'line' })),
    ...references.map((r): LegendItem => ({ name: r.label, color: r.color ?? REFERENCE_GREY, kind: 'dashed' })),
  ];
  const width = options.width ?? 720;
  const legend = renderLegend(legendItems, width, 44);

  // Domains.
  let xMin = Infinity;
  let xMax = -Infinity;
  let yMin = Infinity;
  let yMax = -Infinity;
  for (const s of series) {
    for (const p of s.points) {
      xMin = Math.min(xMin, p.x);
      xMax = Math.max(xMax, p.x);
      yMin = Math.min(yMin, p.y);
      yMax = Math.max(yMax, p.y);
    }
  }
  const hasData = Number.isFinite(xMin);
  for (const r of references) {
    for (const v of [r.y, r.band?.low, r.band?.high]) {
      if (v !== undefined && Number.isFinite(v)) {
        yMin = Math.min(yMin, v);
        yMax = Math.max(yMax, v);
      }
    }
  }
  if (!hasData) {
    xMin = 0;
    xMax = 1;
  } else if (xMin === xMax) {
    xMin -= 1;
    xMax += 1;
  }
  const range = options.yRange ?? 'auto';
  let yLow: number;
  let yHigh: number;
  if (range === 'unit') {
    [yLow, yHigh] = [0, 1];
  } else if (range !== 'auto') {
    [yLow, yHigh] = [range[0], range[1]];
  } else if (!Number.isFinite(yMin)) {
    [yLow, yHigh] = [0, 1];
  } else {
    if (options.includeZero) {
      yMin = Math.min(0, yMin);
      yMax = Math.max(0, yMax);
    }
    const spread = yMax - yMin || Math.abs(yMax) * 0.1 || 1;
    // 5 % headroom, but never pad below an included zero.
    yLow = options.includeZero && yMin === 0 ? 0 : yMin - spread * 0.05;
    yHigh = options.includeZero && yMax === 0 ? 0 : yMax + spread * 0.05;
    // Snap the auto range outward to ticks so the top and bottom gridlines frame the data.
    const step = niceStep((yHigh - yLow) / 5);
    yLow = Math.floor(yLow / step) * step;
    yHigh = Math.ceil(yHigh / step) * step;
  }
  const yTicks = niceTicks(yLow, yHigh, 5);
  const formatY = options.formatY ?? defaultFormatter(yTicks);
  // Tick labels may round to the tick step; values people read off (baselines, tooltips) may not.
  const formatValue = options.formatY ?? preciseFormatter;
  const frame = makeFrame(options, legend.height, yTicks.map(formatY));
  const xOf = (x: number): number => frame.left + ((x - xMin) / (xMax - xMin)) * (frame.right - frame.left);
  const yOf = (y: number): number => frame.bottom - ((y - yLow) / (yHigh - yLow)) * (frame.bottom - frame.top);
  const clampY = (y: number): number => Math.min(frame.bottom, Math.max(frame.top, yOf(y)));

  let xTickValues = niceTicks(xMin, xMax, Math.max(2, Math.floor((frame.right - frame.left) / 70)));
  if (options.integerX ?? true) xTickValues = xTickValues.filter((v) => Number.isInteger(v));
  const xTicks = hasData ? xTickValues.map((v) => ({ position: xOf(v), label: String(v) })) : [];

  const parts: string[] = [openSvg(frame.width, frame.height, options), legend.svg];
  parts.push(renderAxes(frame, yTicks, yOf, formatY, xTicks, options));

  // Bands under everything, then reference lines, then the series on top.
  for (const r of references) {
    if (!r.band || !Number.isFinite(r.band.low) || !Number.isFinite(r.band.high)) continue;
    const yTop = clampY(Math.max(r.band.low, r.band.high));
    const yBottom = clampY(Math.min(r.band.low, r.band.high));
    parts.push(
      `<rect x="${frame.left}" y="${px(yTop)}" width="${frame.right - frame.left}" height="${px(yBottom - yTop)}" fill="${escapeXml(r.color ?? REFERENCE_GREY)}" fill-opacity="0.12"/>`,
    );
  }
  const labelled = references
    .filter((r) => Number.isFinite(r.y))
    .map((r) => ({ r, y: clampY(r.y) }))
    .sort((a, b) => a.y - b.y);
  // Keep reference labels at least 13 px apart so close baselines stay readable.
  let lastLabelY = -Infinity;
  for (const { r, y } of labelled) {
    const color = escapeXml(r.color ?? REFERENCE_GREY);
    parts.push(`<line x1="${frame.left}" y1="${px(y)}" x2="${frame.right}" y2="${px(y)}" stroke="${color}" stroke-width="1.5" stroke-dasharray="6 4"/>`);
    const labelY = Math.max(y - 4, lastLabelY + 13);
    lastLabelY = labelY;
    parts.push(
      `<text x="${frame.right - 4}" y="${px(labelY)}" text-anchor="end" font-size="11" fill="${color}" stroke="#ffffff" stroke-width="3" paint-order="stroke">${escapeXml(`${r.label} ${formatValue(r.y)}`)}</text>`,
    );
  }

  for (const s of series) {
    if (s.points.length === 0) continue;
    const color = escapeXml(s.color);
    const coords = s.points.map((p) => `${px(xOf(p.x))},${px(clampY(p.y))}`).join(' ');
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    parts.push(
      `<polyline points="${coords}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"${dash}><title>${escapeXml(s.name)}</title></polyline>`,
    );
    if (s.points.length <= maxMarkers) {
      for (const p of s.points) {
        parts.push(
          `<circle cx="${px(xOf(p.x))}" cy="${px(clampY(p.y))}" r="2.8" fill="${color}"><title>${escapeXml(`${s.name} — x=${p.x}: ${formatValue(p.y)}`)}</title></circle>`,
        );
      }
    }
  }
  parts.push(renderMarkers(options.markers ?? [], frame, xOf, clampY, xMin, xMax));
  if (!hasData) parts.push(noData(frame));
  parts.push('</svg>');
  return parts.join('');
}

/**
 * Point markers: dotted vertical lines with their labels stacked at the bottom of the plot, clear
 * of the reference lines' labels at the top right (and two markers at the same round stay
 * readable), labels turned to the left near the right edge.
 */
function renderMarkers(markers: readonly PointMarker[], frame: Frame, xOf: (x: number) => number, yOf: (y: number) => number, xMin: number, xMax: number): string {
  const parts: string[] = [];
  markers
    .filter((m) => Number.isFinite(m.x) && m.x >= xMin && m.x <= xMax)
    .forEach((m, i) => {
      const color = escapeXml(m.color ?? REFERENCE_GREY);
      const x = px(xOf(m.x));
      parts.push(`<line x1="${x}" y1="${frame.top}" x2="${x}" y2="${frame.bottom}" stroke="${color}" stroke-width="1.5" stroke-dasharray="2 3"/>`);
      if (m.y !== undefined && Number.isFinite(m.y)) {
        parts.push(`<circle cx="${x}" cy="${px(yOf(m.y))}" r="6" fill="none" stroke="${color}" stroke-width="2"><title>${escapeXml(m.label)}</title></circle>`);
      }
      const rightHalf = xOf(m.x) > (frame.left + frame.right) / 2;
      parts.push(
        `<text x="${px(xOf(m.x) + (rightHalf ? -5 : 5))}" y="${px(frame.bottom - 8 - i * 14)}" text-anchor="${rightHalf ? 'end' : 'start'}" font-size="11" fill="${color}" stroke="#ffffff" stroke-width="3" paint-order="stroke">${escapeXml(m.label)}</text>`,
      );
    });
  return parts.length > 0 ? `<g class="markers">${parts.join('')}</g>` : '';
}

/**
 * Renders a stacked bar chart as an SVG string, one bar per category. With many categories the
 * gaps between bars disappear and only every k-th category is labelled, so 500 rounds still
 * read as an area.
 */
export function renderBarChart(options: BarChartOptions): string {
  const stacks = options.stacks.map((s, i) => ({
    name: s.name,
    color: s.color ?? CHART_PALETTE[i % CHART_PALETTE.length]!,
    values: options.categories.map((_, j) => {
      const v = s.values[j];
      return v !== undefined && Number.isFinite(v) ? Math.max(0, v) : 0;
    }),
  }));
  const width = options.width ?? 720;
  const legend = renderLegend(
    stacks.map((s): LegendItem => ({ name: s.name, color: s.color, kind: 'box' })),
    width,
    44,
  );
  const n = options.categories.length;
  let total = 0;
  for (let j = 0; j < n; j++) total = Math.max(total, stacks.reduce((sum, s) => sum + s.values[j]!, 0));
  const yHigh = total > 0 ? niceStep(total / 5) * Math.ceil(total / niceStep(total / 5)) : 1;
  const yTicks = niceTicks(0, yHigh, 5);
  const formatY = options.formatY ?? defaultFormatter(yTicks);
  const frame = makeFrame(options, legend.height, yTicks.map(formatY));
  const yOf = (y: number): number => frame.bottom - (y / yHigh) * (frame.bottom - frame.top);

  const band = n > 0 ? (frame.right - frame.left) / n : 0;
  const barWidth = band >= 4 ? band * 0.78 : band;
  const labelEvery = Math.max(1, Math.ceil(n / Math.max(1, Math.floor((frame.right - frame.left) / 44))));
  const xTicks: { position: number; label: string }[] = [];
  for (let j = 0; j < n; j += labelEvery) {
    xTicks.push({ position: frame.left + band * (j + 0.5), label: String(options.categories[j]) });
  }

  const parts: string[] = [openSvg(frame.width, frame.height, options), legend.svg];
  parts.push(renderAxes(frame, yTicks, yOf, formatY, xTicks, options));
  for (let j = 0; j < n; j++) {
    let base = 0;
    const x = frame.left + band * j + (band - barWidth) / 2;
    const tooltip = `${String(options.categories[j])}: ${stacks.map((s) => `${s.name} ${formatY(s.values[j]!)}`).join(', ')}`;
    for (const s of stacks) {
      const v = s.values[j]!;
      if (v <= 0) continue;
      const yTop = yOf(base + v);
      const yBottom = yOf(base);
      parts.push(
        `<rect x="${px(x)}" y="${px(yTop)}" width="${px(barWidth)}" height="${px(yBottom - yTop)}" fill="${escapeXml(s.color)}"><title>${escapeXml(tooltip)}</title></rect>`,
      );
      base += v;
    }
  }
  if (n === 0) parts.push(noData(frame));
  parts.push('</svg>');
  return parts.join('');
}
