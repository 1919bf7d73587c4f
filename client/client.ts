/**
 * A fedtl client (a hospital, an edge device): connects to a pinned coordinator, downloads and
 * verifies the frozen base once, computes its data's base features once, then for every round it is
 * selected in trains the head locally and sends back only a sealed delta. Its data never leaves
 * the process; only counts and metrics do.
 */
import path from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { FedtlError, isErrorCode, toFedtlError, type ErrorCode } from '../shared/core/errors.ts';
import { createLogger, type Logger } from '../shared/core/log.ts';
import { createIdentityBase } from '../shared/bases/identity.ts';
import { decodeKey, encodeKey, publicIdentity, type Identity } from '../shared/crypto/identity.ts';
import { createHello, signEvaluation, signReady } from '../shared/crypto/hello.ts';
import { createRandom } from '../shared/math/random.ts';
import { FeatureCache } from '../shared/model/feature-cache.ts';
import type { FrozenBase } from '../shared/model/frozen-base.ts';
import { buildHead } from '../shared/model/head.ts';
import { loadBase } from '../shared/model/base-loader.ts';
import {
  PROTOCOL_VERSION,
  parseAck,
  parseEvaluateRequest,
  parseFitRequest,
  parseWelcome,
  sameNames,
  welcomeSignedText,
  type BaseReadReply,
  type ClientToServerEvents,
  type EvaluateRequest,
  type FinishedNotice,
  type FitRequest,
  type Hello,
  type ServerToClientEvents,
  type Welcome,
} from '../shared/protocol/protocol.ts';
import { DownloadProgress } from './download-progress.ts';
import { ensureBase } from './base-cache.ts';
import { HeldWeights, runEvaluateRound, runFitRound, verifyCoordinatorSignature, verifyRoundRequest, type ClientRoundContext } from './client-round.ts';
import type { LabeledDataset } from './data/dataset.ts';
import { computeFeatures } from './features.ts';
import { LocalTrainer, type LabeledFeatures } from './local-trainer.ts';
import { StageTrainer } from './stage-trainer.ts';
import { SecAggParty, wantsSecAgg } from './secagg-party.ts';
import { parseSecAggDown } from '../shared/protocol/secagg-messages.ts';
import { ineffectiveAugmentation, type AugmentationSpec } from '../shared/model/augmentation.ts';
import type { TrainableStage } from '../shared/model/trainable-set.ts';
import { driftInstruction } from '../shared/strategy/drift-correction.ts';
import { initialModelWeights } from '../shared/model/fine-tune-model.ts';

export interface ClientData {
  train: LabeledDataset;
  /** Local validation split for federated evaluation. @default none (the client does not evaluate) */
  validation?: LabeledDataset;
}

/** What the coordinator says about the federation's data, passed to a data loader. */
export interface FederationDataSpec {
  /** The federation's class names in label order, when the coordinator has them. */
  classNames?: readonly string[];
  /** Feature columns in model order (CSV data), when the coordinator has them. */
  featureColumns?: readonly string[];
}

/** What a client did in a round, for progress output and tests. */
export interface ClientRoundEvent {
  roundId: string;
  round: number;
  exampleCount: number;
  delta: Float32Array;
  loss: number;
  accuracy: number;
  accepted: boolean;
  error?: { code: ErrorCode; message: string };
}

