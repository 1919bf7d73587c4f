/**
 * The transfer curve: how much the pretrained base buys as the federation's training data grows.
 * At each training-set size the same preset runs whole — federated on the pretrained base
 * (feature extraction), the same federation from scratch (the strongest of the preset's
 * from-scratch baselines) and centralized training — then the same federation once more with the
 * preset's fine-tuning recipe (its `fineTune` stages, or the run's own `trainable`), and the
 * results are drawn as one chart.
 * Pretraining usually pays most with little data and less as data grows (Kornblith, Shlens & Le
 * 2019, "Do Better ImageNet Models Transfer Better?", https://arxiv.org/abs/1805.08974, fig. 5;
 * Yosinski et al. 2014): the curve shows where, for this task, the lines cross, if they do.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createLogger, type Logger } from '../../shared/core/log.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import type { TrainableSetSpec } from '../../shared/model/trainable-set.ts';
import { fineTuneRecipeFor, resolveConfig, withFineTuneRecipe, type SimulationConfig } from './presets.ts';
import { formatPercent } from './report-format.ts';
import { escapeXml, renderLineChart, CHART_PALETTE, type LineSeries } from './svg-chart.ts';
import { runSimulation } from './run-simulation.ts';

/** The results at one training-set size. Accuracies in [0, 1], null when not run. */
export interface CurvePoint {
  trainExamples: number;
  clients: number;
  /** Federated, on the frozen pretrained base (feature extraction). */
  featureExtraction: number | null;
  /** Federated, fine-tuning the pretrained base with the recipe; null without one. */
  fineTuned: number | null;
  /** Federated from scratch: the strongest of the preset's from-scratch baselines. */
  scratch: number | null;
  /** Which from-scratch baseline was the strongest. */
  scratchFeatures: string | null;
  /** One model on all the training data (feature extraction). */
  centralized: number | null;
  /** One model on all the training data, fine-tuned with the same schedule; null without a recipe. */
  centralizedFineTuned: number | null;
  wallSeconds: number;
}

export interface TransferCurve {
  preset: string;
  seed: number;
  /** The fine-tuning series' trainable set (`TrainableSetSpec`), null when the preset has none. */
  fineTune: TrainableSetSpec | null;
  points: CurvePoint[];
}

/** Options of {@link runTransferCurve}. */
export interface TransferCurveOptions {
  /** Directory of curve.json, curve.html, and one sub-directory per size with its full report. */
  outDir: string;
  logger?: Logger;
  /** Runs one simulation (a whole preset at one size). @default runSimulation */
  simulate?: typeof runSimulation;
}

/**
 * Parses `100,500,2000` into increasing distinct sizes.
 * @throws FedtlError `BAD_CONFIG` naming the bad entry
 */
export function parseCurveSizes(text: string): number[] {
  const sizes = text.split(',').map((part) => part.trim()).filter((part) => part !== '').map((part) => {
    const n = Number(part);
    if (!Number.isSafeInteger(n) || n <= 0) throw new FedtlError('BAD_CONFIG', `--curve takes training-set sizes like 100,500,2000; "${part}" is not a positive integer`);
    return n;
  });
  if (sizes.length === 0) throw new FedtlError('BAD_CONFIG', '--curve needs at least one training-set size, e.g. 100,500,2000');
  return [...new Set(sizes)].sort((a, b) => a - b);
}

/** The config at one size: fewer clients when the data cannot give each at least 5 examples. */
export function configAtSize(config: SimulationConfig, trainExamples: number): SimulationConfig {
  const clients = Math.max(1, Math.min(config.clients, Math.floor(trainExamples / 5)));
  return resolveConfig(config.preset, {
    ...config,
    trainExamples,
    clients,
    minClients: Math.min(config.minClients, clients),
    // The curve compares pretrained with scratch and centralized; each client alone is another question.
    baselines: { ...config.baselines, localOnly: false },
  });
}

/** Runs the preset at each size and writes curve.json and curve.html into `options.outDir`. */
export async function runTransferCurve(config: SimulationConfig, sizes: readonly number[], options: TransferCurveOptions): Promise<TransferCurve> {
  const log = options.logger ?? createLogger('curve');
  const simulate = options.simulate ?? runSimulation;
  const recipe = config.trainable ?? (config.fineTune ? fineTuneRecipeFor(config.fineTune, config.rounds) : null);
  if (!recipe) log.warn(`preset ${config.preset} has no fine-tuning recipe (fineTune) and no --trainable was given: the curve has no fine-tuning series`);
  const points: CurvePoint[] = [];
  for (const size of sizes) {
    const sized = configAtSize({ ...config, trainable: null }, size);
    log.info(`transfer curve: ${size} training examples over ${sized.clients} clients`);
    const started = Date.now();
    // Its pass of the base also takes the features the fine-tuning run below needs, when that run
    // uses the same base (a recipe with its own base, `fineTuneBase`, computes its own features).
    const prefetch = recipe && (config.fineTuneBase ?? config.base) === config.base ? recipe : null;
    const { report } = await simulate(sized, { outDir: path.join(options.outDir, `train-${size}`), logger: log, ...(prefetch ? { prefetch } : {}) });
    // The same federation (partition, rounds, client work), fine-tuning; of its baselines only the
    // centralized one, which then fine-tunes with the same schedule on the pooled data.
    const fineTuned = recipe
      ? await simulate({ ...withFineTuneRecipe({ ...sized, trainable: recipe }), baselines: { centralized: sized.baselines.centralized, localOnly: false, scratch: false } }, { outDir: path.join(options.outDir, `train-${size}`, 'fine-tuned'), logger: log })
      : null;
    points.push({
      trainExamples: size,
      clients: sized.clients,
      featureExtraction: report.finalAccuracy,
      fineTuned: fineTuned ? fineTuned.report.finalAccuracy : null,
      scratch: report.baselines.scratch?.accuracy ?? report.baselines.scratch?.rounds.at(-1)?.accuracy ?? null,
      scratchFeatures: report.baselines.scratch?.features ?? null,
      centralized: report.baselines.centralized?.accuracy ?? null,
      centralizedFineTuned: fineTuned?.report.baselines.centralized?.accuracy ?? null,
      wallSeconds: (Date.now() - started) / 1000,
    });
    // Written after every size: a long curve that is stopped keeps the points it finished.
    await writeCurve({ preset: config.preset, seed: config.seed, fineTune: recipe, points }, options.outDir);
  }
  const curve: TransferCurve = { preset: config.preset, seed: config.seed, fineTune: recipe, points };
  await writeCurve(curve, options.outDir);
  return curve;
}

