/**
 * The baselines of a simulation as independent jobs: centralized feature extraction, centralized
 * fine-tuning, local-only, and each "from scratch" federation. A job's result depends only on the
 * run's config, data and split, never on the thread that runs it or on what ran before it there
 * (every initial weight, shuffle and fault draw is seeded from the config), so `runSimulation`
 * may run them one after the other in its own thread or side by side in a {@link BaselinePool}
 * and get the same numbers.
 */
import type { LabeledDataset } from '../../client/data/dataset.ts';
import { createIdentityBase } from '../../shared/bases/identity.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import type { Logger } from '../../shared/core/log.ts';
import type { FeatureCache } from '../../shared/model/feature-cache.ts';
import type { FeatureMatrix } from '../../shared/model/feature-matrix.ts';
import type { FrozenBase } from '../../shared/model/frozen-base.ts';
import { trainableScheduleFromConfig } from '../../shared/model/trainable-set.ts';
import type { RoundRecord as CoordinatorRound } from '../../server/round-record.ts';
import { centralizedBaseline, localOnlyBaseline, type BaselineInput, type LocalOnlyResult } from './baselines.ts';
import { centralizedFineTuning } from './centralized-fine-tuning.ts';
import { groupByClient, type ClientOrder, type ClientShards } from './client-shards.ts';
import type { ScratchFeatures, SimulationConfig } from './presets.ts';
import type { RoundRecord as ReportRound } from './report-html.ts';
import { runFederated } from './run-federated.ts';
import { SCRATCH_DESCRIPTIONS, scratchHead, scratchRows, type ScratchBaseline } from './scratch-baselines.ts';
import { featuresOf } from './simulation-data.ts';
import type { VirtualIdentities } from './virtual-identities.ts';

/** One baseline of a run. */
export type BaselineJob =
  | { kind: 'centralized-feature-extraction' }
  | { kind: 'centralized-fine-tuning' }
  | { kind: 'local-only' }
  | { kind: 'scratch'; features: ScratchFeatures };

/** What a job returns: plain data, so it crosses a thread boundary unchanged. */
export type BaselineJobResult = { seconds: number } & (
  | { kind: 'centralized-feature-extraction'; accuracy: number; loss: number }
  | { kind: 'centralized-fine-tuning'; accuracy: number; loss: number; stages: string[]; stageEpochs: number[] }
  | { kind: 'local-only'; result: LocalOnlyResult }
  | { kind: 'scratch'; baseline: ScratchBaseline }
);

/** What every job of a run reads. */
export interface BaselineContext {
  config: SimulationConfig;
  train: LabeledDataset;
  test: LabeledDataset;
  /** The federation's training rows, client by client. */
  order: ClientOrder;
  /** The base's features of those rows, grouped by client. */
  shards: ClientShards;
  /** The base's features of the test set. */
  testFeatures: FeatureMatrix;
  /** The run's frozen base, opened on first use (a worker that runs no job needing it never loads it). */
  base: () => Promise<FrozenBase>;
  cache: FeatureCache;
  /** The virtual clients' identities. @default fresh ones per federation */
  identities?: VirtualIdentities;
  log: Logger;
}

/** The jobs of `config`'s baselines, in the order their results are reported. */
export function baselineJobs(config: SimulationConfig): BaselineJob[] {
  const jobs: BaselineJob[] = [];
  if (config.baselines.centralized) {
    jobs.push({ kind: 'centralized-feature-extraction' });
    if (config.trainable) jobs.push({ kind: 'centralized-fine-tuning' });
  }
  if (config.baselines.localOnly) jobs.push({ kind: 'local-only' });
  if (config.baselines.scratch) for (const features of config.scratchFeatures) jobs.push({ kind: 'scratch', features });
  return jobs;
}

/** Epochs of the local-only baseline: as many passes as the federation makes, at most 50. */
export function localOnlyEpochs(config: Pick<SimulationConfig, 'rounds' | 'epochs'>): number {
  return Math.min(50, config.rounds * config.epochs);
}

/** A fraction as a log line's percent (`83.6%`, `n/a`): the simulation's progress lines share it. */
export function percent(value: number | null | undefined): string {
  return value === null || value === undefined ? 'n/a' : `${(100 * value).toFixed(1)}%`;
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
    ...(record.privacy ? { epsilon: record.privacy.epsilonTotal, delta: record.privacy.delta } : {}),
    ...(record.averagedRounds !== undefined ? { averagedRounds: record.averagedRounds } : {}),
  };
}

/** A federation's round history as the report draws it. */
export function reportRounds(history: readonly CoordinatorRound[]): ReportRound[] {
  return history.map(toReportRound);
}

