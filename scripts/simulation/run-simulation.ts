/**
 * A whole simulation: data → base features (cached) → partition → federated rounds → baselines →
 * `report.json` + `report.html`. Used by `fedtl simulate` and `npm start`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createIdentityBase } from '../../shared/bases/identity.ts';
import { createLogger, type Logger } from '../../shared/core/log.ts';
import { partition, summarizePartition } from '../../shared/math/partition.ts';
import type { FeatureMatrix } from '../../shared/model/feature-matrix.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import type { RoundRecord as CoordinatorRound } from '../../server/round-record.ts';
import { clientOrder, groupByClient, trainingParts } from './client-shards.ts';
import { centralizedBaseline, localOnlyBaseline, type BaselineInput, type LocalOnlyResult } from './baselines.ts';
import type { SimulationConfig } from './presets.ts';
import { renderReportHtml, type RoundRecord as ReportRound, type SimulationReport } from './report-html.ts';
import { runFederated } from './run-federated.ts';
import { processTreeRssBytes } from './process-tree-memory.ts';
import { VirtualIdentities } from './virtual-identities.ts';
import { bagOfWords, featuresOf, randomEmbeddingRows, loadSimulationData, openSimulationBase, pixelRows, simulationCache } from './simulation-data.ts';

export interface SimulationResult {
  report: SimulationReport & { baselines: SimulationReport['baselines'] & { localOnly?: LocalOnlyResult } };
  reportJson: string;
  reportHtml: string;
}

export interface RunSimulationOptions {
  /** Directory for report.json and report.html. */
  outDir: string;
  logger?: Logger;
}

function toReportRound(record: CoordinatorRound): ReportRound {
  return {
    round: record.round,
    accuracy: record.serverAccuracy ?? record.evalAccuracy,
    loss: record.serverLoss ?? record.evalLoss,
    participants: record.accepted,
    dropped: record.dropped,
    bytesUp: record.bytesUp,
    bytesDown: record.bytesDown,
    seconds: record.seconds,
  };
}

const SCRATCH_TEXT = {
  'random-embedding': 'the same base architecture with random instead of pretrained word vectors',
  'bag-of-words': 'bag-of-words features over the 5,000 most frequent training words',
  pixels: 'raw pixels',
} as const;

function percent(value: number | null | undefined): string {
  return value === null || value === undefined ? '  n/a' : `${(100 * value).toFixed(1)}%`;
}

