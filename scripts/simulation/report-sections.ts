/**
 * HTML of the report's table sections: the comparison of every model with its confidence
 * interval, the final model's confusion matrix with per-class precision, recall and F1, and the
 * per-client view. Plain tables with inline styles only; the data comes from report-tables.ts.
 */
import type { PartitionSummary } from '../../shared/math/index.ts';
import { formatCount, formatPercent, formatPoints, formatNumber, isNumber } from './report-format.ts';
import { gainSummary, type ClientView, type FinalEvaluation, type ModelComparisonRow } from './report-tables.ts';
import { escapeXml } from './svg-chart.ts';

/** Confusion matrices with more classes than this are left to report.json: the table would not read. */
export const CONFUSION_MAX_CLASSES = 30;

/** At most this many rows in the per-client table (the local-only sample first); all are in report.json. */
export const CLIENT_TABLE_MAX_ROWS = 100;

function className(names: readonly string[] | undefined, c: number): string {
  return names?.[c] ?? String(c);
}

function intervalText(row: ModelComparisonRow): string {
  if (!row.interval) return '—';
  return `${formatPercent(row.interval.low)} – ${formatPercent(row.interval.high)}`;
}

function methodText(row: ModelComparisonRow): string {
  if (row.method === 'wilson') return `Wilson, n = ${formatCount(row.n)} test examples`;
  if (row.method === 'student-t') return `Student t over ${formatCount(row.n)} clients`;
  return row.n !== null ? `n = ${formatCount(row.n)}` : '';
}

/** One table of every model: accuracy, its 95 % interval and how that interval was computed. */
export function renderComparisonSection(rows: readonly ModelComparisonRow[]): string {
  if (rows.length === 0) return '';
  const body = rows
    .map(
      (row) =>
        `<tr${row.role === 'federated' ? ' class="lead"' : ''}><td>${escapeXml(row.model)}</td><td class="num">${formatPercent(row.accuracy)}</td><td class="num">${escapeXml(intervalText(row))}</td><td class="num">${formatNumber(row.loss)}</td><td>${escapeXml(methodText(row))}</td></tr>`,
    )
    .join('\n');
  return `<section id="comparison"><h2>All models compared</h2><p class="hint">Test accuracy of the final model of each run, with a 95 % confidence interval. A single model scored on n test examples gets the Wilson score interval of a proportion; the local-only baseline is a mean over clients, so its interval is Student's t over the clients' accuracies. Overlapping intervals mean the test set cannot tell the two models apart.</p>
<table><thead><tr><th>model</th><th class="num">test accuracy</th><th class="num">95 % interval</th><th class="num">test loss</th><th>how the interval is computed</th></tr></thead>
<tbody>${body}</tbody></table></section>`;
}

/** White → blue by share of the row, for the confusion matrix cells. */
function cellStyle(share: number): string {
  const t = Math.min(1, Math.max(0, share));
  const mix = (from: number, to: number) => Math.round(from + (to - from) * t);
  const background = `rgb(${mix(255, 8)},${mix(255, 81)},${mix(255, 156)})`;
  return `background:${background};color:${t > 0.5 ? '#ffffff' : '#111827'}`;
}

