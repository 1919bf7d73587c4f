/**
 * Renders a simulation run as one self-contained HTML page: inline CSS and inline SVG, no
 * scripts and no external resources, so the file can be mailed, archived as a CI artifact or
 * opened offline and always looks the same.
 *
 * The page answers, in order: did federated training work (headline numbers against the
 * baselines), how did it get there (accuracy and loss per round), what did the federation look
 * like (participation, traffic), what data did clients hold (partition sizes and label mix),
 * and exactly how was it run (config, seed, backend).
 *
 * @example
 * ```ts
 * import { writeFile } from 'node:fs/promises';
 * await writeFile('report.html', renderReportHtml(report));
 * ```
 */
import type { PartitionSummary } from '../../shared/math/index.ts';
import { formatBytes, formatCount, formatDuration, formatNumber, formatPercent, formatPoints, isNumber, NBSP } from './report-format.ts';
import type { LocalOnlyClient } from './baselines.ts';
import { renderClientSection, renderComparisonSection, renderConfusionSection } from './report-sections.ts';
import { compareModels, type ClientView, type FinalEvaluation, type ModelComparisonRow } from './report-tables.ts';
import { escapeXml, renderBarChart, renderLineChart, CHART_PALETTE, type PointMarker, type ReferenceLine, type LineSeries } from './svg-chart.ts';

export { formatBytes, formatDuration } from './report-format.ts';

/** What happened in one federated round. */
export interface RoundRecord {
  /** Round number, starting at 1. */
  round: number;
  /** Test accuracy in [0, 1] after the round; null when the round was not evaluated. */
  accuracy: number | null;
  /** Test loss after the round; null when the round was not evaluated. */
  loss: number | null;
  /** Clients whose update was aggregated. */
  participants: number;
  /** Clients selected but dropped (timeout, disconnect, rejected update). */
  dropped: number;
  /** Bytes clients sent to the server this round. */
  bytesUp: number;
  /** Bytes the server sent to clients this round. */
  bytesDown: number;
  /** Wall-clock duration of the round. */
  seconds: number;
  /** Cumulative ε after the round, with its δ, when the run is differentially private. */
  epsilon?: number;
  /** The accuracy and loss are those of the mean of this many rounds' global models (iterate averaging); absent: the round's own. */
  averagedRounds?: number;
  delta?: number;
}

/** Reference results the federated run is compared with. All optional. */
export interface SimulationBaselines {
  /**
   * One model trained on the pooled data (the usual upper bound). When the federation fine-tunes,
   * it trains the same schedule: `label` says so, `stages` and `stageEpochs` give the schedule.
   */
  centralized?: { accuracy: number; loss: number; label?: string; stages?: string[]; stageEpochs?: number[] };
  /** A fine-tuning run's second centralized baseline: the head alone on the frozen base's features. */
  centralizedFeatureExtraction?: { accuracy: number; loss: number; label?: string };
  /** Each client trains alone on its own data; accuracy statistics over clients (the lower bound). */
  localOnly?: { mean: number; std: number; min: number; max: number; clients?: number; perClient?: LocalOnlyClient[] };
  /**
   * The same federation without the pretrained base, to show what transfer buys: the strongest of
   * the from-scratch baselines run (by final accuracy).
   */
  scratch?: ScratchRun;
  /** The other from-scratch baselines of the run, weaker than `scratch`. */
  scratchOthers?: ScratchRun[];
}

/** One federation trained from scratch on features that owe nothing to pretraining. */
export interface ScratchRun {
  rounds: RoundRecord[];
  /** Which features, e.g. `tf-idf`, `pixels`. */
  features?: string;
  /** The features in words. */
  description?: string;
  /** Final test accuracy; null when never evaluated. */
  accuracy?: number | null;
}

/** The pretrained model trailing the strongest from-scratch baseline. */
export interface NegativeTransferNote {
  features: string;
  pretrainedAccuracy: number;
  scratchAccuracy: number;
  /** Points of accuracy (as a fraction) the pretrained model is behind. */
  gap: number;
  message: string;
}