export interface ClientOptions {
  /** Coordinator URL, e.g. `http://127.0.0.1:7070`. */
  url: string;
  /** The coordinator's public keys (base64), pinned: a server without them is refused. */
  coordinator: { signingKey: string; boxKey: string };
  identity: Identity;
  /** Augmentation of this client's data in fine-tuning rounds whose features are the raw input. @default none */
  augmentation?: AugmentationSpec;
  /** Logit adjustment τ of this client's local training by its own label prior (`TrainOptions.logitAdjustment`). @default 0 (off) */
  logitAdjustment?: number;
  /**
   * The client's private data, or a function that loads it once the base is known (an image folder
   * is decoded at the base's input size, which the coordinator announces).
   */
  data: ClientData | ((base: FrozenBase, federation: FederationDataSpec) => Promise<ClientData>);
  /** Directory of the base download and feature caches. */
  cacheDir: string;
  /** Seed of local shuffles. @default 0 */
  seed?: number;
  /** Reconnection backoff, in ms. @default { min: 500, max: 10000 } */
  backoff?: { min: number; max: number };
  /**
   * PEM certificate(s) to trust for an `https://` coordinator URL, e.g. the coordinator's own
   * self-signed certificate or a private CA. @default the system's CA store
   */
  ca?: string;
  onRound?: (event: ClientRoundEvent) => void;
  /**
   * Client-side counterpart of a strategy wrapper: transforms the trained delta before it is
   * sealed (see `ClientRoundContext.transformDelta`). @default none
   */
  transformDelta?: ClientRoundContext['transformDelta'];
  /**
   * Trains the head somewhere other than this thread, e.g. in a worker thread when a simulation
   * runs its clients in the coordinator's process, so training does not block the coordinator's
   * event loop. Given the round's weights, this client's training rows, config and seed, it returns
   * what `LocalTrainer.fit` returns. Evaluation and fine-tuning stages still run in this thread.
   * @default this client's own head, in this thread
   */
  fit?: ClientRoundContext['trainer']['fit'];
  /**
   * Injected faults, for simulations: with probability `dropRate` per fit request the client
   * "crashes" (drops its connection without answering) and reconnects shortly after.
   * @default none
   */
  faults?: { dropRate: number; seed: number };
  logger?: Logger;
}

type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** Refusals that retrying cannot fix. */
const FATAL_CODES: ReadonlySet<ErrorCode> = new Set(['UNKNOWN_CLIENT', 'REVOKED_CLIENT', 'BAD_SIGNATURE', 'PROTOCOL_VERSION', 'HASH_MISMATCH', 'BAD_DATA', 'BAD_CONFIG', 'CLOCK_SKEW']);

interface Prepared {
  baseHash: string;
  base: FrozenBase;
  trainer: LocalTrainer;
  train: LabeledFeatures;
  validation: LabeledFeatures | null;
  /** Reported in `ready` so the coordinator can refuse data that means something else. */
  classNames: string[];
  featureColumns: string[] | undefined;
  /** Fine-tuning rounds' trainer, made on the first round that names a stage. */
  stages: () => StageTrainer;
}

export class FedtlClient {
  readonly #options: ClientOptions;
  readonly #log: Logger;
  readonly #socket: ClientSocket;
  readonly #featureCache: FeatureCache;
  readonly #coordinatorSigningKey: Uint8Array;
  #welcome: Welcome | null = null;
  #prepared: Promise<Prepared> | null = null;
  /** Stages whose effect on `--augment` this client already reported. */
  readonly #augmentationNoted = new Set<number>();
  /** Secure aggregation state: the held delta of the last secure fit round. */
  #secagg: SecAggParty | null = null;
  /** Work on the head runs one job at a time: fit and evaluate share one model. */
  #queue: Promise<void> = Promise.resolve();
  #helloNonce = '';
  /** Refusals since the last welcome, for the retry delay. */
  #refusals = 0;
  /** Round messages already verified (a fit request is checked before the fault draw and again in its round). */
  readonly #verified = new WeakMap<FitRequest | EvaluateRequest, Float32Array>();
  /** The last global weights verified: a round message may refer to them instead of carrying them again. */
  readonly #held = new HeldWeights();
  readonly #faultRandom: (() => number) | null;
  #closed = false;
  #lastConnectError: string | null = null;
  readonly #done: Promise<FinishedNotice>;
  #resolveDone!: (notice: FinishedNotice) => void;
  #rejectDone!: (error: FedtlError) => void;

