/**
 * One federated run of a simulation, through the coordinator's round loop, in one of three modes:
 *
 * - `virtual`: clients are row ranges of the feature matrix grouped by client (client-shards.ts)
 *   with keys packed in one buffer (virtual-identities.ts). Each selected client trains the shared
 *   head on its rows, seals its delta with its own key, and hands the envelope to
 *   `RoundLoop.receiveUpdate`: the same training, sealing, validation and aggregation as a
 *   deployment, minus the sockets. A client costs a few hundred bytes, so 10,000 fit in memory.
 * - `socket`: a real coordinator on a loopback port and one real `FedtlClient` per client in this
 *   process, each downloading the base, computing its own features and training over socket.io.
 * - `process`: the same coordinator, and each client a separate `fedtl client` process reading its
 *   own data file (process-clients.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { FedtlClient, type ClientOptions } from '../../client/client.ts';
import type { LabeledDataset } from '../../client/data/dataset.ts';
import { subset } from '../../client/data/dataset.ts';
import { validationSplit } from '../../client/data/split.ts';
import { clientSeed, runFitRound } from '../../client/client-round.ts';
import { LocalTrainer, type ClientTrainingOptions, type LabeledFeatures } from '../../client/local-trainer.ts';
import { RoundLoop, type Participant } from '../../server/round-loop.ts';
import type { RoundRecord } from '../../server/round-record.ts';
import { initialHeadWeights, startCoordinator, type StartCoordinatorOptions } from '../../server/start-coordinator.ts';
import { createUpdateOpener } from '../../server/update-opener.ts';
import { UpdateIngest } from '../../server/update-ingest.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import { createLogger, type Logger } from '../../shared/core/log.ts';
import { AllowList } from '../../shared/crypto/allow-list.ts';
import { encodeKey, formatPublicIdentity, generateIdentity, publicIdentity, type Identity } from '../../shared/crypto/identity.ts';
import { signText } from '../../shared/crypto/signatures.ts';
import { createRandom, type Random } from '../../shared/math/random.ts';
import type { FeatureMatrix } from '../../shared/model/feature-matrix.ts';
import type { FrozenBase } from '../../shared/model/frozen-base.ts';
import type { FlatWeights, WeightManifest } from '../../shared/weights/flat-weights.ts';
import { initialModelWeights, stageFeatureBase, TrainableTop } from '../../shared/model/fine-tune-model.ts';
import type { TrainableStage } from '../../shared/model/trainable-set.ts';
import { wantsSecAgg } from '../../client/secagg-party.ts';
import { ModelSchedule } from '../../shared/model/model-schedule.ts';
import { trainableScheduleFromConfig, type TrainableSetSpec } from '../../shared/model/trainable-set.ts';
import { StageTrainer } from '../../client/stage-trainer.ts';
import { featuresOf, simulationCache } from './simulation-data.ts';
import { buildHead, setHeadWeights } from '../../shared/model/head.ts';
import { evaluateHead } from '../../shared/model/head-training.ts';
import type { EvaluateRequest, FitRequest } from '../../shared/protocol/protocol.ts';
import { createStrategy } from '../../shared/strategy/registry.ts';
import type { Strategy } from '../../shared/strategy/strategy.ts';
import { clientOrder, clientRows, clientSize, groupByClient, type ClientShards } from './client-shards.ts';
import type { SimulationConfig, SimulationMode } from './presets.ts';
import { runProcesses } from './process-clients.ts';
import { sharedRows, sharedWeights, TrainingPool, type SealSpec } from './training-pool.ts';
import { baseSkeleton } from './base-skeleton.ts';
import { nativeIdentity, VirtualIdentities } from './virtual-identities.ts';
import { annotatePrivacy, isBudgetStop, withPrivacy } from './private-strategy.ts';
import { DifferentialPrivacy } from '../../shared/privacy/index.ts';

export interface FederatedRunInput {
  config: SimulationConfig;
  base: FrozenBase;
  baseDirectory: string | null;
  /** Virtual mode: the training features grouped by client (see client-shards.ts). */
  shards?: ClientShards;
  /** Socket and process modes: per-client example indices into `trainDataset`. */
  parts?: readonly Int32Array[];
  /** Socket and process modes: the raw training set, which those clients turn into features themselves. */
  trainDataset?: LabeledDataset;
  /** The raw test set; fine-tuning evaluates on features at each stage's boundary. */
  testDataset?: LabeledDataset;
  testFeatures: FeatureMatrix;
  testLabels: Int32Array;
  mode: SimulationMode;
  label: string;
  /** Virtual mode: the clients' identities, shared by several runs over the same clients. @default fresh ones */
  identities?: VirtualIdentities;
  onRound?: (record: RoundRecord) => void;
  logger?: Logger;
}