/** Everything {@link renderReportHtml} shows. Plain data, so it round-trips through JSON. */
export interface SimulationReport {
  /** @default 'fedtl simulation report' */
  title?: string;
  /** ISO-8601 time the run started. */
  createdAt?: string;
  /** The resolved run configuration, shown as a table (nested values as JSON). */
  config: Record<string, unknown>;
  seed: number | string;
  /** Compute backend actually used, e.g. 'tensorflow', 'wasm', 'cpu'. */
  backend: string;
  partition: PartitionSummary;
  /** Class names for the partition heat strip. @default '0', '1', … */
  labelNames?: string[];
  rounds: RoundRecord[];
  baselines: SimulationBaselines;
  wallSeconds: number;
  /** Accuracy of the final global model; null if it was never evaluated. */
  finalAccuracy: number | null;
  /** Peak resident set size of the whole run (the simulation process and its client processes), in MiB. */
  peakRssMb: number;
  /** Set when the pretrained model trails the strongest from-scratch baseline. @default none */
  negativeTransfer?: NegativeTransferNote | null;
  /** Free-form remarks (warnings, dataset notes), shown as a list. */
  notes?: string[];
  /** Legend name of the federated series. @default 'federated (pretrained base)' */
  federatedLabel?: string;
  /** Test examples every accuracy is measured on; gives the comparison its Wilson intervals. @default unknown (no intervals) */
  testExamples?: number;
  /** Accuracy the run aims for, marked on the accuracy chart with the round that first reached it. @default none */
  targetAccuracy?: number | null;
  /** The final federated model's confusion matrix and per-class scores on the test set. @default not shown */
  evaluation?: FinalEvaluation | null;
  /** What federation did for each client, in partition order. @default not shown */
  clients?: ClientView[];
  /** Every model with its 95 % interval. @default computed from the rounds and baselines */
  comparison?: ModelComparisonRow[];
}

/** At most this many clients get a column in the label heat strip; the rest are summarised. */
const HEAT_STRIP_MAX_CLIENTS = 50;

/** Chart width in SVG units: the content width of a section, so charts are drawn 1:1 on desktop. */
const CHART_WIDTH = 960;

const COLOR_FEDERATED = CHART_PALETTE[0]!;
const COLOR_SCRATCH = CHART_PALETTE[1]!;
const COLOR_CENTRALIZED = '#009E73';
const COLOR_LOCAL = '#7A5C00';
const COLOR_DROPPED = '#D55E00';

