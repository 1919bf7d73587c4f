/**
 * A whole simulation: data → base features (cached) → partition → federated rounds → baselines →
 * `report.json` + `report.html`. Used by `fedtl simulate` and `npm start`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createLogger, type Logger } from '../../shared/core/log.ts';
import { partition, summarizePartition } from '../../shared/math/partition.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import type { RoundRecord as CoordinatorRound } from '../../server/round-record.ts';
import { clientOrder, groupByClient, trainingParts } from './client-shards.ts';
import type { LocalOnlyResult } from './baselines.ts';
import { baselineJobs, localOnlyEpochs, longestFirst, reportRounds, runBaselineJob, baselineLine, percent as logPercent, type BaselineContext, type BaselineJobResult } from './baseline-jobs.ts';
import { BaselinePool } from './baseline-pool.ts';
import type { SimulationConfig } from './presets.ts';
import { comparisonOf, renderReportHtml, type RoundRecord as ReportRound, type SimulationReport } from './report-html.ts';
import { formatBytes, formatCount, formatPercent, formatPoints, NBSP } from './report-format.ts';
import { finalModelPredictions } from './report-predictions.ts';
import { clientViews, finalEvaluation, gainSummary, type FinalEvaluation } from './report-tables.ts';
import { runFederated } from './run-federated.ts';
import { processTreeRssBytes } from './process-tree-memory.ts';
import { VirtualIdentities } from './virtual-identities.ts';
import { negativeTransfer, strongestScratch, type ScratchBaseline } from './scratch-baselines.ts';
import { CENTRALIZED_FEATURE_EXTRACTION_LABEL, CENTRALIZED_FINE_TUNING_LABEL } from './centralized-fine-tuning.ts';
import { featuresOf, loadSimulationData, openSimulationBase, prefetchStageFeatures, simulationCache } from './simulation-data.ts';
import { trainableScheduleFromConfig, type TrainableSetSpec } from '../../shared/model/trainable-set.ts';
import { ineffectiveAugmentation } from '../../shared/model/augmentation.ts';

export interface SimulationResult {
  report: SimulationReport & { baselines: SimulationReport['baselines'] & { localOnly?: LocalOnlyResult } };
  reportJson: string;
  reportHtml: string;
}

export interface RunSimulationOptions {
  /** Directory for report.json and report.html. */
  outDir: string;
  logger?: Logger;
  /**
   * A fine-tuning schedule to be run later on the same data (the transfer curve's second run):
   * features at its boundaries are taken in this run's pass of the base. @default the run's own
   * `trainable`, if any
   */
  prefetch?: TrainableSetSpec;
}

/** {@link logPercent}, padded to the width of `99.9%` so the summary's columns line up. */
function percent(value: number | null | undefined): string {
  return logPercent(value).padStart(5);
}