  constructor(options: ClientOptions) {
    this.#options = options;
    this.#log = options.logger ?? createLogger(`client:${publicIdentity(options.identity).clientId.slice(0, 8)}`);
    this.#coordinatorSigningKey = decodeKey(options.coordinator.signingKey, 'the signing key of --coordinator-key');
    decodeKey(options.coordinator.boxKey, 'the box key of --coordinator-key');
    const faultStream = options.faults ? createRandom(`faults-${options.faults.seed}`) : null;
    this.#faultRandom = faultStream ? () => faultStream.nextFloat() : null;
    this.#featureCache = new FeatureCache({ directory: path.join(options.cacheDir, 'features') });
    this.#done = new Promise((resolve, reject) => {
      this.#resolveDone = resolve;
      this.#rejectDone = reject;
    });
    // Swallow the rejection here; callers observe it through `done`.
    this.#done.catch(() => undefined);
    const backoff = options.backoff ?? { min: 500, max: 10_000 };
    this.#socket = io(options.url, {
      transports: ['websocket'],
      reconnection: true,
      reconnectionDelay: backoff.min,
      reconnectionDelayMax: backoff.max,
      randomizationFactor: 0.5,
      // A function, so every (re)connection signs a fresh hello with a new nonce and timestamp.
      auth: (send: (auth: object) => void) => send(this.#hello()),
      autoConnect: false,
      ...(options.ca !== undefined ? { ca: options.ca } : {}),
    });
    this.#wire();
  }

  /** Connects and takes part until the coordinator finishes or a fatal refusal. */
  start(): this {
    this.#socket.connect();
    return this;
  }

  /** Resolves when the coordinator announces the end of the run; rejects on a fatal refusal. */
  get done(): Promise<FinishedNotice> {
    return this.#done;
  }

  get connected(): boolean {
    return this.#socket.connected;
  }

  /** Base features computed by this client so far (once per example unless the cache is cleared). */
  get baseRuns(): number {
    return this.#featureCache.baseRuns;
  }

  close(): void {
    this.#closed = true;
    this.#socket.disconnect();
    // Once: closing twice (e.g. after a failure, then at shutdown) must not dispose the head twice.
    const prepared = this.#prepared;
    this.#prepared = null;
    void prepared?.then((p) => p.trainer.head.dispose(), () => undefined);
  }

  #hello(): Hello {
    // Signed over the session id the coordinator gave this connection: good for this connection only.
    const hello = createHello(this.#options.identity, this.#options.coordinator.signingKey, this.#socket.io.engine.id);
    // The welcome is signed over this nonce: remember it to check the coordinator's answer.
    this.#helloNonce = hello.nonce;
    return hello;
  }

  /** min × 2^refusals, at most max, times a random factor in [0.5, 1.5) so refused clients do not retry in step. */
  #refusalDelay(): number {
    const backoff = this.#options.backoff ?? { min: 500, max: 10_000 };
    const base = Math.min(backoff.max, backoff.min * 2 ** this.#refusals++);
    return base * (0.5 + Math.random());
  }

  /** `ready` and `evaluation` are signed for the coordinator and this connection's hello. */
  #binding(): { coordinatorSigningKey: string; helloNonce: string } {
    return { coordinatorSigningKey: this.#options.coordinator.signingKey, helloNonce: this.#helloNonce };
  }

  #fail(error: FedtlError): void {
    this.#log.error(`${error.code}: ${error.message}`);
    this.#closed = true;
    this.#socket.disconnect();
    this.#rejectDone(error);
  }

  #wire(): void {
    const socket = this.#socket;
    socket.on('connect_error', (err: Error & { data?: { code?: unknown } }) => {
      const code = err.data?.code;
      if (isErrorCode(code) && FATAL_CODES.has(code)) {
        this.#fail(new FedtlError(code, `coordinator refused the connection: ${err.message}`));
        return;
      }
      // A refusal by the coordinator (a code: too many connections, admission timeout, rate
      // limited) ends socket.io's own reconnection; retry it here with a growing, jittered delay.
      const refused = isErrorCode(code);
      const delay = refused ? this.#refusalDelay() : 0;
      const retry = `retrying${refused ? ` in ${Math.round(delay)} ms` : ' until it answers'}`;
      // Once per distinct problem: a coordinator that is not up yet should not flood the terminal.
      if (this.#lastConnectError !== err.message) this.#log.warn(`cannot connect to ${this.#options.url} (${err.message}); ${retry}`);
      else this.#log.debug(`cannot connect to ${this.#options.url} (${err.message}); ${retry}`);
      this.#lastConnectError = err.message;
      if (refused) setTimeout(() => !this.#closed && !socket.connected && socket.connect(), delay);
    });
    socket.on('connect', () => {
      this.#lastConnectError = null;
    });
    socket.on('welcome', () => {
      this.#refusals = 0;
    });
    socket.on('disconnect', (reason) => {
      if (this.#closed) return;
      this.#log.warn(`disconnected (${reason}); reconnecting`);
      // socket.io does not reconnect by itself after a server-side disconnect.
      if (reason === 'io server disconnect') setTimeout(() => !this.#closed && socket.connect(), this.#options.backoff?.min ?? 500);
    });
    socket.on('welcome', (message: unknown) => {
      void this.#onWelcome(message);
    });
    socket.on('fit', (message: unknown) => this.#enqueue(() => this.#onFit(message)));
    socket.on('evaluate', (message: unknown) => this.#enqueue(() => this.#onEvaluate(message)));
    socket.on('secagg', (message: unknown) => this.#enqueue(() => this.#onSecAgg(message)));
    socket.on('finished', (notice: FinishedNotice) => {
      this.#log.info(`coordinator finished: ${notice.reason}`);
      this.#closed = true;
      socket.disconnect();
      this.#resolveDone(notice);
    });
    socket.on('problem', (problem) => this.#log.warn(`coordinator reports ${problem.code}: ${problem.message}`));
  }

  #enqueue(job: () => Promise<void>): void {
    this.#queue = this.#queue.then(job).catch((thrown: unknown) => {
      // A reply cut off because this client was closed (or the run finished) is the shutdown itself, not a problem.
      if (this.#closed) return;
      const error = toFedtlError(thrown);
      if (FATAL_CODES.has(error.code)) this.#fail(error);
      else this.#log.warn(`${error.code}: ${error.message}`);
    });
  }

  async #onWelcome(message: unknown): Promise<void> {
    try {
      const welcome = parseWelcome(message);
      const signingKey = encodeKey(this.#options.identity.signing.publicKey);
      verifyCoordinatorSignature(welcomeSignedText(signingKey, this.#helloNonce, welcome.base), welcome.signature, this.#coordinatorSigningKey);
      if (this.#welcome && this.#welcome.base.hash !== welcome.base.hash) throw new FedtlError('HASH_MISMATCH', 'the coordinator changed its base mid-run; restart the client');
      this.#welcome = welcome;
      this.#prepared ??= this.#prepare(welcome);
      const prepared = await this.#prepared;
      const reply = parseAck(
        await this.#socket.timeout(30_000).emitWithAck(
          'ready',
          signReady(this.#options.identity, this.#binding(), {
            baseHash: prepared.baseHash,
            examples: prepared.train.features.rows,
            validationExamples: prepared.validation?.features.rows ?? 0,
            classNames: prepared.classNames,
            ...(prepared.featureColumns ? { featureColumns: prepared.featureColumns } : {}),
          }),
        ),
      );
      if (!reply.ok) throw new FedtlError(reply.code, `coordinator refused ready: ${reply.message}`);
      this.#log.info(`ready: ${prepared.train.features.rows} training examples, base ${welcome.base.name}`);
    } catch (thrown) {
      const error = toFedtlError(thrown);
      if (FATAL_CODES.has(error.code)) this.#fail(error);
      else this.#log.warn(`handshake step failed (${error.code}: ${error.message}); will retry on reconnect`);
      // Drop a failed preparation so the next welcome tries again.
      const attempt = this.#prepared;
      if (attempt) await attempt.catch(() => {
        if (this.#prepared === attempt) this.#prepared = null;
      });
    }
  }

  async #prepare(welcome: Welcome): Promise<Prepared> {
    const descriptor = welcome.base;
    let base: FrozenBase;
    if (descriptor.files.length === 0) {
      base = createIdentityBase(descriptor.identitySize!, { name: descriptor.name });
    } else {
      const progress = new DownloadProgress();
      const directory = await ensureBase(path.join(this.#options.cacheDir, 'bases'), descriptor, (file, offset, length) => this.#readChunk(descriptor.hash, file, offset, length), {
        chunkBytes: welcome.limits.chunkBytes,
        // Attachments socket.io decoded from the wire: this client holds no other reference.
        ownsChunks: true,
        onProgress: (done, total) => {
          // At most one line per tenth of the download, each with its true share (download-progress.ts).
          const line = progress.update(done, total);
          if (line) this.#log.info(line);
        },
      });
      base = await loadBase(directory);
    }
    if (base.hash !== descriptor.hash) {
      base.dispose();
      throw new FedtlError('HASH_MISMATCH', `base ${descriptor.name} hashes to ${base.hash.slice(0, 12)}, the coordinator announced ${descriptor.hash.slice(0, 12)}`);
    }
    const head = buildHead(base.embeddingSize, welcome.headSpec);
    const training = this.#options.logitAdjustment !== undefined ? { logitAdjustment: this.#options.logitAdjustment } : {};
    const trainer = new LocalTrainer(head, welcome.manifest, training);
    const features = async (dataset: LabeledDataset, featureBase: FrozenBase = base): Promise<LabeledFeatures> => {
      if (dataset.classNames.length > welcome.headSpec.classes) {
        throw new FedtlError('BAD_DATA', `${dataset.name} has ${dataset.classNames.length} classes; the federation's head has ${welcome.headSpec.classes}`);
      }
      return {
        features: await computeFeatures(featureBase, dataset, {
          cache: this.#featureCache,
          onProgress: (done, total) => {
            if (done === total) this.#log.info(`features of ${dataset.name}: ${total} examples`);
          },
        }),
        labels: dataset.labels,
      };
    };
    const federation: FederationDataSpec = {
      ...(welcome.classNames ? { classNames: welcome.classNames } : {}),
      ...(welcome.featureColumns ? { featureColumns: welcome.featureColumns } : {}),
    };
    const data = typeof this.#options.data === 'function' ? await this.#options.data(base, federation) : this.#options.data;
    // Checked here too (the coordinator checks again at ready), so a mismatch fails before any feature is computed.
    if (welcome.classNames && !sameNames(data.train.classNames, welcome.classNames)) {
      throw new FedtlError('BAD_DATA', `class names differ: this client numbers its labels [${data.train.classNames.join(', ')}], the federation [${welcome.classNames.join(', ')}]; use --class-names ${welcome.classNames.join(',')}`);
    }
    const columns = data.train.examples.kind === 'tensor' ? data.train.examples.columns : undefined;
    if (welcome.featureColumns && columns && !sameNames(columns, welcome.featureColumns)) {
      throw new FedtlError('BAD_DATA', `feature columns differ: this client's data has [${columns.join(', ')}], the federation's [${welcome.featureColumns.join(', ')}]`);
    }
    const train = await features(data.train);
    const validation = data.validation ? await features(data.validation) : null;
    let stages: StageTrainer | null = null;
    const makeStages = (): StageTrainer =>
      (stages ??= new StageTrainer({
        base,
        headSpec: welcome.headSpec,
        model: initialModelWeights(base, welcome.headSpec, 0),
        // Features at a stage's boundary, cached on disk by boundary like the base's own.
        features: async (featureBase) => ({
          train: await features(data.train, featureBase),
          validation: data.validation ? await features(data.validation, featureBase) : null,
        }),
        ...(this.#options.augmentation ? { augmentation: this.#options.augmentation } : {}),
        ...training,
      }));
    return { baseHash: base.hash, base, trainer, train, validation, stages: makeStages, classNames: data.train.classNames, featureColumns: columns };
  }

  async #readChunk(hash: string, file: string, offset: number, length: number): Promise<Uint8Array> {
    const reply = (await this.#socket.timeout(60_000).emitWithAck('base:read', { hash, file, offset, length })) as BaseReadReply;
    if (!reply.ok) throw new FedtlError(reply.code, `base download: ${reply.message}`);
    return reply.bytes instanceof Uint8Array ? reply.bytes : new Uint8Array(reply.bytes as ArrayBuffer);
  }

  /** The request's round context: the prepared data and trainer, this client's keys and the coordinator's limits. */
  async #context(): Promise<{ welcome: Welcome; context: ClientRoundContext } | null> {
    const welcome = this.#welcome;
    if (!welcome || !this.#prepared) return null;
    const prepared = await this.#prepared;
    const context: ClientRoundContext = {
      identity: this.#options.identity,
      coordinator: { signingKey: this.#coordinatorSigningKey, boxKey: this.#options.coordinator.boxKey },
      trainer: this.#options.fit ? { fit: this.#options.fit, evaluate: (weights, data) => prepared.trainer.evaluate(weights, data) } : prepared.trainer,
      train: prepared.train,
      validation: prepared.validation,
      get stages() {
        return prepared.stages();
      },
      seed: this.#options.seed ?? 0,
      maxUpdateBytes: welcome.limits.maxUpdateBytes,
      verified: this.#verified,
      held: this.#held,
      ...(this.#options.transformDelta ? { transformDelta: this.#options.transformDelta } : {}),
    };
    return { welcome, context };
  }

  /** Time to wait for the coordinator's acknowledgement: until a little after the round's deadline. */
  #ackTimeout(deadline: number): number {
    return Math.max(5_000, deadline - Date.now() + 5_000);
  }

  /** Says once per stage when this client's `--augment` does nothing in it (the stage does not train from the raw input). */
  async #noteAugmentation(stage: TrainableStage): Promise<void> {
    if (this.#augmentationNoted.has(stage.index) || !this.#prepared) return;
    this.#augmentationNoted.add(stage.index);
    const { base } = await this.#prepared;
    const ignored = ineffectiveAugmentation(base.input, this.#options.augmentation ?? {}, base.model, { stages: [stage] });
    if (ignored) this.#log.warn(`round stage ${stage.index}: ${ignored.replace('no stage of the trainable set does', 'this stage does not')}`);
  }

  async #onFit(message: unknown): Promise<void> {
    const round = await this.#context();
    if (!round) throw new FedtlError('STALE_ROUND', 'fit request before the handshake completed');
    const request = parseFitRequest(message, round.welcome.limits.maxMessageBytes);
    if (!(await this.#verifyOrAsk(round.context, request))) return;
    if (this.#faultRandom && this.#faultRandom() < (this.#options.faults?.dropRate ?? 0)) {
      this.#log.info(`round ${request.round}: injected crash; reconnecting`);
      this.#socket.disconnect();
      setTimeout(() => !this.#closed && this.#socket.connect(), 100);
      return;
    }
    let context = round.context;
    if (wantsSecAgg(request.config)) {
      // Secure aggregation: the update carries a zero delta; the real one is masked in the steps that follow.
      const party = (this.#secagg ??= new SecAggParty(this.#options.identity, {
        signingKey: decodeKey(this.#options.coordinator.signingKey, 'the signing key of --coordinator-key'),
        boxKey: decodeKey(this.#options.coordinator.boxKey, 'the box key of --coordinator-key'),
      }));
      const user = context.transformDelta;
      context = { ...context, transformDelta: (delta, req) => party.hold(user ? user(delta, req) : delta, req.config) };
    }
    if (request.trainable && this.#options.augmentation) await this.#noteAugmentation(request.trainable);
    const result = await runFitRound(context, request);
    this.#secagg?.setExamples(result.exampleCount);
    const reply = parseAck(await this.#socket.timeout(this.#ackTimeout(request.deadline)).emitWithAck('update', result.sealed));
    const event: ClientRoundEvent = { roundId: request.roundId, round: request.round, exampleCount: result.exampleCount, delta: result.delta, ...result.metrics, accepted: reply.ok };
    if (!reply.ok) {
      event.error = { code: reply.code, message: reply.message };
      this.#log.warn(`round ${request.round}: update rejected: ${reply.code}: ${reply.message}`);
    } else {
      // A drift-corrected round's first exchange sends the gradient at the round's model, not a trained delta.
      const sent = driftInstruction(request.config)?.kind === 'gradient' ? 'gradient' : 'update';
      this.#log.info(`round ${request.round}: sent ${sent} (${result.exampleCount} examples, loss ${result.metrics.loss.toFixed(4)}, accuracy ${result.metrics.accuracy.toFixed(3)})`);
    }
    this.#options.onRound?.(event);
  }

  /**
   * Verifies a round message. One that refers to weights this client does not hold is refused
   * with `weights:missing`, which the coordinator answers by sending the message again in full;
   * returns false then.
   */
  async #verifyOrAsk(context: ClientRoundContext, request: FitRequest | EvaluateRequest): Promise<boolean> {
    try {
      verifyRoundRequest(context, request);
      return true;
    } catch (thrown) {
      if (!(thrown instanceof FedtlError && thrown.code === 'WEIGHTS_NOT_HELD' && request.weightsDigest)) throw thrown;
      this.#log.info(`${thrown.message}; asking for them in full`);
      const reply = parseAck(await this.#socket.timeout(this.#ackTimeout(request.deadline)).emitWithAck('weights:missing', { roundId: request.roundId, weightsDigest: request.weightsDigest }));
      if (!reply.ok) this.#log.warn(`round ${request.round}: weights:missing refused: ${reply.code}: ${reply.message}`);
      return false;
    }
  }

  async #onSecAgg(message: unknown): Promise<void> {
    const welcome = this.#welcome;
    if (!welcome || !this.#secagg) throw new FedtlError('STALE_ROUND', 'secure-aggregation step before any secure fit round');
    const down = parseSecAggDown(message, welcome.limits.maxMessageBytes);
    const bytes = this.#secagg.answer(down);
    const reply = parseAck(await this.#socket.timeout(30_000).emitWithAck('secagg', { roundId: down.roundId, bytes }));
    if (!reply.ok) this.#log.warn(`secure aggregation ${down.step}: reply refused: ${reply.code}: ${reply.message}`);
  }

  async #onEvaluate(message: unknown): Promise<void> {
    const round = await this.#context();
    if (!round) return;
    const request = parseEvaluateRequest(message, round.welcome.limits.maxMessageBytes);
    if (!(await this.#verifyOrAsk(round.context, request))) return;
    const report = signEvaluation(this.#options.identity, this.#binding(), await runEvaluateRound(round.context, request));
    const reply = parseAck(await this.#socket.timeout(this.#ackTimeout(request.deadline)).emitWithAck('evaluation', report));
    if (!reply.ok) this.#log.warn(`round ${request.round}: evaluation rejected: ${reply.message}`);
  }
}