const CSS = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f4f6; color: #111827;
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1040px; margin: 0 auto; padding: 28px 20px 48px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header .meta { color: #4b5563; }
header .meta span + span::before { content: "·"; margin: 0 8px; color: #9ca3af; }
section { background: #fff; border: 1px solid #e5e7eb; border-radius: 10px; padding: 18px 20px; margin-top: 18px; }
section h2 { margin: 0 0 12px; font-size: 17px; }
section p.hint { margin: -6px 0 12px; color: #6b7280; font-size: 13px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 12px; margin-top: 18px; }
.card { background: #fff; border: 1px solid #e5e7eb; border-radius: 10px; padding: 12px 14px; }
.card .label { color: #6b7280; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .sub { color: #6b7280; font-size: 12px; }
.card.primary { border-color: #0072B2; box-shadow: inset 4px 0 0 #0072B2; }
.warning { margin-top: 18px; padding: 12px 16px; border: 1px solid #D55E00; border-radius: 10px; background: #fff4ec; color: #7a2e00; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid #f0f1f3; vertical-align: top; }
th { color: #4b5563; font-weight: 600; background: #f9fafb; }
td.num, th.num { text-align: right; }
td code { font-size: 12px; word-break: break-all; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
@media (max-width: 760px) { .two { grid-template-columns: 1fr; } }
details summary { cursor: pointer; color: #0072B2; margin-top: 12px; }
.scroll { max-height: 420px; overflow: auto; margin-top: 8px; }
ul.notes { margin: 0; padding-left: 20px; }
footer { margin-top: 24px; color: #9ca3af; font-size: 12px; text-align: center; }
svg { display: block; }
tr.lead td { font-weight: 600; }
tr.total td { border-top: 2px solid #e5e7eb; font-weight: 600; }
td.up { color: #006d4f; }
.nowrap { white-space: nowrap; }
td.down { color: #b53f00; }
table.confusion { width: auto; }
table.confusion td, table.confusion th { padding: 3px 8px; border: 1px solid #f0f1f3; }
table.confusion td.diagonal { outline: 2px solid #111827; outline-offset: -2px; }
table.per-class { margin-top: 14px; }
.scroll.wide { max-height: none; }
figure { margin: 16px 0 0; }
figcaption { color: #4b5563; font-size: 13px; margin-bottom: 6px; }
`;

/** Renders the report as a complete HTML document (a string starting with `<!doctype html>`). */
export function renderReportHtml(report: SimulationReport): string {
  const title = report.title ?? 'fedtl simulation report';
  const body = [
    renderHeader(report, title),
    renderNegativeTransfer(report),
    renderCards(report),
    renderComparisonSection(comparisonOf(report)),
    renderAccuracySection(report),
    renderLossSection(report),
    renderConfusionSection(report.evaluation, report.labelNames),
    renderClientSection(report.clients, report.partition, report.labelNames),
    renderParticipationSection(report),
    renderTrafficSection(report),
    renderPartitionSection(report),
    renderConfigSection(report),
    renderRoundsSection(report),
    renderNotes(report),
    `<footer>Generated by fedtl · self-contained file, no network access needed</footer>`,
  ].join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeXml(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

/** The comparison table's rows: the report's own, or computed from its rounds and baselines. */
export function comparisonOf(report: SimulationReport): ModelComparisonRow[] {
  if (report.comparison) return report.comparison;
  const { centralized, centralizedFeatureExtraction, localOnly, scratch, scratchOthers } = report.baselines;
  const last = [...report.rounds].reverse().find((r) => isNumber(r.accuracy));
  return compareModels({
    federatedLabel: report.federatedLabel ?? 'federated (pretrained base)',
    finalAccuracy: report.finalAccuracy,
    finalLoss: last?.loss ?? null,
    testExamples: report.testExamples ?? null,
    ...(centralized ? { centralized } : {}),
    ...(centralizedFeatureExtraction ? { centralizedFeatureExtraction } : {}),
    ...(localOnly ? { localOnly } : {}),
    scratch: [scratch, ...(scratchOthers ?? [])]
      .filter((run): run is ScratchRun => run !== undefined)
      .map((run) => {
        const final = [...run.rounds].reverse().find((r) => isNumber(r.accuracy));
        return { ...(run.features ? { features: run.features } : {}), accuracy: final?.accuracy ?? null, loss: final?.loss ?? null };
      }),
  });
}

// ---------------------------------------------------------------------------------------------
// Formatting

function formatConfigValue(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value === undefined) return 'undefined';
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return '[function]';
  try {
    const text = JSON.stringify(value);
    return text.length > 300 ? `${text.slice(0, 297)}…` : text;
  } catch {
    // Cyclic or otherwise unserialisable: still show something rather than fail the report.
    return String(value);
  }
}

// ---------------------------------------------------------------------------------------------
// Sections

function renderHeader(report: SimulationReport, title: string): string {
  const meta = [
    report.createdAt ? `<span>${escapeXml(report.createdAt)}</span>` : '',
    `<span>backend <strong>${escapeXml(report.backend)}</strong></span>`,
    `<span>seed <strong>${escapeXml(String(report.seed))}</strong></span>`,
    `<span>${report.rounds.length} rounds</span>`,
    `<span>${formatCount(report.partition.numClients)} clients</span>`,
  ].filter(Boolean);
  return `<header><h1>${escapeXml(title)}</h1><div class="meta">${meta.join('')}</div></header>`;
}

function card(label: string, value: string, sub = '', primary = false): string {
  return `<div class="card${primary ? ' primary' : ''}"><div class="label">${escapeXml(label)}</div><div class="value">${escapeXml(value)}</div>${
    sub ? `<div class="sub">${escapeXml(sub)}</div>` : ''
  }</div>`;
}

function bestRound(rounds: readonly RoundRecord[]): RoundRecord | undefined {
  let best: RoundRecord | undefined;
  for (const r of rounds) if (isNumber(r.accuracy) && (!best || r.accuracy > (best.accuracy ?? -Infinity))) best = r;
  return best;
}

function capitalized(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function renderCards(report: SimulationReport): string {
  const { centralized, localOnly, scratch } = report.baselines;
  const best = bestRound(report.rounds);
  const bytesUp = report.rounds.reduce((sum, r) => sum + (isNumber(r.bytesUp) ? r.bytesUp : 0), 0);
  const bytesDown = report.rounds.reduce((sum, r) => sum + (isNumber(r.bytesDown) ? r.bytesDown : 0), 0);
  const cards = [
    card('Final accuracy', formatPercent(report.finalAccuracy), best ? `best ${formatPercent(best.accuracy)} at round ${best.round}` : 'federated', true),
  ];
  if (centralized) {
    const gap = isNumber(report.finalAccuracy)
      ? `federated is ${formatPoints(Math.abs(report.finalAccuracy - centralized.accuracy)).replace('+', '')} ${report.finalAccuracy >= centralized.accuracy ? 'above' : 'below'}`
      : 'pooled data, one model';
    cards.push(card(centralized.label ? capitalized(centralized.label) : 'Centralized', formatPercent(centralized.accuracy), gap));
  }
  const featureExtraction = report.baselines.centralizedFeatureExtraction;
  if (featureExtraction) cards.push(card(capitalized(featureExtraction.label ?? 'centralized feature extraction'), formatPercent(featureExtraction.accuracy), 'head alone on the frozen base'));
  if (localOnly) {
    cards.push(card('Local-only mean', formatPercent(localOnly.mean), `±${isNumber(localOnly.std) ? `${(localOnly.std * 100).toFixed(1)}${NBSP}pts` : '—'} std · range ${formatPercent(localOnly.min)} – ${formatPercent(localOnly.max)}`));
  }
  for (const run of [scratch, ...(report.baselines.scratchOthers ?? [])]) {
    if (!run) continue;
    const last = [...run.rounds].reverse().find((r) => isNumber(r.accuracy));
    const label = run.features ? `From scratch: ${run.features}` : 'From scratch';
    cards.push(card(label, formatPercent(last?.accuracy), run === scratch && report.baselines.scratchOthers?.length ? 'strongest from-scratch baseline' : 'same federation, no pretrained base'));
  }
  cards.push(card('Wall time', formatDuration(report.wallSeconds), `${report.rounds.length} rounds`));
  // peakRssMb is in MiB (2²⁰ B); shown in the report's one byte unit, decimal MB.
  cards.push(card('Peak memory', isNumber(report.peakRssMb) ? formatBytes(report.peakRssMb * 1024 * 1024) : '—', 'resident set size'));
  cards.push(card('Traffic', formatBytes(bytesUp + bytesDown), `↑ ${formatBytes(bytesUp)} · ↓ ${formatBytes(bytesDown)}`));
  return `<div class="cards">${cards.join('')}</div>`;
}

function scratchName(run: ScratchRun): string {
  return run.features ? `federated from scratch (${run.features})` : 'federated from scratch';
}

function renderNegativeTransfer(report: SimulationReport): string {
  const negative = report.negativeTransfer;
  if (!negative) return '';
  return `<div class="warning" role="alert"><strong>Negative transfer.</strong> ${escapeXml(negative.message)}</div>`;
}

function seriesOf(rounds: readonly RoundRecord[], pick: (r: RoundRecord) => number | null): LineSeries['points'] {
  return rounds.filter((r) => isNumber(pick(r))).map((r) => ({ x: r.round, y: pick(r)! }));
}

function renderAccuracySection(report: SimulationReport): string {
  const { centralized, localOnly, scratch } = report.baselines;
  const series: LineSeries[] = [{ name: report.federatedLabel ?? 'federated (pretrained base)', points: seriesOf(report.rounds, (r) => r.accuracy), color: COLOR_FEDERATED }];
  if (scratch) series.push({ name: scratchName(scratch), points: seriesOf(scratch.rounds, (r) => r.accuracy), color: COLOR_SCRATCH });
  const references: ReferenceLine[] = [];
  if (centralized && isNumber(centralized.accuracy)) references.push({ label: 'centralized', y: centralized.accuracy, color: COLOR_CENTRALIZED });
  if (localOnly && isNumber(localOnly.mean)) {
    references.push({
      label: 'local-only mean ± std',
      y: localOnly.mean,
      color: COLOR_LOCAL,
      ...(isNumber(localOnly.std) ? { band: { low: localOnly.mean - localOnly.std, high: localOnly.mean + localOnly.std } } : {}),
    });
  }
  const { markers, target, text } = accuracyMarkers(report);
  if (target) references.push(target);
  const svg = renderLineChart({ title: 'Test accuracy per round', xLabel: 'round', yLabel: 'accuracy', series, references, markers, formatY: (v) => formatPercent(v), width: CHART_WIDTH, height: 320 });
  return `<section><h2>Accuracy</h2><p class="hint">Global model on the held-out test set after each round; dashed lines are baselines (centralized training on pooled data, and each client training alone, with its ±1 std band)${
    target ? ' and the target' : ''
  }; dotted lines mark rounds. ${escapeXml(text)}</p>${svg}</section>`;
}

const COLOR_BEST = '#CC79A7';
const COLOR_TARGET = '#E69F00';

/** The first round whose accuracy reached `target`, if any. */
export function roundReaching(rounds: readonly RoundRecord[], target: number): RoundRecord | undefined {
  return rounds.find((r) => isNumber(r.accuracy) && r.accuracy >= target);
}

/**
 * The accuracy chart's marks: the best round always, and with a target accuracy a horizontal
 * target line plus the first round that reached it; `text` says the same in words.
 */
function accuracyMarkers(report: SimulationReport): { markers: PointMarker[]; target: ReferenceLine | null; text: string } {
  const markers: PointMarker[] = [];
  const words: string[] = [];
  const best = bestRound(report.rounds);
  if (best) {
    markers.push({ label: `best ${formatPercent(best.accuracy)}, round ${best.round}`, x: best.round, y: best.accuracy!, color: COLOR_BEST });
    words.push(`Best round: ${best.round} (${formatPercent(best.accuracy)}).`);
  }
  const goal = report.targetAccuracy;
  if (!isNumber(goal)) return { markers, target: null, text: words.join(' ') };
  const reached = roundReaching(report.rounds, goal);
  if (reached) {
    markers.push({ label: `target reached, round ${reached.round}`, x: reached.round, y: reached.accuracy!, color: COLOR_TARGET });
    words.push(`Target ${formatPercent(goal)} first reached at round ${reached.round}.`);
  } else {
    words.push(`Target ${formatPercent(goal)} not reached in ${formatCount(report.rounds.length)} rounds.`);
  }
  return { markers, target: { label: 'target', y: goal, color: COLOR_TARGET }, text: words.join(' ') };
}

function renderLossSection(report: SimulationReport): string {
  const { centralized, scratch } = report.baselines;
  const series: LineSeries[] = [{ name: report.federatedLabel ?? 'federated (pretrained base)', points: seriesOf(report.rounds, (r) => r.loss), color: COLOR_FEDERATED }];
  if (scratch) series.push({ name: scratchName(scratch), points: seriesOf(scratch.rounds, (r) => r.loss), color: COLOR_SCRATCH });
  const references: ReferenceLine[] =
    centralized && isNumber(centralized.loss) ? [{ label: 'centralized', y: centralized.loss, color: COLOR_CENTRALIZED }] : [];
  const svg = renderLineChart({
    title: 'Test loss per round',
    xLabel: 'round',
    yLabel: 'loss',
    series,
    references,
    includeZero: true,
    width: CHART_WIDTH,
    height: 280,
  });
  return `<section><h2>Loss</h2>${svg}</section>`;
}

function renderParticipationSection(report: SimulationReport): string {
  const rounds = report.rounds;
  const svg = renderBarChart({
    title: 'Clients per round',
    xLabel: 'round',
    yLabel: 'clients',
    categories: rounds.map((r) => r.round),
    stacks: [
      { name: 'aggregated', values: rounds.map((r) => r.participants), color: COLOR_FEDERATED },
      { name: 'dropped', values: rounds.map((r) => r.dropped), color: COLOR_DROPPED },
    ],
    formatY: (v) => String(Math.round(v * 100) / 100),
    width: CHART_WIDTH,
    height: 260,
  });
  const selected = rounds.reduce((sum, r) => sum + r.participants + r.dropped, 0);
  const dropped = rounds.reduce((sum, r) => sum + r.dropped, 0);
  const rate = selected > 0 ? `${formatPercent(dropped / selected)} of selected clients dropped overall.` : '';
  return `<section><h2>Participation</h2><p class="hint">${escapeXml(rate)}</p>${svg}</section>`;
}

function renderTrafficSection(report: SimulationReport): string {
  const rounds = report.rounds;
  const svg = renderLineChart({
    title: 'Bytes per round',
    xLabel: 'round',
    yLabel: 'bytes',
    series: [
      { name: 'sent by clients (up)', points: seriesOf(rounds, (r) => r.bytesUp), color: COLOR_FEDERATED },
      { name: 'sent by server (down)', points: seriesOf(rounds, (r) => r.bytesDown), color: CHART_PALETTE[4]! },
    ],
    formatY: formatBytes,
    includeZero: true,
    width: CHART_WIDTH,
    height: 260,
  });
  const totalUp = rounds.reduce((sum, r) => sum + (isNumber(r.bytesUp) ? r.bytesUp : 0), 0);
  const totalDown = rounds.reduce((sum, r) => sum + (isNumber(r.bytesDown) ? r.bytesDown : 0), 0);
  const perRound = rounds.length > 0 ? rounds.length : 1;
  const table = `<table><thead><tr><th></th><th class="num">total</th><th class="num">mean per round</th></tr></thead><tbody>
<tr><td>up (clients → server)</td><td class="num">${formatBytes(totalUp)}</td><td class="num">${formatBytes(totalUp / perRound)}</td></tr>
<tr><td>down (server → clients)</td><td class="num">${formatBytes(totalDown)}</td><td class="num">${formatBytes(totalDown / perRound)}</td></tr>
</tbody></table>`;
  return `<section><h2>Communication</h2><p class="hint">Bytes on the wire, in decimal units as everywhere in this report (1 kB = 1,000 B, 1 MB = 10⁶ B).</p>${svg}${table}</section>`;
}

/**
 * The partition settings as words with only the parameters the scheme uses, instead of raw JSON
 * (`{"scheme":"dirichlet","alpha":0.5,"beta":0.5,"shardsPerClient":2}` → `Dirichlet label skew, α = 0.5`).
 * Anything it does not recognise is shown as it is.
 */
export function describePartitionSettings(settings: unknown): string {
  if (typeof settings === 'string') return settings;
  if (typeof settings !== 'object' || settings === null) return formatConfigValue(settings);
  const s = settings as Record<string, unknown>;
  const num = (key: string) => (typeof s[key] === 'number' ? String(s[key]) : '?');
  switch (s['scheme']) {
    case 'iid':
      return 'IID (every client draws from the same label mix)';
    case 'dirichlet':
      return `Dirichlet label skew, α = ${num('alpha')} (smaller α: more skewed)`;
    case 'quantity':
      return `quantity (size) skew, Dirichlet β = ${num('beta')} over client sizes`;
    case 'shards':
      return `label shards, ${num('shardsPerClient')} per client (as in McMahan et al. 2017)`;
    default:
      return formatConfigValue(settings);
  }
}

function renderPartitionSection(report: SimulationReport): string {
  const p = report.partition;
  const scheme = report.config['partition'] ?? report.config['scheme'];
  const rows: [string, string][] = [
    ...(scheme !== undefined ? [['scheme', describePartitionSettings(scheme)] as [string, string]] : []),
    ['clients', formatCount(p.numClients)],
    ['examples', formatCount(p.numExamples)],
    ['classes', formatCount(p.numClasses)],
    ['examples per client', `min ${formatCount(p.sizeStats.min)} · median ${formatCount(p.sizeStats.median)} · mean ${formatCount(p.sizeStats.mean)} · max ${formatCount(p.sizeStats.max)}`],
    ['distinct labels per client (mean)', formatNumber(p.meanLabelsPerClient, 2)],
    ['label skew (mean TV distance)', `${formatNumber(p.skew, 3)}  (0 = every client mirrors the global mix)`],
  ];
  const table = `<table><tbody>${rows.map(([k, v]) => `<tr><th>${escapeXml(k)}</th><td>${escapeXml(v)}</td></tr>`).join('')}</tbody></table>`;
  return `<section><h2>Data partition</h2><div class="two"><div>${table}</div><div>${renderSizeChart(p)}</div></div>${renderHeatStrip(report)}</section>`;
}

/**
 * Client sizes, sorted descending, as bars: shows quantity skew at a glance. Each bar is labelled
 * with its client's number (the partition index used everywhere in the report), not its rank.
 */
function renderSizeChart(p: PartitionSummary): string {
  // Largest first; equal sizes in client order, so the chart is the same on every render.
  const byRank = p.sizes.map((size, client) => ({ size, client })).sort((a, b) => b.size - a.size || a.client - b.client);
  // One bar per client reads well up to a few hundred; beyond that, sample evenly by rank.
  const maxBars = 200;
  const step = Math.max(1, Math.ceil(byRank.length / maxBars));
  const picked = byRank.filter((_, i) => i % step === 0);
  return renderBarChart({
    title: 'Examples per client (largest first)',
    xLabel: step > 1 ? `client (every ${step}th by size)` : 'client',
    categories: picked.map((c) => c.client),
    stacks: [{ name: 'examples', values: picked.map((c) => c.size), color: '#56B4E9' }],
    formatY: (v) => formatCount(Math.round(v)),
    width: 480,
    height: 230,
  });
}

/** Shares ticked on the heat strip's colour scale (the ramp is a square root, so small shares get room). */
const HEAT_SCALE_TICKS = [0, 0.05, 0.25, 0.5, 1];

/** Width in SVG units of the heat strip's colour scale. */
const HEAT_SCALE_WIDTH = 260;

/** The caption of the heat strip, shown as HTML above it so it wraps instead of being clipped. */
export const HEAT_STRIP_CAPTION = 'Columns are clients (numbered from 0, as in the per-client table and the logs), rows are classes; a cell\'s colour is that class\'s share of the client\'s examples (scale below the chart). Grey bars on top: client size.';

/**
 * Per-client label mix as a heat strip: one column per client (the first 50), one row per
 * class, darker = larger share of that client's data; a bar above each column shows its size,
 * and a colour scale under the grid reads a shade back as a share.
 */
function renderHeatStrip(report: SimulationReport): string {
  const p = report.partition;
  const shown = Math.min(p.numClients, HEAT_STRIP_MAX_CLIENTS);
  if (shown === 0 || p.numClasses === 0) return '';
  const classes = p.numClasses;
  const cellW = Math.max(10, Math.min(32, Math.floor(880 / shown)));
  const cellH = classes <= 20 ? 14 : Math.max(3, Math.floor(280 / classes));
  const left = 70;
  const top = 36;
  const sizeBarH = 34;
  const gridTop = top + sizeBarH + 6;
  const gridBottom = gridTop + classes * cellH;
  const scaleTop = gridBottom + 52;
  // Wide enough for the title and the colour scale however few clients there are.
  const width = Math.max(left + shown * cellW + 20, left + HEAT_SCALE_WIDTH + 60, 420);
  const height = scaleTop + 40;
  const maxSize = Math.max(1, ...p.sizes.slice(0, shown));
  const title = `Label mix per client${shown < p.numClients ? ` (first ${shown} of ${formatCount(p.numClients)})` : ''}`;
  const parts: string[] = [
    `<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeXml(title)}" font-family='system-ui, sans-serif' style="max-width:100%;height:auto">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="16" y="22" font-size="15" font-weight="600" fill="#111827">${escapeXml(title)}</text>`,
  ];
  parts.push(`<text x="${left - 8}" y="${top + sizeBarH - 2}" text-anchor="end" font-size="11" fill="#4b5563">size</text>`);
  const labelEvery = cellH >= 10 ? 1 : Math.ceil(10 / cellH);
  for (let c = 0; c < classes; c++) {
    if (c % labelEvery !== 0) continue;
    const name = report.labelNames?.[c] ?? String(c);
    const shortName = name.length > 9 ? `${name.slice(0, 8)}…` : name;
    parts.push(
      `<text x="${left - 8}" y="${gridTop + c * cellH + cellH / 2}" dy="0.32em" text-anchor="end" font-size="${Math.min(11, Math.max(8, cellH))}" fill="#4b5563">${escapeXml(shortName)}</text>`,
    );
  }
  const labelStep = Math.ceil(shown / 25);
  for (let k = 0; k < shown; k++) {
    const x = left + k * cellW;
    const size = p.sizes[k] ?? 0;
    const barH = (size / maxSize) * sizeBarH;
    parts.push(
      `<rect x="${x + 1}" y="${(top + sizeBarH - barH).toFixed(2)}" width="${cellW - 2}" height="${barH.toFixed(2)}" fill="#9ca3af"><title>client ${k}: ${formatCount(size)} examples</title></rect>`,
    );
    const row = p.labelCounts[k] ?? [];
    for (let c = 0; c < classes; c++) {
      const count = row[c] ?? 0;
      const share = size > 0 ? count / size : 0;
      const name = report.labelNames?.[c] ?? String(c);
      parts.push(
        `<rect x="${x}" y="${gridTop + c * cellH}" width="${cellW - 1}" height="${cellH - (cellH > 4 ? 1 : 0)}" fill="${heatColor(share)}"><title>${escapeXml(
          `client ${k}, class ${name}: ${formatCount(count)} (${formatPercent(share)})`,
        )}</title></rect>`,
      );
    }
    if (k % labelStep === 0) {
      parts.push(`<text x="${x + cellW / 2}" y="${gridBottom + 14}" text-anchor="middle" font-size="10" fill="#6b7280">${k}</text>`);
    }
  }
  parts.push(`<text x="${left + (shown * cellW) / 2}" y="${gridBottom + 32}" text-anchor="middle" font-size="12" fill="#374151">client</text>`);
  parts.push(renderHeatScale(left, scaleTop));
  parts.push('</svg>');
  return `<figure><figcaption>${escapeXml(HEAT_STRIP_CAPTION)}</figcaption>${parts.join('')}</figure>`;
}

/** The heat strip's colour scale: the ramp drawn in steps, ticked at {@link HEAT_SCALE_TICKS}. */
function renderHeatScale(x: number, y: number): string {
  const steps = 52;
  const stepW = HEAT_SCALE_WIDTH / steps;
  const parts: string[] = [`<g class="heat-scale" aria-label="colour scale: share of the client's examples">`];
  parts.push(`<text x="${x - 8}" y="${y + 9}" dy="0.32em" text-anchor="end" font-size="11" fill="#4b5563">share</text>`);
  for (let i = 0; i < steps; i++) {
    // Position along the bar is the colour ramp's parameter t = √share.
    const t = (i + 0.5) / steps;
    parts.push(`<rect x="${(x + i * stepW).toFixed(2)}" y="${y}" width="${(stepW + 0.3).toFixed(2)}" height="14" fill="${heatColor(t * t)}"/>`);
  }
  parts.push(`<rect x="${x}" y="${y}" width="${HEAT_SCALE_WIDTH}" height="14" fill="none" stroke="#9ca3af" stroke-width="0.5"/>`);
  for (const share of HEAT_SCALE_TICKS) {
    const tx = x + Math.sqrt(share) * HEAT_SCALE_WIDTH;
    parts.push(`<line x1="${tx.toFixed(2)}" y1="${y + 14}" x2="${tx.toFixed(2)}" y2="${y + 18}" stroke="#6b7280" stroke-width="1"/>`);
    parts.push(`<text x="${tx.toFixed(2)}" y="${y + 29}" text-anchor="middle" font-size="10" fill="#4b5563">${Math.round(share * 100)} %</text>`);
  }
  parts.push('</g>');
  return parts.join('');
}

/** White → deep blue, with a square-root ramp so small but non-zero shares stay visible. */
function heatColor(share: number): string {
  const t = Math.sqrt(Math.min(1, Math.max(0, share)));
  const from = [247, 251, 255];
  const to = [8, 48, 107];
  const mixed = from.map((f, i) => Math.round(f + (to[i]! - f) * t));
  return `rgb(${mixed.join(',')})`;
}

function renderConfigSection(report: SimulationReport): string {
  // Seed and backend lead the table; the config's own copies are not repeated.
  const entries: [string, unknown][] = [['seed', report.seed], ['backend', report.backend], ...Object.entries(report.config).filter(([key]) => key !== 'seed' && key !== 'backend')];
  const rows = entries
    .map(([key, value]) => `<tr><th>${escapeXml(key)}</th><td><code>${escapeXml(key === 'partition' ? describePartitionSettings(value) : formatConfigValue(value))}</code></td></tr>`)
    .join('');
  return `<section><h2>Configuration</h2><table><tbody>${rows}</tbody></table></section>`;
}

function renderRoundsSection(report: SimulationReport): string {
  if (report.rounds.length === 0) return '';
  const rows = report.rounds
    .map(
      (r) =>
        `<tr><td class="num">${r.round}</td><td class="num">${formatPercent(r.accuracy)}</td><td class="num">${formatNumber(r.loss)}</td><td class="num">${formatCount(r.participants)}</td><td class="num">${formatCount(r.dropped)}</td><td class="num">${formatBytes(r.bytesUp)}</td><td class="num">${formatBytes(r.bytesDown)}</td><td class="num">${formatDuration(r.seconds)}</td></tr>`,
    )
    .join('\n');
  return `<section><h2>Rounds</h2><details><summary>Per-round table (${report.rounds.length} rounds)</summary><div class="scroll"><table>
<thead><tr><th class="num">round</th><th class="num">accuracy</th><th class="num">loss</th><th class="num">aggregated</th><th class="num">dropped</th><th class="num">bytes up</th><th class="num">bytes down</th><th class="num">time</th></tr></thead>
<tbody>${rows}</tbody></table></div></details></section>`;
}

function renderNotes(report: SimulationReport): string {
  if (!report.notes || report.notes.length === 0) return '';
  return `<section><h2>Notes</h2><ul class="notes">${report.notes.map((n) => `<li>${escapeXml(n)}</li>`).join('')}</ul></section>`;
}