/** The confusion matrix (counts, shaded by share of the true class) and per-class precision, recall and F1. */
export function renderConfusionSection(evaluation: FinalEvaluation | null | undefined, labelNames: readonly string[] | undefined): string {
  if (!evaluation) return '';
  const { confusion, metrics } = evaluation;
  const classes = confusion.length;
  const perClass = confusion
    .map(
      (_, c) =>
        `<tr><td>${escapeXml(className(labelNames, c))}</td><td class="num">${formatCount(metrics.support[c])}</td><td class="num">${formatPercent(metrics.precision[c])}</td><td class="num">${formatPercent(metrics.recall[c])}</td><td class="num">${formatPercent(metrics.f1[c])}</td></tr>`,
    )
    .join('\n');
  const macro = `<tr class="total"><td>macro average</td><td class="num">${formatCount(evaluation.examples)}</td><td class="num">${formatPercent(metrics.macro.precision)}</td><td class="num">${formatPercent(metrics.macro.recall)}</td><td class="num">${formatPercent(metrics.macro.f1)}</td></tr>`;
  const scores = `<table class="per-class"><thead><tr><th>class</th><th class="num">test examples</th><th class="num">precision</th><th class="num">recall</th><th class="num">F1</th></tr></thead><tbody>${perClass}\n${macro}</tbody></table>`;
  let matrix: string;
  if (classes > CONFUSION_MAX_CLASSES) {
    matrix = `<p class="hint">${classes} classes: the ${classes} × ${classes} matrix is in report.json (<code>evaluation.confusion</code>).</p>`;
  } else {
    const head = `<tr><th>true \\ predicted</th>${confusion.map((_, p) => `<th class="num">${escapeXml(className(labelNames, p))}</th>`).join('')}</tr>`;
    const rows = confusion
      .map((row, t) => {
        const support = metrics.support[t] ?? 0;
        const cells = row
          .map((count, p) => {
            const share = support > 0 ? count / support : 0;
            const title = `true ${className(labelNames, t)}, predicted ${className(labelNames, p)}: ${formatCount(count)} (${formatPercent(share)} of ${className(labelNames, t)})`;
            return `<td class="num${p === t ? ' diagonal' : ''}" style="${cellStyle(share)}" title="${escapeXml(title)}">${formatCount(count)}</td>`;
          })
          .join('');
        return `<tr><th>${escapeXml(className(labelNames, t))}</th>${cells}</tr>`;
      })
      .join('\n');
    matrix = `<div class="scroll wide"><table class="confusion"><thead>${head}</thead><tbody>${rows}</tbody></table></div>`;
  }
  return `<section id="confusion"><h2>Final model, class by class</h2><p class="hint">The final federated model on the ${formatCount(evaluation.examples)} test examples. Rows are true classes, columns predicted classes; a cell's shade is its share of the true class (its row), so the diagonal is each class's recall. Accuracy ${formatPercent(metrics.accuracy)}.</p>${matrix}${scores}</section>`;
}

/** The two most common classes of a client, as HTML: `7 (45.0 %), 1 (30.0 %)`, each kept on one line. */
function mixText(partition: PartitionSummary, client: number, labelNames: readonly string[] | undefined): string {
  const counts = partition.labelCounts[client] ?? [];
  const size = partition.sizes[client] ?? 0;
  if (size === 0) return '—';
  return counts
    .map((count, c) => ({ count, c }))
    .filter((x) => x.count > 0)
    .sort((a, b) => b.count - a.count || a.c - b.c)
    .slice(0, 2)
    .map((x) => `<span class="nowrap">${escapeXml(`${className(labelNames, x.c)} (${formatPercent(x.count / size)})`)}</span>`)
    .join(', ');
}

/**
 * The per-client view: for each client, its local-only model and the federated model, both scored
 * on the client's own label mix, and the difference.
 */
export function renderClientSection(views: readonly ClientView[] | undefined, partition: PartitionSummary, labelNames: readonly string[] | undefined): string {
  if (!views || views.length === 0) return '';
  // The clients with a local-only model first (the comparison a hospital wants), then the rest.
  const compared = views.filter((v) => v.localOnly !== null);
  const shown = [...compared, ...views.filter((v) => v.localOnly === null)].slice(0, CLIENT_TABLE_MAX_ROWS).sort((a, b) => a.client - b.client);
  const gains = gainSummary(views);
  const summary =
    gains.compared > 0
      ? `Federation beat training alone for ${formatCount(gains.helped)} of ${formatCount(gains.compared)} clients compared, by ${formatPoints(gains.meanGain)} on average.`
      : 'No local-only baseline was run, so only the federated model is shown.';
  const rows = shown
    .map(
      (v) =>
        `<tr><td class="num">${v.client}</td><td class="num">${formatCount(v.examples)}</td><td>${mixText(partition, v.client, labelNames)}</td><td class="num">${formatPercent(v.localOnly)}</td><td class="num">${formatPercent(v.federated)}</td><td class="num${isNumber(v.gain) ? (v.gain >= 0 ? ' up' : ' down') : ''}">${formatPoints(v.gain)}</td><td class="num">${formatPercent(v.localOnlyTest)}</td></tr>`,
    )
    .join('\n');
  const more = views.length > shown.length ? `<p class="hint">${formatCount(shown.length)} of ${formatCount(views.length)} clients shown; all are in report.json (<code>clients</code>).</p>` : '';
  return `<section id="clients"><h2>What federation did for each client</h2><p class="hint">${escapeXml(summary)} Accuracy on a client's own data is the model's per-class recall on the test set weighted by that client's label counts: the accuracy expected on examples drawn like the client's, the same yardstick for both models and for every client, with no training rows held back. Clients are numbered from 0 in partition order, as in the label mix chart and the logs.</p>
<div class="scroll"><table><thead><tr><th class="num">client</th><th class="num">examples</th><th>main classes</th><th class="num">local-only, own mix</th><th class="num">federated, own mix</th><th class="num">federation gain</th><th class="num">local-only, whole test set</th></tr></thead>
<tbody>${rows}</tbody></table></div>${more}</section>`;
}