export interface FederatedRunResult {
  history: RoundRecord[];
  /** The model the coordinator exports (with iterate averaging, the tail average). */
  weights: Float32Array;
  seconds: number;
}

/** Server-side evaluation of a global head on the held-out test features. */
export function makeEvaluator(input: Pick<FederatedRunInput, 'testFeatures' | 'testLabels'>, head: tf.LayersModel, manifest: ReturnType<typeof initialHeadWeights>['manifest']) {
  return async (weights: Float32Array) => {
    setHeadWeights(head, { manifest, data: weights });
    const result = await evaluateHead(head, input.testFeatures, input.testLabels);
    return { loss: result.loss, accuracy: result.accuracy };
  };
}

/**
 * Server-side evaluation in a worker of `pool`: the test rows go to shared memory once, and each
 * evaluation is a job like any client's, so it leaves the coordinator's thread free and can run
 * while the next round trains. Same head, same `evaluateHead`, so the same numbers as
 * {@link makeEvaluator}.
 */
function poolEvaluator(pool: TrainingPool, input: Pick<FederatedRunInput, 'testFeatures' | 'testLabels'>) {
  const rows = sharedRows({ features: input.testFeatures, labels: input.testLabels });
  return async (weights: Float32Array) => {
    const result = await pool.evaluateRows(rows, weights);
    return { loss: result.loss, accuracy: result.accuracy };
  };
}

/** Round-loop settings of a simulated coordinator that listens on a socket (socket and process modes). */
export function coordinatorLoopOptions(input: FederatedRunInput, serverHead: tf.LayersModel, manifest: WeightManifest, strategy?: Strategy): NonNullable<StartCoordinatorOptions['loop']> {
  const { config } = input;
  // Fine-tuning: the loop's weights are the whole model, evaluated at each round's stage.
  const spec = config.trainable ?? null;
  return {
    roundTimeoutMs: config.roundTimeoutMs,
    evaluateTimeoutMs: config.roundTimeoutMs,
    waitForClientsMs: 600_000,
    ...(config.iterateAveraging ? { iterateAveraging: config.iterateAveraging } : {}),
    evaluateGlobal: spec ? stageEvaluator(input, coordinatorModelSchedule(input, spec)).evaluate : makeEvaluator(input, serverHead, manifest),
    onRound: (record: RoundRecord) => {
      if (strategy) annotatePrivacy(strategy, record);
      input.onRound?.(record);
    },
  };
}

/** The run's strategy, built from the registry with the simulation's client settings. */
/** The clients' own training options of a run, as every path that trains a client takes them. */
export function clientTraining(config: Pick<SimulationConfig, 'logitAdjustment'>): ClientTrainingOptions {
  return config.logitAdjustment !== undefined ? { logitAdjustment: config.logitAdjustment } : {};
}

export function strategyOf(config: SimulationConfig): Strategy {
  return createStrategy(
    config.strategy,
    {
      fractionFit: config.fractionFit,
      minClients: config.minClients,
      minUpdates: Math.max(1, Math.floor(config.minClients * 0.5)),
      epochs: config.epochs,
      batchSize: config.batchSize,
      learningRate: config.learningRate,
      optimizer: config.optimizer,
    },
    config.strategyParams,
  );
}

/** {@link strategyOf} with the privacy layers the config asks for (secure aggregation needs in-process keys). */
export function privateStrategyOf(config: SimulationConfig, keys?: Parameters<typeof withPrivacy>[2]): Strategy {
  return withPrivacy(config, strategyOf(config), keys);
}