async function writeCurve(curve: TransferCurve, outDir: string): Promise<void> {
  await mkdir(outDir, { recursive: true });
  await writeFile(path.join(outDir, 'curve.json'), JSON.stringify(curve, null, 1));
  await writeFile(path.join(outDir, 'curve.html'), renderCurveHtml(curve));
}

/** The curve as one SVG line chart: accuracy against training-set size, one line per method. */
export function renderCurveChart(curve: TransferCurve): string {
  const line = (name: string, pick: (p: CurvePoint) => number | null, color: string, dashed = false): LineSeries => ({
    name,
    color,
    dashed,
    points: curve.points.filter((p) => pick(p) !== null).map((p) => ({ x: p.trainExamples, y: pick(p)! })),
  });
  const scratchNames = [...new Set(curve.points.map((p) => p.scratchFeatures).filter((n) => n !== null))].join(' / ');
  return renderLineChart({
    title: `Transfer curve: ${curve.preset}`,
    xLabel: 'training examples in the federation',
    yLabel: 'test accuracy',
    series: [
      line('federated, pretrained base (feature extraction)', (p) => p.featureExtraction, CHART_PALETTE[0]!),
      line('federated, pretrained base (fine-tuned)', (p) => p.fineTuned, CHART_PALETTE[3]!),
      line(`federated from scratch (${scratchNames || 'none'})`, (p) => p.scratch, CHART_PALETTE[1]!),
      line('centralized (pretrained base, pooled data)', (p) => p.centralized, '#009E73', true),
      line('centralized fine-tuning (pooled data)', (p) => p.centralizedFineTuned, CHART_PALETTE[4]!, true),
    ],
    width: 960,
    height: 340,
  });
}

/** A self-contained page: the chart and the table of numbers. */
export function renderCurveHtml(curve: TransferCurve): string {
  const rows = curve.points
    .map((p) => `<tr><td>${p.trainExamples}</td><td>${p.clients}</td><td>${formatPercent(p.featureExtraction)}</td><td>${formatPercent(p.fineTuned)}</td><td>${formatPercent(p.scratch)}${p.scratchFeatures ? ` (${escapeXml(p.scratchFeatures)})` : ''}</td><td>${formatPercent(p.centralized)}</td><td>${formatPercent(p.centralizedFineTuned)}</td><td>${p.wallSeconds.toFixed(0)} s</td></tr>`)
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeXml(`fedtl transfer curve: ${curve.preset}`)}</title>
<style>body{font:14px/1.5 system-ui,sans-serif;max-width:1000px;margin:24px auto;padding:0 16px}table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #eee;text-align:right}</style></head>
<body><h1>${escapeXml(`Transfer curve: ${curve.preset}`)} (seed ${curve.seed})</h1>
${renderCurveChart(curve)}
${curve.fineTune ? `<p>Fine-tuning recipe: <code>${escapeXml(JSON.stringify(curve.fineTune))}</code></p>` : '<p>No fine-tuning recipe: no fine-tuning series.</p>'}
<table><thead><tr><th>training examples</th><th>clients</th><th>federated, pretrained (feature extraction)</th><th>federated, fine-tuned</th><th>federated from scratch (strongest)</th><th>centralized</th><th>centralized fine-tuning</th><th>wall time</th></tr></thead><tbody>${rows}</tbody></table>
</body></html>
`;
}

/** The curve as text lines for the CLI. */
export function curveLines(curve: TransferCurve, outDir: string): string[] {
  return [
    '',
    `== transfer curve: ${curve.preset} (seed ${curve.seed})`,
    `${'train'.padStart(7)}  ${'clients'.padStart(7)}  ${'pretrained'.padStart(10)}  ${'fine-tuned'.padStart(10)}  ${'scratch'.padStart(8)}  ${'centralized'.padStart(11)}  ${'central FT'.padStart(10)}`,
    ...curve.points.map(
      (p) =>
        `${String(p.trainExamples).padStart(7)}  ${String(p.clients).padStart(7)}  ${formatPercent(p.featureExtraction).padStart(10)}  ${formatPercent(p.fineTuned).padStart(10)}  ${formatPercent(p.scratch).padStart(8)}  ${formatPercent(p.centralized).padStart(11)}  ${formatPercent(p.centralizedFineTuned).padStart(10)}${p.scratchFeatures ? `  (scratch: ${p.scratchFeatures})` : ''}`,
    ),
    `chart: ${path.join(outDir, 'curve.html')}`,
  ];
}