export async function runSimulation(config: SimulationConfig, options: RunSimulationOptions): Promise<SimulationResult> {
  const log = options.logger ?? createLogger('simulate');
  const started = Date.now();
  // The whole run's memory: this process and, in process mode, every client process it started.
  let peakRss = processTreeRssBytes();
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
    const cache = simulationCache();
    let lastShown = 0;
    const progress = (label: string, done: number, total: number) => {
      if (done === total || Date.now() - lastShown > 2000) {
        lastShown = Date.now();
        log.info(`${label}: ${done}/${total}`);
      }
    };
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
    const needsIdentities = config.mode === 'virtual' || (config.baselines.scratch && config.scratchBase !== null);
    const identities = needsIdentities ? new VirtualIdentities(config.clients) : undefined;

    const roundLine = (label: string) => (record: CoordinatorRound) => {
      log.info(
        `${label} round ${record.round}/${config.rounds} · ${record.accepted}/${record.selected} clients · ${record.examples} examples · ` +
          `test accuracy ${percent(record.serverAccuracy)} · loss ${record.serverLoss?.toFixed(4) ?? 'n/a'} · ${record.seconds.toFixed(1)} s`,
      );
    };
    const federated = await runFederated({
      config,
      base,
      baseDirectory: directory,
      shards,
      parts,
      trainDataset: data.train,
      testFeatures,
      testLabels: data.test.labels,
      mode: config.mode,
      label: 'federated',
      ...(identities ? { identities } : {}),
      logger: log,
      onRound: roundLine('federated'),
    });

    const baselineInput = (train: FeatureMatrix, test: FeatureMatrix): BaselineInput => ({
      head: config.head,
      trainFeatures: train,
      trainLabels: shards.labels,
      testFeatures: test,
      testLabels: data.test.labels,
      batchSize: config.batchSize,
      learningRate: config.learningRate,
      optimizer: config.optimizer,
      seed: config.seed,
    });
    const baselines: SimulationResult['report']['baselines'] = {};
    if (config.baselines.centralized) {
      baselines.centralized = await centralizedBaseline(baselineInput(shards.features, testFeatures), config.centralizedEpochs);
      log.info(`centralized baseline: accuracy ${percent(baselines.centralized.accuracy)}`);
    }
    if (config.baselines.localOnly) {
      const localEpochs = Math.min(50, config.rounds * config.epochs);
      baselines.localOnly = await localOnlyBaseline(baselineInput(shards.features, testFeatures), shards, localEpochs, config.localOnlyClients);
      log.info(`local-only baseline: mean accuracy ${percent(baselines.localOnly.mean)} ± ${percent(baselines.localOnly.std)} over ${baselines.localOnly.clients} clients`);
    }
    if (config.baselines.scratch && config.scratchBase) {
      const [scratchTrain, scratchTest] =
        config.scratchBase === 'bag-of-words'
          ? bagOfWords(data.train, [data.test])
          : config.scratchBase === 'random-embedding'
            ? randomEmbeddingRows(base, [data.train, data.test], config.seed)
            : [pixelRows(data.train), pixelRows(data.test)];
      const scratchBase = createIdentityBase(scratchTrain!.examples.kind === 'tensor' ? scratchTrain!.examples.rowSize : 0, { name: `scratch-${config.scratchBase}` });
      const scratchTrainFeatures = await featuresOf(scratchBase, scratchTrain!, cache);
      const scratchTestFeatures = await featuresOf(scratchBase, scratchTest!, cache);
      // Same partition, rounds and client work, run as virtual clients (identical math, no sockets).
      const scratch = await runFederated({
        config,
        base: scratchBase,
        baseDirectory: null,
        shards: groupByClient(order, scratchTrainFeatures, data.train.labels),
        testFeatures: scratchTestFeatures,
        testLabels: data.test.labels,
        mode: 'virtual',
        label: 'scratch',
        ...(identities ? { identities } : {}),
        logger: log,
        onRound: roundLine('from scratch'),
      });
      baselines.scratch = { rounds: scratch.history.map(toReportRound) };
    }
    base.dispose();

    const rounds = federated.history.map(toReportRound);
    const finalAccuracy = rounds.at(-1)?.accuracy ?? null;
    peakRss = Math.max(peakRss, processTreeRssBytes());
    const report: SimulationResult['report'] = {
      title: `fedtl simulation: ${config.preset}`,
      federatedLabel: config.base.startsWith('identity') ? 'federated (whole model)' : 'federated (pretrained base)',
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
      peakRssMb: peakRss / (1024 * 1024),
      notes: [
        `Accuracy and loss are measured on ${data.test.size} held-out test examples after every round.`,
        `Centralized: all training data pooled, ${config.centralizedEpochs} epochs. Local-only: each client alone for ${Math.min(50, config.rounds * config.epochs)} epochs, scored on the same test set.`,
        config.scratchBase ? `From scratch: the same federation without the pretrained base (${SCRATCH_TEXT[config.scratchBase]}).` : 'No frozen base: the whole model is trained federatedly.',
      ],
    };
    await mkdir(options.outDir, { recursive: true });
    const reportJson = JSON.stringify(report, null, 1);
    const reportHtml = renderReportHtml(report);
    await writeFile(path.join(options.outDir, 'report.json'), reportJson);
    await writeFile(path.join(options.outDir, 'report.html'), reportHtml);
    return { report, reportJson, reportHtml };
  } finally {
    clearInterval(sampleMemory);
  }
}

/** The closing summary printed after a run. */
export function summaryLines(result: SimulationResult, outDir: string): string[] {
  const { report } = result;
  const scratchFinal = report.baselines.scratch?.rounds.at(-1)?.accuracy;
  const local = report.baselines.localOnly;
  return [
    '',
    `== ${report.title} (${report.backend} backend, ${report.wallSeconds.toFixed(0)} s, peak RSS ${report.peakRssMb.toFixed(0)} MB)`,
    `${(report.federatedLabel ?? 'federated').padEnd(30)}${percent(report.finalAccuracy)}  after ${report.rounds.length} rounds`,
    ...(report.baselines.centralized ? [`centralized                   ${percent(report.baselines.centralized.accuracy)}`] : []),
    ...(local ? [`local-only (mean ± std)       ${percent(local.mean)} ± ${percent(local.std)}  (min ${percent(local.min)}, max ${percent(local.max)})`] : []),
    ...(scratchFinal !== undefined ? [`federated from scratch        ${percent(scratchFinal)}`] : []),
    `report: ${path.join(outDir, 'report.html')}`,
  ];
}