/**
 * The model schedule a simulated coordinator builds for `spec` (start-coordinator.ts does the same
 * from the same base, head and seed), for the server-side evaluation of socket and process runs.
 */
function coordinatorModelSchedule(input: FederatedRunInput, spec: TrainableSetSpec): { schedule: ModelSchedule; manifest: WeightManifest } {
  const { config, base } = input;
  const manifest = initialModelWeights(base, config.head, config.seed).manifest;
  return { schedule: new ModelSchedule(base, config.head, trainableScheduleFromConfig(spec, base.model, config.rounds, 'trainable'), manifest), manifest };
}

/**
 * Server-side evaluation of the whole model at a round's stage: the stage's top on the raw test
 * set's features at that stage's boundary (computed once per boundary).
 */
function stageEvaluator(input: FederatedRunInput, model: { schedule: ModelSchedule; manifest: WeightManifest }): { evaluate: (weights: Float32Array, round: number) => Promise<{ loss: number; accuracy: number }> } {
  const { config, base, testDataset } = input;
  if (!testDataset) throw new FedtlError('BAD_CONFIG', 'a fine-tuning run evaluates on the raw test set (input.testDataset)');
  const cache = simulationCache();
  let testAt: { key: string; features: FeatureMatrix } | null = null;
  return {
    async evaluate(weights, round) {
      const top = TrainableTop.build(base, config.head, model.schedule.stageFor(round), { manifest: model.manifest, data: weights });
      try {
        if (testAt?.key !== top.featureKey) testAt = { key: top.featureKey, features: await featuresOf(top.featureBase, testDataset, cache) };
        const result = await evaluateHead(top.model, testAt.features, testDataset.labels);
        return { loss: result.loss, accuracy: result.accuracy };
      } finally {
        top.dispose();
      }
    },
  };
}

export async function runFederated(input: FederatedRunInput): Promise<FederatedRunResult> {
  switch (input.mode) {
    case 'virtual':
      return runVirtual(input);
    case 'socket':
      return runSocket(input);
    case 'process':
      return runProcesses(input);
    default:
      throw new FedtlError('BAD_CONFIG', `unknown simulation mode ${String(input.mode)}`);
  }
}

/** What a virtual client does when selected; one instance per client, methods on the prototype. */
class VirtualParticipant implements Participant {
  constructor(
    readonly clientId: string,
    readonly index: number,
    readonly federation: VirtualFederation,
  ) {}

  sendFit(request: FitRequest): void {
    this.federation.enqueueFit(this.index, request);
  }

  sendEvaluate(): void {
    // Virtual runs evaluate on the server's held-out test set (federatedEvaluation is off).
  }
}

type FitOutcome = { kind: 'sealed'; sealed: Uint8Array } | { kind: 'dropped'; reason: string } | { kind: 'failed'; message: string };

/**
 * Virtual clients on one round loop: each is an index into {@link ClientShards} and
 * {@link VirtualIdentities}, plus one small participant object. Selected clients train — in a
 * {@link TrainingPool} of worker threads when one is given, else one at a time on one shared head —
 * seal their delta with their own keys and hand it to `RoundLoop.receiveUpdate`: the deployment's
 * validation and aggregation, minus the sockets.
 */
export class VirtualFederation {
  readonly loop: RoundLoop;
  readonly identities: VirtualIdentities;
  readonly #config: SimulationConfig;
  readonly #shards: ClientShards;
  readonly #coordinator: Identity;
  readonly #trainer: LocalTrainer;
  readonly #serverHead: tf.LayersModel;
  readonly #faults: Random;
  readonly #pool: TrainingPool | null;
  /** With a pool: the coordinator's opening of updates, hosted in the pool's workers. */
  readonly #ingest: UpdateIngest | null;
  readonly #log: Logger;
  readonly #fineTuning: VirtualFineTuning | null;
  #queue: Promise<void> = Promise.resolve();
  /** Fit requests of the round being sent, not yet queued for training. */
  #batch: { index: number; request: FitRequest }[] = [];
  /** Round messages verified so far: every selected client gets the same request object, checked once. */
  readonly #verified = new WeakMap<FitRequest | EvaluateRequest, Float32Array>();
  /** Client updates trained, sealed and handed to the loop so far. */
  updates = 0;