/** Runs one baseline job in this thread. */
export async function runBaselineJob(job: BaselineJob, context: BaselineContext): Promise<BaselineJobResult> {
  const started = Date.now();
  const seconds = () => (Date.now() - started) / 1000;
  const { config, log } = context;
  const input: BaselineInput = {
    head: config.head,
    trainFeatures: context.shards.features,
    trainLabels: context.shards.labels,
    testFeatures: context.testFeatures,
    testLabels: context.test.labels,
    batchSize: config.batchSize,
    learningRate: config.learningRate,
    optimizer: config.optimizer,
    seed: config.seed,
  };
  switch (job.kind) {
    case 'centralized-feature-extraction': {
      const result = await centralizedBaseline(input, config.centralizedEpochs);
      return { kind: job.kind, accuracy: result.accuracy, loss: result.loss, seconds: seconds() };
    }
    case 'centralized-fine-tuning': {
      // The federation fine-tunes: its centralized baseline trains the same schedule on the pooled data.
      if (!config.trainable) throw new FedtlError('BAD_CONFIG', 'centralized fine-tuning follows the federation\'s trainable schedule, and this run has none (config.trainable)');
      const base = await context.base();
      const result = await centralizedFineTuning({
        base,
        head: config.head,
        schedule: trainableScheduleFromConfig(config.trainable, base.model, config.rounds, 'trainable'),
        rounds: config.rounds,
        train: context.train,
        order: context.order,
        test: context.test,
        cache: context.cache,
        epochs: config.centralizedEpochs,
        batchSize: config.batchSize,
        learningRate: config.learningRate,
        optimizer: config.optimizer,
        seed: config.seed,
        ...(config.augmentation ? { augmentation: config.augmentation } : {}),
      });
      return { kind: job.kind, accuracy: result.accuracy, loss: result.loss, stages: result.stages, stageEpochs: result.stageEpochs, seconds: seconds() };
    }
    case 'local-only': {
      const result = await localOnlyBaseline(input, context.shards, localOnlyEpochs(config), config.localOnlyClients);
      return { kind: job.kind, result, seconds: seconds() };
    }
    case 'scratch': {
      const { features } = job;
      const [scratchTrain, scratchTest] = scratchRows(features, context.train, context.test, features === 'random-embedding' ? await context.base() : null, config.seed);
      const rowSize = scratchTrain.examples.kind === 'tensor' ? scratchTrain.examples.rowSize : 0;
      const scratchBase = createIdentityBase(rowSize, { name: `scratch-${features}` });
      const scratchTrainFeatures = await featuresOf(scratchBase, scratchTrain, context.cache);
      const scratchTestFeatures = await featuresOf(scratchBase, scratchTest, context.cache);
      // Same partition, rounds and client work, run as virtual clients (identical math, no sockets).
      const run = await runFederated({
        // The same federation, head alone: the scratch features have no base layers to fine-tune.
        config: { ...config, head: scratchHead(features, config), trainable: null },
        base: scratchBase,
        baseDirectory: null,
        shards: groupByClient(context.order, scratchTrainFeatures, context.train.labels),
        testFeatures: scratchTestFeatures,
        testLabels: context.test.labels,
        mode: 'virtual',
        label: `scratch-${features}`,
        ...(context.identities ? { identities: context.identities } : {}),
        logger: log,
        onRound: (record) => log.info(`from scratch (${features}) round ${record.round}/${config.rounds} · ${record.accepted}/${record.selected} clients · test accuracy ${percent(record.serverAccuracy)} · ${record.seconds.toFixed(1)} s`),
      });
      const rounds = reportRounds(run.history);
      return { kind: job.kind, baseline: { features, description: SCRATCH_DESCRIPTIONS[features], accuracy: rounds.at(-1)?.accuracy ?? null, rounds }, seconds: seconds() };
    }
  }
}

/**
 * `jobs` longest first, so that a pool of workers ends them close together: whole federations
 * from scratch (the CNN, which trains its convolutions too, before the others), centralized
 * fine-tuning, then the head-only baselines.
 */
export function longestFirst(jobs: readonly BaselineJob[]): BaselineJob[] {
  const rank = (job: BaselineJob): number => {
    switch (job.kind) {
      case 'scratch':
        return job.features === 'cnn' ? 0 : 2;
      case 'centralized-fine-tuning':
        return 1;
      case 'local-only':
        return 3;
      case 'centralized-feature-extraction':
        return 4;
    }
  };
  return jobs.map((job, i) => ({ job, i })).sort((a, b) => rank(a.job) - rank(b.job) || a.i - b.i).map(({ job }) => job);
}

/** A job's result in one log line. */
export function baselineLine(result: BaselineJobResult): string {
  switch (result.kind) {
    case 'centralized-feature-extraction':
      return `centralized baseline (feature extraction): accuracy ${percent(result.accuracy)}`;
    case 'centralized-fine-tuning':
      return `centralized baseline (fine-tuning, epochs per stage ${result.stageEpochs.join(' + ')}): accuracy ${percent(result.accuracy)}`;
    case 'local-only':
      return `local-only baseline: mean accuracy ${percent(result.result.mean)} ± ${percent(result.result.std)} over ${result.result.clients} clients`;
    case 'scratch':
      return `from scratch (${result.baseline.features}): ${percent(result.baseline.accuracy)}`;
  }
}