export async function runSimulation(config: SimulationConfig, options: RunSimulationOptions): Promise<SimulationResult> {
  const log = options.logger ?? createLogger('simulate');
  const started = Date.now();
  // Wall and CPU seconds of each phase (this process's CPU, worker threads included), logged so a
  // slow run says where its time went, and whether it computed or waited for a busy machine.
  const startedCpu = process.cpuUsage();
  let lapStarted = { wall: started, cpu: startedCpu };
  const lap = () => {
    const now = { wall: Date.now(), cpu: process.cpuUsage() };
    const cpu = (now.cpu.user + now.cpu.system - lapStarted.cpu.user - lapStarted.cpu.system) / 1e6;
    const text = `${((now.wall - lapStarted.wall) / 1000).toFixed(1)} s, CPU ${cpu.toFixed(1)} s`;
    lapStarted = now;
    return text;
  };
  // The whole run's memory: this process and, in process mode, every client process it started.
  let peakRss = processTreeRssBytes();
  // Started once the baselines start (with workers); closed when they are done, or on failure.
  let baselinePool = null as BaselinePool | null;
  const sampleMemory = setInterval(() => {
    peakRss = Math.max(peakRss, processTreeRssBytes());
  }, 200);
  sampleMemory.unref();
  try {
    const backend = await selectBackend();
    log.info(`preset ${config.preset}: ${config.clients} clients, ${config.rounds} rounds, ${config.partition.scheme} partition, mode ${config.mode}, seed ${config.seed}`);
    const data = await loadSimulationData(config);
    log.info(`data: ${data.train.size} training and ${data.test.size} test examples of ${config.dataset}`);
    const { base, directory } = await openSimulationBase(config.base);
    if (config.augmentation) {
      const schedule = config.trainable ? trainableScheduleFromConfig(config.trainable, base.model, config.rounds, 'trainable') : null;
      const ignored = ineffectiveAugmentation(base.input, config.augmentation, base.model, schedule);
      if (ignored) log.warn(ignored);
    }
    const cache = simulationCache();
    let lastShown = 0;
    const progress = (label: string, done: number, total: number) => {
      if (done === total || Date.now() - lastShown > 2000) {
        lastShown = Date.now();
        log.info(`${label}: ${done}/${total}`);
      }
    };
    // A fine-tuning run needs features at its stages' boundaries too: one pass of the base gives both.
    // (Socket and process clients compute their own training features.)
    const prefetch = options.prefetch ?? config.trainable;
    if (prefetch) await prefetchStageFeatures(base, prefetch, config.mode === 'virtual' ? [data.test, data.train] : [data.test], progress);
    const testFeatures = await featuresOf(base, data.test, cache, progress);
    const numClasses = data.train.classNames.length;
    const parts = partition(data.train.labels, {
      scheme: config.partition.scheme,
      numClients: config.clients,
      seed: config.seed,
      numClasses,
      alpha: config.partition.alpha,
      beta: config.partition.beta,
      shardsPerClient: config.partition.shardsPerClient,
    });
    const summary = summarizePartition(parts, data.train.labels, numClasses);
    log.info(`partition: client sizes ${summary.sizeStats.min}–${summary.sizeStats.max} (median ${summary.sizeStats.median}), label skew ${summary.skew.toFixed(2)}`);
    // Virtual clients and the baselines train on one feature matrix computed once (socket and
    // process clients compute their own from their raw data, as deployed clients do), regrouped
    // client by client: a virtual client's data is then a view, never a per-round copy. The
    // ungrouped matrix is read through a cache object of its own and dropped right away, so only
    // the grouped copy stays in memory.
    // Virtual clients leave out the rows socket and process clients keep for validation, so every mode trains on the same rows.
    const order = clientOrder(trainingParts(parts, data.train.labels, numClasses, config.validationFraction, config.seed));
    const shards = groupByClient(order, await featuresOf(base, data.train, simulationCache(), progress), data.train.labels);
    log.info(`data and base features ready (${lap()})`);
    const needsIdentities = config.mode === 'virtual' || (config.baselines.scratch && config.scratchFeatures.length > 0);
    const identities = needsIdentities ? new VirtualIdentities(config.clients) : undefined;

    const roundLine = (label: string) => (record: CoordinatorRound) => {
      log.info(
        `${label} round ${record.round}/${config.rounds} · ${record.accepted}/${record.selected} clients · ${record.examples} examples · ` +
          `test accuracy ${percent(record.serverAccuracy)} · loss ${record.serverLoss?.toFixed(4) ?? 'n/a'}` +
          `${(record.averagedRounds ?? 1) > 1 ? ` (mean of the last ${record.averagedRounds} rounds' models)` : ''}` +
          `${record.privacy ? ` · ε ${record.privacy.epsilonRound.toFixed(3)} this round, ${record.privacy.epsilonTotal.toFixed(3)} in all (δ ${record.privacy.delta})` : ''} · ${record.seconds.toFixed(1)} s`,
      );
    };
    const jobs = baselineJobs(config);
    const context: BaselineContext = { config, train: data.train, test: data.test, order, shards, testFeatures, base: async () => base, cache, ...(identities ? { identities } : {}), log };
    const baselineWorkers = Math.min(config.trainingWorkers, jobs.length);
    /**
     * The baselines, each an independent job (baseline-jobs.ts): with workers, side by side in a
     * pool of worker threads, longest first; without, one after the other in this thread. The same
     * numbers either way.
     */
    const runBaselines = async (): Promise<BaselineJobResult[]> => {
      if (baselineWorkers === 0) {
        const results: BaselineJobResult[] = [];
        for (const job of jobs) {
          results.push(await runBaselineJob(job, context));
          log.info(`${baselineLine(results.at(-1)!)} (${lap()})`);
        }
        return results;
      }
      baselinePool = await BaselinePool.start({ workers: baselineWorkers, setup: { config, baseDirectory: directory, train: data.train, test: data.test, order, shards, testFeatures }, log });
      const pool = baselinePool;
      const running = new Map(longestFirst(jobs).map((job) => [job, pool.run(job).then((result) => (log.info(`${baselineLine(result)} (${result.seconds.toFixed(1)} s in a worker)`), result))]));
      return Promise.all(jobs.map((job) => running.get(job)!));
    };
    // Virtual clients run to no deadline, so the baselines can share the cores with them; socket
    // and process clients answer to round deadlines, which a busy core could make them miss (and
    // so change the run), so their baselines wait for the federation.
    const baselinesBeside = baselineWorkers > 0 && config.mode === 'virtual' ? runBaselines() : null;
    // Awaited below; this only keeps a failure of the federation from leaving it unhandled.
    baselinesBeside?.catch(() => undefined);
    const federated = await runFederated({
      config,
      base,
      baseDirectory: directory,
      shards,
      parts,
      trainDataset: data.train,
      testDataset: data.test,
      testFeatures,
      testLabels: data.test.labels,
      mode: config.mode,
      label: 'federated',
      ...(identities ? { identities } : {}),
      logger: log,
      onRound: roundLine('federated'),
    });

    log.info(`federated: ${percent(federated.history.at(-1)?.serverAccuracy ?? federated.history.at(-1)?.evalAccuracy)} (${lap()}${baselinesBeside ? ', the baselines running beside it' : ''})`);
    const results = await (baselinesBeside ?? runBaselines());
    if (baselinePool) {
      await baselinePool.close();
      log.info(`baselines done (${lap()})`);
    }
    const baselines: SimulationResult['report']['baselines'] = {};
    const scratchRuns: ScratchBaseline[] = [];
    for (const result of results) {
      switch (result.kind) {
        case 'centralized-feature-extraction':
          // With a fine-tuning federation this is the head-only baseline beside centralized fine-tuning.
          if (config.trainable) baselines.centralizedFeatureExtraction = { accuracy: result.accuracy, loss: result.loss, label: CENTRALIZED_FEATURE_EXTRACTION_LABEL };
          else baselines.centralized = { accuracy: result.accuracy, loss: result.loss };
          break;
        case 'centralized-fine-tuning':
          baselines.centralized = { accuracy: result.accuracy, loss: result.loss, label: CENTRALIZED_FINE_TUNING_LABEL, stages: result.stages, stageEpochs: result.stageEpochs };
          break;
        case 'local-only':
          baselines.localOnly = result.result;
          break;
        case 'scratch':
          scratchRuns.push(result.baseline);
          break;
      }
    }
    if (scratchRuns.length > 0) {
      const strongest = strongestScratch(scratchRuns);
      if (strongest) {
        baselines.scratch = strongest;
        baselines.scratchOthers = scratchRuns.filter((run) => run !== strongest);
      }
    }
    // The final federated model class by class: the confusion matrix and the per-client view's recalls.
    const lastRound = federated.history.at(-1)?.round;
    let evaluation: FinalEvaluation | null = null;
    if (lastRound !== undefined) {
      const predicted = await finalModelPredictions({ config, base, weights: federated.weights, round: lastRound, testFeatures, testDataset: data.test });
      evaluation = finalEvaluation(data.test.labels, predicted, numClasses);
    }
    base.dispose();
    const cpu = process.cpuUsage(startedCpu);
    log.info(`all done: ${((Date.now() - started) / 1000).toFixed(1)} s, CPU ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s`);

    const rounds = reportRounds(federated.history);
    const finalAccuracy = rounds.at(-1)?.accuracy ?? null;
    const pretrained = !config.base.startsWith('identity');
    const negative = pretrained ? negativeTransfer(finalAccuracy, baselines.scratch as ScratchBaseline | undefined) : null;
    if (negative) log.warn(negative.message);
    peakRss = Math.max(peakRss, processTreeRssBytes());
    const report: SimulationResult['report'] = {
      title: `fedtl simulation: ${config.preset}`,
      federatedLabel: pretrained ? (config.trainable ? 'federated (pretrained base, fine-tuned)' : 'federated (pretrained base)') : 'federated (whole model)',
      createdAt: new Date().toISOString(),
      config: { ...config, baseHash: base.hash },
      seed: config.seed,
      backend: backend.name,
      partition: summary,
      labelNames: data.train.classNames,
      rounds,
      baselines,
      wallSeconds: (Date.now() - started) / 1000,
      finalAccuracy,
      negativeTransfer: negative,
      peakRssMb: peakRss / (1024 * 1024),
      testExamples: data.test.size,
      targetAccuracy: config.targetAccuracy ?? null,
      evaluation,
      clients: clientViews(summary, evaluation?.metrics.recall ?? null, baselines.localOnly?.perClient),
      notes: [
        `Accuracy and loss are measured on ${formatCount(data.test.size)} held-out test examples after every round.`,
        `Centralized: all training data pooled, ${config.centralizedEpochs} epochs${baselines.centralized?.stageEpochs ? `, through the federation's trainable schedule (${baselines.centralized.stages!.map((stage, i) => `${stage}: ${baselines.centralized!.stageEpochs![i]} epochs`).join('; ')}); centralized feature extraction trains the head alone on the frozen base` : ''}. Local-only: each client alone for ${localOnlyEpochs(config)} epochs, scored on the same test set.`,
        ...(scratchRuns.length > 0
          ? [`From scratch: the same federation without the pretrained base, on ${scratchRuns.map((run) => `${run.features} (${run.description}): ${formatPercent(run.accuracy)}`).join('; ')}. The strongest, ${baselines.scratch?.features ?? 'none'}, is the one the pretrained model is judged against.`]
          : []),
        ...(pretrained ? [] : ['No frozen base: the whole model is trained federatedly.']),
        ...(negative ? [`Warning, ${negative.message}`] : []),
        ...privacyNotes(config, rounds),
      ],
    };
    report.comparison = comparisonOf(report);
    await mkdir(options.outDir, { recursive: true });
    const reportJson = JSON.stringify(report, null, 1);
    const reportHtml = renderReportHtml(report);
    await writeFile(path.join(options.outDir, 'report.json'), reportJson);
    await writeFile(path.join(options.outDir, 'report.html'), reportHtml);
    return { report, reportJson, reportHtml };
  } finally {
    clearInterval(sampleMemory);
    await baselinePool?.close();
  }
}

/** `, mean of the last 3 rounds' models` when a federation's final model is a tail average (iterate averaging). */
function averagedNote(round: ReportRound | undefined): string {
  const averaged = round?.averagedRounds ?? 1;
  return averaged > 1 ? `  (mean of the last ${averaged} rounds' models)` : '';
}

function privacyNotes(config: SimulationConfig, rounds: readonly ReportRound[]): string[] {
  const notes: string[] = [];
  if (config.secureAggregation) notes.push('Secure aggregation (SecAgg+): each round\'s deltas were quantized, masked and unmasked in aggregate; the model saw only their sum.');
  const last = rounds.at(-1);
  if (config.dp && last?.epsilon !== undefined) {
    notes.push(`Differential privacy (DP-FedAvg, client level): (ε = ${last.epsilon.toFixed(3)}, δ = ${last.delta}) after ${rounds.length} rounds, RDP accountant; per-round ε in report.json.`);
  }
  return notes;
}

/** The closing summary printed after a run: every baseline, and negative transfer said plainly. */
export function summaryLines(result: SimulationResult, outDir: string): string[] {
  const { report } = result;
  const local = report.baselines.localOnly;
  const scratchRuns = [report.baselines.scratch, ...(report.baselines.scratchOthers ?? [])].filter((run) => run !== undefined);
  const line = (label: string, value: string) => `${label.padEnd(42)} ${value}`;
  const negative = report.negativeTransfer;
  const gains = gainSummary(report.clients ?? []);
  return [
    '',
    `== ${report.title} (${report.backend} backend, ${report.wallSeconds.toFixed(0)} s, peak RSS ${formatBytes(report.peakRssMb * 1024 * 1024)})`,
    line(report.federatedLabel ?? 'federated', `${percent(report.finalAccuracy)}  after ${report.rounds.length} rounds${averagedNote(report.rounds.at(-1))}`),
    ...(report.baselines.centralized ? [line(report.baselines.centralized.label ?? 'centralized', percent(report.baselines.centralized.accuracy))] : []),
    ...(report.baselines.centralizedFeatureExtraction ? [line(report.baselines.centralizedFeatureExtraction.label ?? CENTRALIZED_FEATURE_EXTRACTION_LABEL, percent(report.baselines.centralizedFeatureExtraction.accuracy))] : []),
    ...(local ? [line('local-only (mean ± std)', `${percent(local.mean)} ± ${percent(local.std)}  (min ${percent(local.min)}, max ${percent(local.max)})`)] : []),
    ...(gains.compared > 0 ? [line('federated vs alone (own label mix)', `better for ${gains.helped} of ${gains.compared} clients, by ${formatPoints(gains.meanGain).replace(NBSP, ' ')} on average`)] : []),
    ...scratchRuns.map((run) =>
      line(`federated from scratch, ${run.features ?? 'scratch'}`, `${percent(run.rounds.at(-1)?.accuracy)}${run === report.baselines.scratch && scratchRuns.length > 1 ? '  (strongest)' : ''}${averagedNote(run.rounds.at(-1))}`),
    ),
    ...(negative ? [`WARNING ${negative.message}`] : []),
    ...(report.rounds.at(-1)?.epsilon !== undefined ? [line('privacy spent', `ε = ${report.rounds.at(-1)!.epsilon!.toFixed(3)}, δ = ${report.rounds.at(-1)!.delta}`)] : []),
    `report: ${path.join(outDir, 'report.html')}`,
  ];
}