  constructor(input: FederatedRunInput & { shards: ClientShards; pool?: TrainingPool | null }) {
    const { config, shards } = input;
    this.#config = config;
    this.#pool = input.pool ?? null;
    this.#shards = shards;
    this.#log = input.logger ?? createLogger('simulation');
    if (shards.features.cols !== input.base.embeddingSize) {
      throw new FedtlError('BAD_SHAPE', `client features have ${shards.features.cols} columns but base ${input.base.name} embeds into ${input.base.embeddingSize}`);
    }
    this.identities = input.identities ?? new VirtualIdentities(shards.count);
    if (this.identities.count !== shards.count) throw new FedtlError('BAD_CONFIG', `${this.identities.count} identities for ${shards.count} clients`);
    this.#coordinator = nativeIdentity();
    const coordinator = this.#coordinator;
    const fineTuning = config.trainable !== undefined && config.trainable !== null ? virtualFineTuning(input, config.trainable) : null;
    const initial = fineTuning ? fineTuning.model : initialHeadWeights(input.base.embeddingSize, config.head, config.seed);
    this.#fineTuning = fineTuning;
    // Fine-tuning in the pool: each worker rebuilds the base's graph once and reads the starting
    // model from shared memory; features follow once per boundary, weights once per round.
    if (fineTuning && this.#pool) this.#pool.fineTune({ base: baseSkeleton(input.base), model: fineTuning.pretrained, ...(config.augmentation ? { augmentation: config.augmentation } : {}) });
    this.#serverHead = buildHead(input.base.embeddingSize, config.head);
    this.#trainer = new LocalTrainer(buildHead(input.base.embeddingSize, config.head), initial.manifest, clientTraining(config));
    this.#faults = createRandom(`${config.seed}-faults-${input.label}`);
    const identities = this.identities;
    const indexOf = new Map(identities.clientIds.map((id, i) => [id, i]));
    // With a pool, the coordinator's opening service (verify, decrypt, check) runs in its workers
    // between their training jobs, so per-update work scales with the pool instead of queuing on
    // this thread. They only open: this thread adds the deltas in delivery order, as without a
    // pool, so the numbers do not depend on the pool size.
    const pool = this.#pool;
    this.#ingest = pool ? UpdateIngest.hosted((setup) => pool.hostIngest(setup), { identity: coordinator, resolveClient: (clientId) => identities.resolve(clientId) }) : null;
    const strategy = privateStrategyOf(config, {
      coordinator,
      identityOf: (clientId) => {
        const i = indexOf.get(clientId);
        return i === undefined ? undefined : identities.identity(i);
      },
    });
    this.loop = new RoundLoop({
      strategy,
      headSpec: config.head,
      manifest: initial.manifest,
      initialWeights: initial.data,
      baseHash: input.base.hash,
      rounds: config.rounds,
      openUpdate: createUpdateOpener(coordinator, (clientId) => identities.resolve(clientId)),
      ...(this.#ingest ? { ingest: this.#ingest, ingestFolds: false } : {}),
      sign: (text) => encodeKey(signText(text, coordinator.signing.secretKey)),
      federatedEvaluation: false,
      evaluateGlobal: fineTuning ? fineTuning.evaluate : this.#pool ? poolEvaluator(this.#pool, input) : makeEvaluator(input, this.#serverHead, initial.manifest),
      // A worker evaluates round r while the others train round r + 1; a privacy wrapper's
      // per-round record is read when the round completes, so privacy runs keep the serial order.
      overlapServerEvaluation: this.#pool !== null && !(strategy instanceof DifferentialPrivacy),
      ...(fineTuning ? { trainable: fineTuning.schedule } : {}),
      ...(config.iterateAveraging ? { iterateAveraging: config.iterateAveraging } : {}),
      roundTimeoutMs: 3_600_000,
      waitForClientsMs: 1_000,
      seed: config.seed,
      logger: { ...this.#log, info: () => undefined },
      onRound: (record: RoundRecord) => {
        annotatePrivacy(strategy, record);
        input.onRound?.(record);
      },
    });
    for (let i = 0; i < shards.count; i++) this.loop.addParticipant(new VirtualParticipant(identities.clientIds[i]!, i, this), clientSize(shards, i));
  }

  /**
   * Queues client `index`'s work for a fit request. The requests of one round arrive together (the
   * loop sends them in one go) and are taken longest first ({@link fitOrder}); with a worker pool
   * the training starts at once (as many at a time as there are workers). Either way results reach
   * the round loop in that order, which depends on the clients and the config alone, so the
   * aggregate does not depend on the pool size or on which worker finished first.
   */
  enqueueFit(index: number, request: FitRequest): void {
    this.#batch.push({ index, request });
    if (this.#batch.length === 1) queueMicrotask(() => this.#startBatch());
  }

  #startBatch(): void {
    const batch = fitOrder(this.#batch, (index) => clientSize(this.#shards, index));
    this.#batch = [];
    for (const { index, request } of batch) {
      if (this.#pool) {
        const outcome = this.#work(index, request);
        this.#queue = this.#queue.then(async () => this.#deliver(index, await outcome));
      } else {
        // One shared head in this thread: one client at a time.
        this.#queue = this.#queue.then(async () => this.#deliver(index, await this.#work(index, request)));
      }
    }
  }

  /** Faults, training and sealing of one client's round; never rejects. */
  async #work(index: number, request: FitRequest): Promise<FitOutcome> {
    const config = this.#config;
    // Keyed by round, attempt and client, never by queue position: the same draws whatever runs
    // first. (The round id also carries the loop's random run id, so only its tail is used.)
    // A drift-corrected round's gradient exchange draws what its fit draws: a client that crashes
    // does so in the first exchange, and the fit goes only to those that answered it.
    const attempt = /-r(\d+-a\d+)-(?:fit|gradient)$/.exec(request.roundId)?.[1] ?? String(request.round);
    const faults = this.#faults.fork(attempt).fork(index);
    if (faults.nextFloat() < config.dropoutRate) return { kind: 'dropped', reason: 'crashed' };
    if (faults.nextFloat() < config.stragglerRate) return { kind: 'dropped', reason: 'missed the deadline' };
    const pool = this.#pool;
    const seal = (): SealSpec => ({ roundId: request.roundId, identity: this.identities.detachedIdentity(index), coordinatorBoxKey: this.#coordinator.box.publicKey, rowSparse: !wantsSecAgg(request.config) });
    try {
      const { sealed } = await runFitRound(
        {
          identity: this.identities.identity(index),
          coordinator: { signingKey: this.#coordinator.signing.publicKey, boxKey: this.#coordinator.box.publicKey },
          // The pool's worker also seals, so per-update crypto does not queue on this thread.
          trainer: pool ? { fit: (weights, _data, fitConfig, seed = 0, control) => pool.fit(index, weights, fitConfig, seed, seal(), control), evaluate: (weights, data) => this.#trainer.evaluate(weights, data) } : this.#trainer,
          train: clientRows(this.#shards, index),
          seed: clientSeed(config.seed, index),
          verified: this.#verified,
          ...(this.#fineTuning ? { stages: pool ? this.#fineTuning.pooled(pool, index, seal) : this.#fineTuning.trainer(index) } : {}),
        },
        request,
      );
      return { kind: 'sealed', sealed };
    } catch (thrown) {
      return { kind: 'failed', message: (thrown as Error).message };
    }
  }

  async #deliver(index: number, outcome: FitOutcome): Promise<void> {
    // Let the pool's replies in first: they hand the workers their next jobs, which a run of
    // updates opened back to back on this thread would otherwise hold up.
    if (this.#pool) await new Promise<void>((resolve) => setImmediate(resolve));
    const clientId = this.identities.clientIds[index]!;
    if (outcome.kind === 'dropped') return this.loop.reportDropped(clientId, outcome.reason);
    if (outcome.kind === 'failed') {
      // A failing client must not break the chain of jobs: it is dropped from the round, loudly.
      this.#log.warn(`virtual client ${index} failed: ${outcome.message}`);
      return this.loop.reportDropped(clientId, 'failed');
    }
    this.updates++;
    // Not awaited: the next delivery need not wait for this one's opening (the loop adds opened
    // deltas in submission order, and the round settles once every submission was answered).
    void Promise.resolve(this.loop.ingestUpdate(clientId, outcome.sealed)).then((ack) => {
      if (!ack.ok) this.#log.warn(`virtual client ${index}: update rejected: ${ack.code}: ${ack.message}`);
    });
  }

  async run(): Promise<FederatedRunResult> {
    const started = Date.now();
    try {
      await this.loop.run();
    } catch (error) {
      // The privacy budget ends the run early with the model it has; anything else is a failure.
      if (!isBudgetStop(error)) throw error;
      this.#log.warn(error.message);
    }
    return { history: [...this.loop.history], weights: this.loop.bestWeights, seconds: (Date.now() - started) / 1000 };
  }

  dispose(): void {
    this.loop.stop();
    void this.#ingest?.close();
    this.#serverHead.dispose();
    this.#trainer.head.dispose();
  }
}

/**
 * The order a round's fit requests are trained and delivered in: most optimizer steps first
 * (epochs × batches), then most rows, then the order the loop sent them (a stable sort). Longest
 * first keeps a pool's workers finishing together (longest-processing-time-first scheduling,
 * Graham 1969, "Bounds on multiprocessing timing anomalies"); under a Dirichlet split client sizes
 * differ by orders of magnitude. It depends on the clients and their configs only, never on the
 * pool, so the aggregate's summation order is the same whatever the pool size.
 */
export function fitOrder<T extends { index: number; request: Pick<FitRequest, 'config'> }>(batch: readonly T[], rowsOf: (index: number) => number): T[] {
  const keyed = batch.map((item) => {
    const rows = rowsOf(item.index);
    const { epochs, batchSize } = item.request.config;
    return { item, rows, steps: epochs * Math.ceil(rows / Math.max(1, batchSize)) };
  });
  keyed.sort((a, b) => b.steps - a.steps || b.rows - a.rows);
  return keyed.map((k) => k.item);
}

/** A pool of `workers` training threads for the virtual clients of `input`. */
export async function startTrainingPool(input: Pick<FederatedRunInput, 'config' | 'base'>, shards: ClientShards, workers: number): Promise<TrainingPool> {
  const manifest = initialHeadWeights(input.base.embeddingSize, input.config.head, input.config.seed).manifest;
  return TrainingPool.start({ workers, inputSize: input.base.embeddingSize, headSpec: input.config.head, manifest, training: clientTraining(input.config), shards });
}

/** Virtual clients' fine-tuning: the coordinator's model schedule, features per boundary, the server-side evaluation. */
interface VirtualFineTuning {
  model: FlatWeights;
  /** The starting model in shared memory: what the clients' tops keep in the layers they do not train. */
  pretrained: FlatWeights;
  schedule: ModelSchedule;
  trainer(index: number): StageTrainer;
  /**
   * Client `index`'s stage training in `pool`: the same as {@link trainer}'s, in a worker. The
   * clients' features at a stage's boundary are computed here once and shared with the workers
   * before the first job that needs them.
   */
  pooled(pool: TrainingPool, index: number, seal: () => SealSpec): Pick<StageTrainer, 'fit' | 'evaluate'>;
  evaluate(weights: Float32Array, round: number): Promise<{ loss: number; accuracy: number }>;
}

function virtualFineTuning(input: FederatedRunInput, spec: TrainableSetSpec): VirtualFineTuning {
  const { config, base, parts, trainDataset } = input;
  if (!parts || !trainDataset || !input.testDataset) throw new FedtlError('BAD_CONFIG', 'fine-tuning virtual clients needs the raw training and test sets and the partition (input.parts, trainDataset, testDataset)');
  const schedule = trainableScheduleFromConfig(spec, base.model, config.rounds, 'trainable');
  const model = initialModelWeights(base, config.head, config.seed);
  const modelSchedule = new ModelSchedule(base, config.head, schedule, model.manifest);
  // In shared memory: a training pool's workers read it too (an embedding table is most of it).
  const pretrained = sharedWeights(model);
  const cache = simulationCache();
  const order = clientOrder(parts);
  // Features at each boundary, computed once for every client together and grouped by client.
  const shardsByKey = new Map<string, Promise<ClientShards>>();
  const shardsAt = (featureBase: FrozenBase): Promise<ClientShards> => {
    let shards = shardsByKey.get(featureBase.hash);
    if (!shards) {
      shards = featuresOf(featureBase, trainDataset, cache).then((features) => groupByClient(order, features, trainDataset.labels));
      shardsByKey.set(featureBase.hash, shards);
    }
    return shards;
  };
  const trainers = new Map<number, StageTrainer>();
  const { evaluate } = stageEvaluator(input, { schedule: modelSchedule, manifest: model.manifest });
  // Per stage: the key of its boundary's features and the clients' features there, once.
  const stageShards = new Map<number, Promise<{ key: string; shards: ClientShards }>>();
  const shardsOfStage = (stage: TrainableStage) => {
    let found = stageShards.get(stage.index);
    if (!found) {
      const featureBase = stageFeatureBase(base, stage);
      found = shardsAt(featureBase).then((shards) => ({ key: featureBase.hash, shards }));
      stageShards.set(stage.index, found);
    }
    return found;
  };
  return {
    model,
    pretrained,
    schedule: modelSchedule,
    pooled(pool, index, seal) {
      return {
        async fit(stage, weights, fitConfig, seed, control) {
          const { key, shards } = await shardsOfStage(stage);
          pool.shareStageFeatures(key, shards);
          return pool.fitStage(index, stage, weights, fitConfig, seed, seal(), control);
        },
        // Virtual clients keep no validation rows (the server evaluates), as their stage trainers in this thread.
        evaluate: async () => null,
      };
    },
    trainer(index) {
      let trainer = trainers.get(index);
      if (!trainer) {
        trainer = new StageTrainer({
          base,
          headSpec: config.head,
          model: pretrained,
          features: async (featureBase) => ({ train: clientRows(await shardsAt(featureBase), index), validation: null }),
          ...(config.augmentation ? { augmentation: config.augmentation } : {}),
          ...clientTraining(config),
        });
        trainers.set(index, trainer);
      }
      return trainer;
    },
    evaluate,
  };
}

async function runVirtual(input: FederatedRunInput): Promise<FederatedRunResult> {
  const { shards } = input;
  if (!shards) throw new FedtlError('BAD_CONFIG', 'virtual mode needs the training features grouped by client (input.shards)');
  const workers = input.config.trainingWorkers;
  const pool = workers > 0 ? await startTrainingPool(input, shards, workers) : null;
  // Built inside the try: a constructor that throws must still close the pool's worker threads.
  let federation: VirtualFederation | null = null;
  try {
    federation = new VirtualFederation({ ...input, shards, pool });
    return await federation.run();
  } finally {
    federation?.dispose();
    await pool?.close();
  }
}

async function runSocket(input: FederatedRunInput): Promise<FederatedRunResult> {
  const { config, parts } = input;
  const dataset = input.trainDataset;
  if (!dataset || !parts) throw new FedtlError('BAD_CONFIG', 'socket mode needs the raw training set and the partition (input.trainDataset, input.parts)');
  const started = Date.now();
  const cacheDir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-sim-'));
  const coordinatorIdentity = generateIdentity();
  const identities = parts.map(() => generateIdentity());
  const allowList = AllowList.fromText(identities.map((id, i) => `${formatPublicIdentity(publicIdentity(id))} sim-client-${i}`).join('\n'));
  const initial = initialHeadWeights(input.base.embeddingSize, config.head, config.seed);
  const serverHead = buildHead(input.base.embeddingSize, config.head);
  const quiet = { ...createLogger('coordinator'), info: () => undefined };
  const strategy = privateStrategyOf(config, { socketCoordinator: coordinatorIdentity });
  const coordinator = await startCoordinator({
    identity: coordinatorIdentity,
    allowList,
    base: input.base,
    baseDirectory: input.baseDirectory,
    headSpec: config.head,
    strategy,
    rounds: config.rounds,
    seed: config.seed,
    ...(config.trainable ? { trainable: config.trainable } : {}),
    logger: quiet,
    ...(config.dashboard ? { dashboard: true } : {}),
    loop: coordinatorLoopOptions(input, serverHead, initial.manifest, strategy),
  });
  if (coordinator.dashboardUrl) (input.logger ?? createLogger('simulation')).info(`dashboard: ${coordinator.dashboardUrl}`);
  const pub = publicIdentity(coordinatorIdentity);
  const fit = await socketClientTraining(input);
  const clients = parts.map((indices, i) => {
    const own = subset(dataset, indices, { name: `client-${i}` });
    // With a validation fraction, each client keeps a slice of its own data for federated evaluation.
    const seed = clientSeed(config.seed, i);
    const split = validationSplit(own.labels, own.classNames.length, config.validationFraction, seed);
    return new FedtlClient({
      url: coordinator.url,
      coordinator: { signingKey: pub.signingKey, boxKey: pub.boxKey },
      identity: identities[i]!,
      data: split ? { train: subset(own, split.train), validation: subset(own, split.test) } : { train: own },
      // Each client its own cache, as on separate machines: each downloads and verifies the base.
      cacheDir: path.join(cacheDir, `client-${i}`),
      seed,
      ...(config.augmentation ? { augmentation: config.augmentation } : {}),
      ...clientTraining(config),
      faults: { dropRate: config.dropoutRate, seed: config.seed + i },
      ...(fit ? { fit: fit.train } : {}),
      logger: { ...createLogger(`client-${i}`), info: () => undefined },
    }).start();
  });
  try {
    try {
      await coordinator.run();
    } catch (error) {
      if (!isBudgetStop(error)) throw error;
      (input.logger ?? quiet).warn(error.message);
    }
    return { history: [...coordinator.loop.history], weights: coordinator.loop.bestWeights, seconds: (Date.now() - started) / 1000 };
  } finally {
    for (const client of clients) client.close();
    await coordinator.close();
    await fit?.pool.close();
    serverHead.dispose();
    await rm(cacheDir, { recursive: true, force: true });
  }
}

/**
 * Socket clients share this process with their coordinator: with `trainingWorkers` > 0 they train
 * in a pool of worker threads, so a client's training never blocks the coordinator's event loop
 * (heartbeats, deadlines, other clients' messages). Each client's rows are copied into shared
 * memory once; a job then carries only the weights. Same trainer, weights, rows and seed as in
 * this thread, so the same deltas. Null with `trainingWorkers` 0 or when fine-tuning: clients
 * train in this thread.
 */
async function socketClientTraining(input: FederatedRunInput): Promise<{ pool: TrainingPool; train: NonNullable<ClientOptions['fit']> } | null> {
  const { config, base } = input;
  // Fine-tuning rounds train through each client's stage trainer, in its own thread: no pool then.
  const fineTuning = config.trainable !== undefined && config.trainable !== null;
  const workers = fineTuning ? 0 : Math.min(config.trainingWorkers, input.parts?.length ?? 0);
  if (workers === 0) return null;
  const manifest = initialHeadWeights(base.embeddingSize, config.head, config.seed).manifest;
  const pool = await TrainingPool.start({ workers, inputSize: base.embeddingSize, headSpec: config.head, manifest, training: clientTraining(config) });
  const shared = new WeakMap<LabeledFeatures, LabeledFeatures>();
  const train: NonNullable<ClientOptions['fit']> = (weights, rows, fitConfig, seed = 0, control) => {
    let own = shared.get(rows);
    if (!own) shared.set(rows, (own = sharedRows(rows)));
    // A copy: the weights may be a view on a larger network buffer, which a message would clone whole.
    return pool.fitRows(own, weights.slice(), fitConfig, seed, control?.slice());
  };
  return { pool, train };
}
