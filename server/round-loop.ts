/**
 * The round loop, written once for every strategy and every transport. It only schedules:
 *
 * wait for enough ready clients → the strategy configures the round → send each selected client
 * its signed instructions → a {@link FitRound} collects and aggregates the replies until all
 * answered or the deadline passed → if the quorum is met take the new head, else retry the round
 * → evaluate (server-side, then an {@link EvaluateRound} if the strategy asks for one) →
 * checkpoint the head, the history and the strategy's state.
 *
 * What to send, to whom, and how replies combine are the strategy's decisions (shared/strategy);
 * accepting and counting replies is the round state's (round-state.ts); membership is the client
 * manager's (client-manager.ts). Socket.io connections (server/coordinator.ts) and in-process
 * virtual clients (simulation) are both {@link Participant}s and feed the same checks.
 */
import { randomBytes } from 'node:crypto';
import { FedtlError, type ErrorCode } from '../shared/core/errors.ts';
import { createLogger, type Logger } from '../shared/core/log.ts';
import { createRandom } from '../shared/math/random.ts';
import type { HeadSpec } from '../shared/model/head.ts';
import type { Ack, EvaluationResult, FitRequest } from '../shared/protocol/protocol.ts';
import { controlDigest, errorAck, roundSignedText, roundWeightsDigest } from '../shared/protocol/protocol.ts';
import type { ModelSchedule } from '../shared/model/model-schedule.ts';
import type { EarlyStopping } from '../shared/model/early-stopping.ts';
import { IterateAverage, type IterateAveragingOptions } from '../shared/model/iterate-averaging.ts';
import type { TrainableStage } from '../shared/model/trainable-set.ts';
import { rowAveraged, rowTablesOf, type RowTable } from '../shared/strategy/row-averaging.ts';
import { decodeState, encodeState, stateArray, stateNumber } from '../shared/strategy/strategy-state.ts';
import type { Aggregation, FitConfig, SparseClientUpdate, Strategy } from '../shared/strategy/strategy.ts';
import { float32ToBytes, type WeightManifest } from '../shared/weights/flat-weights.ts';
import { embeddingEntryNames, type SparseDelta } from '../shared/weights/sparse-rows.ts';
import { loadFittingCheckpoint, saveCheckpoint } from './checkpoint.ts';
import { ClientManager, type Participant } from './client-manager.ts';
import type { RoundRecord } from './round-record.ts';
import type { UpdateIngest } from './update-ingest.ts';
import { EvaluateRound, FitRound, type ActiveRound, type RoundKind, type UpdateOpener } from './round-state.ts';
import { DEFAULT_MAX_EXAMPLE_RATIO, exampleCountCap } from './weight-bound.ts';
import { correctedConfig, gradientConfig } from '../shared/strategy/drift-correction.ts';
import { WeightedDeltaMean } from '../shared/strategy/fed-avg.ts';

export type { Participant } from './client-manager.ts';
export type { OpenedUpdate, UpdateOpener } from './round-state.ts';

export interface RoundLoopOptions {
  strategy: Strategy;
  headSpec: HeadSpec;
  manifest: WeightManifest;
  /** Head to start from when there is no checkpoint. */
  initialWeights: Float32Array;
  baseHash: string;
  /** Rounds to run in total (a resumed run counts the rounds already done). */
  rounds: number;
  openUpdate: UpdateOpener;
  /**
   * Opens sealed updates on worker threads (server/update-ingest.ts) rather than with `openUpdate`
   * on this thread; updates must then come through {@link RoundLoop.receiveUpdateAsync}. The
   * owner starts and closes it. @default null (the serial path)
   */
  ingest?: UpdateIngest | null;
  /**
   * With an {@link ingest}: its workers fold updates into partial sums when the strategy takes
   * them. `false` has them only open (verify, decrypt, check) each update, and this thread adds the
   * deltas in the order they were submitted, as the serial path does, so the head is bit for bit
   * the serial path's (a simulation keeps its numbers independent of its pool size so). @default true
   */
  ingestFolds?: boolean;
  /** Signs a round message's text with the coordinator's key (base64 signature). */
  sign: (text: string) => string;
  /** Time each selected client has to send its update, in ms. @default 60000 */
  roundTimeoutMs?: number;
  /** Time clients have to report evaluation metrics, in ms. @default 30000 */
  evaluateTimeoutMs?: number;
  /** Federated evaluation after each round (whom to ask is the strategy's choice). @default true */
  federatedEvaluation?: boolean;
  /** How long a round waits for enough clients before giving up, in ms. @default 600000 */
  waitForClientsMs?: number;
  /** Attempts of one round before the run stops for lack of a quorum. @default 3 */
  maxRoundAttempts?: number;
  /**
   * An update weighs at most this many times the median training-set size the round's selected
   * clients declared (server/weight-bound.ts; Infinity turns the bound off). @default 5
   */
  maxExampleRatio?: number;
  /** Directory of checkpoints; `null` keeps none. @default null */
  checkpointDir?: string | null;
  /** Seed of client selection. @default 0 */
  seed?: number;
  /** Optional server-side evaluation of each new global head (e.g. a held-out test set in simulations). */
  evaluateGlobal?: (weights: Float32Array, round: number) => Promise<{ loss: number; accuracy: number }>;
  /**
   * Let round r's {@link evaluateGlobal} run while round r + 1 trains (the next head does not depend
   * on it): round r's record, checkpoint and `onRound` follow once it is done, in round order, and a
   * round's `seconds` is then the time since the previous round completed. Worth it when the
   * evaluation runs off this thread (a simulation's worker pool). Ignored with federated
   * evaluation or early stopping, which need a round's evaluation before the next round.
   * @default false
   */
  overlapServerEvaluation?: boolean;
  /**
   * Fine-tuning: the loop's weights are then the whole model (`manifest` is its manifest), each
   * round sends the slice its stage trains with the stage itself, and widens each client's delta
   * back to the whole model before aggregation. @default none: the weights are the head
   */
  trainable?: ModelSchedule;
  /**
   * Early stopping on the federated validation accuracy (`evalAccuracy`): the loop stops when it
   * says so, and {@link RoundLoop.bestWeights} is the best round's model. Not restored on resume.
   * @default none
   */
  earlyStopping?: EarlyStopping;
  /**
   * Server-side iterate averaging (shared/model/iterate-averaging.ts): over the last rounds of each
   * stage, the model the loop evaluates, hands to `onRound` and early stopping, and exports
   * ({@link RoundLoop.bestWeights}) is the mean of those rounds' global models; clients keep
   * training from the last one. Its sum is checkpointed with the round, so a resumed run averages
   * exactly as an uninterrupted one. @default null (off: the last round's model)
   */
  iterateAveraging?: IterateAveragingOptions | null;
  /** Called after every completed round (after its checkpoint is on disk). */
  onRound?: (record: RoundRecord, weights: Float32Array) => void;
  logger?: Logger;
}

export class RoundLoop {
  /** Who is connected, ready and busy. */
  readonly clients = new ClientManager();
  readonly #options: RoundLoopOptions;
  readonly #strategy: Strategy;
  readonly #log: Logger;
  #weights: Float32Array;
  /** The tail average of the global models, when the loop averages them. */
  readonly #average: IterateAverage | null;
  /** What the last round yields to evaluate and export: the tail average once its window began, else {@link #weights}. */
  #exported: Float32Array;
  #history: RoundRecord[] = [];
  #completedRounds = 0;
  #runId: string;
  #active: ActiveRound | null = null;
  /** The last fit round after it closed, to tell a late update (DEADLINE_PASSED) from a stale one. */
  #lastFit: FitRound | null = null;
  #stopped = false;
  /** Time the current round spent waiting for ready clients, left out of its `seconds`. */
  #waitedMs = 0;
  /** Bytes of weights sent to clients in the running fit or evaluate round, re-sends included. */
  #bytesDown = 0;
  /** The fallback of the worker ingest was announced (once per run). */
  #warnedOpenOnly = false;
  /** The whole model's embedding tables, for a strategy that averages their rows over their senders. */
  readonly #rowTables: RowTable[];

  constructor(options: RoundLoopOptions) {
    this.#options = options;
    this.#strategy = options.strategy;
    this.#log = options.logger ?? createLogger('coordinator');
    this.#weights = options.initialWeights;
    this.#exported = options.initialWeights;
    const stageStarts = options.trainable ? options.trainable.schedule.stages.map((stage) => stage.fromRound) : [1];
    this.#average = options.iterateAveraging ? new IterateAverage(options.iterateAveraging, stageStarts, options.rounds) : null;
    this.#runId = randomBytes(6).toString('hex');
    this.#rowTables = rowTablesOf(options.manifest);
    if (this.#strategy.rowAveraging && this.#rowTables.length === 0) {
      this.#log.warn('rowAveraging (--row-averaging 1) changes nothing here: the model the rounds train has no embedding table (feature extraction trains the head only; fine-tune a text base to train its table)');
    }
    if (options.initialWeights.length !== options.manifest.parameterCount) {
      throw new FedtlError('BAD_SHAPE', `initial head has ${options.initialWeights.length} values, manifest says ${options.manifest.parameterCount}`);
    }
  }

  get weights(): Float32Array {
    return this.#weights;
  }

  /** The fine-tuning schedule, when the loop's weights are the whole model. */
  get trainable(): ModelSchedule | null {
    return this.#options.trainable ?? null;
  }

  /**
   * The model to export: with early stopping the best round's (as evaluated), else the last
   * round's — with iterate averaging the mean of its window's global models.
   */
  get bestWeights(): Float32Array {
    return this.#options.earlyStopping?.bestWeights ?? this.#exported;
  }

  get history(): readonly RoundRecord[] {
    return this.#history;
  }

  get completedRounds(): number {
    return this.#completedRounds;
  }

  /** Ready clients. */
  get memberCount(): number {
    return this.clients.readyCount;
  }

  /** The current round's id, or null between rounds. */
  /** The round in progress as counts, for monitoring (no client ids, no updates); null between rounds. */
  get activeRound(): { kind: 'fit' | 'evaluate'; round: number; deadline: number; selected: number; answered: number; dropped: number; rejected: Partial<Record<ErrorCode, number>> } | null {
    const active = this.#active;
    if (!active) return null;
    return { kind: active.kind, round: active.round, deadline: active.deadline, selected: active.selected.size, answered: active.answered.size, dropped: active.dropped.size, rejected: { ...active.rejected } };
  }

  get activeRoundId(): string | null {
    return this.#active?.roundId ?? null;
  }

  /** Loads the last checkpoint if there is one that fits this run; returns the rounds already done. */
  async resume(): Promise<number> {
    const directory = this.#options.checkpointDir;
    if (!directory) return 0;
    const { headSpec, manifest, baseHash } = this.#options;
    const params = this.#strategy.params;
    const checkpoint = await loadFittingCheckpoint(directory, { headSpec, manifest, baseHash, strategy: this.#strategy.name, ...(params ? { params } : {}) });
    if (!checkpoint) return 0;
    this.#strategy.restore(checkpoint.strategy ? decodeState(checkpoint.strategy.state, `${directory} strategy state`) : null);
    this.#weights = checkpoint.weights;
    // Without averaging the exported model is the last one; with it, #restoreAverage replaces it by the mean.
    this.#exported = checkpoint.weights;
    this.#restoreAverage(checkpoint.averaging, directory);
    this.#history = checkpoint.history;
    this.#completedRounds = checkpoint.round;
    this.#runId = checkpoint.runId;
    this.#log.info(`resumed from checkpoint: ${checkpoint.round} round(s) done`);
    return checkpoint.round;
  }

  /** A client that is ready to train (base loaded, features computed). */
  addParticipant(participant: Participant, examples: number): void {
    this.clients.ready(participant, examples);
  }

  /** A client that left; if it was selected in the running round, it is dropped from it. */
  removeParticipant(clientId: string): void {
    this.clients.remove(clientId);
    if (this.#active?.drop(clientId)) this.#log.info(`round ${this.#active.round}: client ${clientId} left; dropped from this round`);
  }

  /**
   * A selected client that will not answer this round (it crashed, went offline, or will miss the
   * deadline) without leaving the federation; the round stops waiting for it.
   */
  reportDropped(clientId: string, reason: string): void {
    if (this.#active?.drop(clientId)) this.#log.debug(`round ${this.#active.round}: client ${clientId} dropped (${reason})`);
  }

  stop(): void {
    this.#stopped = true;
    this.#active?.close();
    this.clients.wake();
  }

  /**
   * Counts weights a transport sent again in the running round (a client that did not hold the
   * weights a request referred to), so the round's `bytesDown` is what really went down.
   */
  countResent(bytes: number): void {
    if (this.#active) this.#bytesDown += bytes;
  }

  /** Handles a sealed update from `clientId`; never throws, answers with a typed ack. */
  receiveUpdate(clientId: string, sealed: Uint8Array): Ack {
    const active = this.#active;
    return this.#logged(clientId, active?.kind === 'fit' ? active.accept(clientId, sealed) : this.#noFitRound(clientId));
  }

  /**
   * {@link receiveUpdate} through the worker ingest when the loop has one (the coordinator's path):
   * answered at once on the serial path, later when a worker opens the update.
   */
  ingestUpdate(clientId: string, sealed: Uint8Array): Ack | Promise<Ack> {
    const active = this.#active;
    if (active?.kind !== 'fit' || active.ingestMode === 'serial') return this.receiveUpdate(clientId, sealed);
    return active.acceptAsync(clientId, sealed).then((ack) => this.#logged(clientId, ack));
  }

  #noFitRound(clientId: string): Ack {
    const last = this.#lastFit;
    const late = last !== null && last.selected.has(clientId) && !last.answered.has(clientId) && Date.now() > last.deadline;
    return errorAck(
      late
        ? new FedtlError('DEADLINE_PASSED', `round ${last.round} closed at its deadline before this update arrived; no round is collecting updates now`)
        : new FedtlError('STALE_ROUND', 'no round is collecting updates now'),
    );
  }

  #logged(clientId: string, ack: Ack): Ack {
    if (!ack.ok) this.#log.warn(`rejected update from ${clientId}: ${ack.code}: ${ack.message}`);
    return ack;
  }

  /** Handles a client's evaluation report for the running evaluation. */
  receiveEvaluation(clientId: string, report: EvaluationResult): Ack {
    const active = this.#active;
    const ack = active?.kind === 'evaluate' ? active.accept(clientId, report) : errorAck(new FedtlError('STALE_ROUND', `evaluation for ${report.roundId} is not the one running`));
    if (!ack.ok) this.#log.warn(`rejected evaluation from ${clientId}: ${ack.message}`);
    return ack;
  }

  /** Runs rounds until `rounds` are complete; resolves with the history. */
  async run(): Promise<readonly RoundRecord[]> {
    const random = createRandom(`${this.#options.seed ?? 0}`);
    const options = this.#options;
    const overlap = options.overlapServerEvaluation === true && options.evaluateGlobal !== undefined && options.federatedEvaluation === false && !options.earlyStopping;
    // With overlap: the rounds trained so far, and the completion of the last one still being evaluated.
    let trained = this.#completedRounds;
    let completing: Promise<void> = Promise.resolve();
    let completedAt = Date.now();
    // The first overlapped evaluation or completion that failed: it stops the run before the next round.
    const overlapFailure: { error?: unknown; failed: boolean } = { failed: false };
    try {
      while (trained < options.rounds && !this.#stopped && !overlapFailure.failed) {
        const round = trained + 1;
        // One stream per round: selection after a resume draws exactly what an uninterrupted run draws.
        const roundRandom = random.fork(`round-${round}`);
        const started = Date.now();
        this.#waitedMs = 0;
        let record: RoundRecord | null = null;
        const maxAttempts = options.maxRoundAttempts ?? 3;
        for (let attempt = 1; attempt <= maxAttempts && !this.#stopped && !record; attempt++) {
          record = await this.#fitRound(round, attempt, () => roundRandom.nextFloat(), started);
          if (!record && attempt === maxAttempts && !this.#stopped) {
            throw new FedtlError('QUORUM_NOT_MET', `round ${round} failed ${maxAttempts} times for lack of a quorum of ${this.#strategy.minUpdates} updates`);
          }
        }
        if (!record) break;
        trained = round;
        if (overlap) {
          // What the checkpoint holds is taken now, before the next round changes it.
          const done = record;
          const snapshot = this.#snapshot();
          const state = options.checkpointDir ? snapshot.state() : null;
          const waited = this.#waitedMs;
          const evaluation = options.evaluateGlobal!(snapshot.exported, round);
          // Handled where `completing` is awaited; until then a failure must not go unhandled.
          evaluation.catch(() => undefined);
          completing = completing.then(async () => {
            // After a failure no later round is recorded: the history and checkpoint end at the last round completed.
            if (overlapFailure.failed) return;
            const result = await evaluation;
            done.serverLoss = result.loss;
            done.serverAccuracy = result.accuracy;
            const now = Date.now();
            done.seconds = (now - Math.max(started, completedAt) - waited) / 1000;
            completedAt = now;
            await this.#complete(done, { ...snapshot, state: () => state! });
          }).catch((error: unknown) => {
            if (overlapFailure.failed) return;
            overlapFailure.failed = true;
            overlapFailure.error = error;
          });
          continue;
        }
        await this.#evaluateRound(record);
        // A round's time is its work: the wait for enough ready clients (round 1 waits for everyone to connect) is not part of it.
        record.seconds = (Date.now() - started - this.#waitedMs) / 1000;
        if (await this.#complete(record, this.#snapshot())) break;
      }
    } finally {
      // Rounds already trained complete even when a later one fails (their records and checkpoints stand).
      // `completing` never rejects, so an error of the round loop itself is the one that propagates.
      await completing;
    }
    if (overlapFailure.failed) throw overlapFailure.error;
    return this.#history;
  }

  /**
   * The loop's state after a round, as the checkpoint and the evaluation need it: the global model
   * clients train from, the model to evaluate and export, and the server state (encoded lazily, as
   * only a run with checkpoints needs it).
   */
  #snapshot(): RoundSnapshot {
    const average = this.#average;
    return {
      weights: this.#weights,
      exported: this.#exported,
      state: () => ({ strategy: encodeState(this.#strategy.state()), averaging: average ? encodeState({ ...average.state() }) : undefined }),
    };
  }

  /** Restores the average from a checkpoint's `averaging` (absent in checkpoints of runs without it: the average starts anew). */
  #restoreAverage(saved: unknown, directory: string): void {
    const average = this.#average;
    if (!average) return;
    const state = decodeState(saved ?? null, `${directory} iterate averaging state`);
    const owner = 'iterate averaging';
    average.restore(state ? { from: stateNumber(state, 'from', owner), count: stateNumber(state, 'count', owner), sum: stateArray(state, 'sum', this.#weights.length, owner) } : { from: 0, count: 0, sum: null }, this.#weights.length);
    this.#exported = average.model ?? this.#weights;
  }

  /** Records a round whose evaluation is done: history, checkpoint, `onRound`; true when early stopping ends the run. */
  async #complete(record: RoundRecord, snapshot: RoundSnapshot): Promise<boolean> {
    const round = record.round;
    const weights = snapshot.exported;
    this.#history.push(record);
    this.#completedRounds = round;
    await this.#checkpoint(round, snapshot);
    this.#options.onRound?.(record, weights);
    const stopping = this.#options.earlyStopping;
    if (stopping?.observe(round, record.evalAccuracy, weights).stop) {
      this.#log.info(`early stopping after round ${round}: no gain of the federated validation accuracy for ${stopping.patience} rounds; the best model is round ${stopping.bestRound}'s`);
      return true;
    }
    return false;
  }

  async #checkpoint(round: number, snapshot: RoundSnapshot): Promise<void> {
    if (!this.#options.checkpointDir) return;
    const { strategy, averaging } = snapshot.state();
    await saveCheckpoint(this.#options.checkpointDir, {
      round,
      runId: this.#runId,
      baseHash: this.#options.baseHash,
      headSpec: this.#options.headSpec,
      manifest: this.#options.manifest,
      weights: snapshot.weights,
      history: this.#history,
      strategy: { name: this.#strategy.name, state: strategy, ...(this.#strategy.params ? { params: this.#strategy.params } : {}) },
      ...(averaging !== undefined ? { averaging } : {}),
    });
  }

  /**
   * Sends every selected client its signed request and waits for the round to settle; returns the
   * bytes of weights sent (a send that returns nothing sent all `weightBytes`).
   */
  async #collect(round: ActiveRound, weightBytes: number, send: (participant: Participant, clientId: string) => number | void): Promise<number> {
    this.#active = round;
    this.#bytesDown = 0;
    for (const clientId of round.selected) {
      const participant = this.clients.participant(clientId);
      if (!participant) {
        round.drop(clientId);
        continue;
      }
      this.clients.setBusy(clientId, true);
      this.#bytesDown += send(participant, clientId) ?? weightBytes;
    }
    await round.done;
    this.#active = null;
    return this.#bytesDown;
  }

  /**
   * A signer for one round's messages: the weights (and the stage, when fine-tuning) are hashed
   * once; `digest` is what the signature covers, and names the weights for clients that hold them.
   */
  #signer(kind: RoundKind, roundId: string, round: number, deadline: number, weightBytes: Uint8Array, stage?: TrainableStage): { digest: string; sign: (config?: FitConfig) => string } {
    const digest = roundWeightsDigest(weightBytes, stage);
    return { digest, sign: (config) => this.#options.sign(roundSignedText(kind, roundId, round, deadline, digest, config)) };
  }

  /** The strategy's aggregation of a fit round over the whole model, each embedding row averaged over its senders where the strategy asks for it. */
  #aggregation(round: number): Aggregation {
    const inner = this.#strategy.aggregateFit(round, this.#weights);
    return this.#rowAveraging() ? rowAveraged(inner, this.#rowTables) : inner;
  }

  /** Whether this run averages embedding rows over their senders: the strategy asks, and the model has a table. */
  #rowAveraging(): boolean {
    return this.#strategy.rowAveraging === true && this.#rowTables.length > 0;
  }

  /** `kind` names the exchange: a fit round's gradient exchange ('gradient') is a fit round of its own id. */
  #roundId(round: number, attempt: number, kind: RoundKind | 'gradient'): string {
    return `${this.#runId}-r${round}-a${attempt}-${kind}`;
  }

  async #fitRound(round: number, attempt: number, random: () => number, started: number): Promise<RoundRecord | null> {
    const strategy = this.#strategy;
    const waitStarted = Date.now();
    await this.clients.waitForReady(Math.max(strategy.minClients, strategy.minUpdates), this.#options.waitForClientsMs ?? 600_000, () => this.#stopped, (ready) =>
      this.#log.info(`waiting for clients: ${ready}/${Math.max(strategy.minClients, strategy.minUpdates)} ready`),
    );
    this.#waitedMs += Date.now() - waitStarted;
    if (this.#stopped) return null;
    const candidates = this.clients.candidates();
    const instructions = strategy.configureFit(round, this.#weights, candidates, random);
    const schedule = this.#options.trainable;
    const stage = schedule?.stageFor(round);
    const configs = new Map(instructions.map((i) => [i.clientId, i.config]));
    const roundManifest = schedule && stage ? schedule.manifestOf(stage) : this.#options.manifest;
    const declared = candidates.filter((c) => configs.has(c.clientId)).map((c) => c.lastExampleCount ?? 0);
    const exampleCap = exampleCountCap(declared, this.#options.maxExampleRatio ?? DEFAULT_MAX_EXAMPLE_RATIO);
    const weights = float32ToBytes(schedule && stage ? schedule.gather(this.#weights, stage) : this.#weights);
    this.#log.info(`round ${round}${attempt > 1 ? ` (attempt ${attempt})` : ''}: ${configs.size} of ${this.clients.readyCount} clients selected`);
    // Drift correction: the selected clients' gradients at these weights first; the fit then goes,
    // with their mean, to the clients that sent one.
    const lambda = strategy.driftCorrection;
    let gradient: GradientExchange | null = null;
    if (lambda !== undefined) {
      gradient = await this.#gradientExchange(round, attempt, configs, weights, stage, roundManifest, exampleCap);
      if (!gradient) return null;
      for (const clientId of [...configs.keys()]) if (!gradient.answered.has(clientId)) configs.delete(clientId);
    }
    const wholeModel = schedule && stage ? widened(this.#aggregation(round), (delta) => schedule.expand(delta, stage), (delta) => schedule.expandSparse(delta, stage)) : this.#aggregation(round);
    const state = this.#fitState(round, this.#roundId(round, attempt, 'fit'), configs, roundManifest, exampleCap, wholeModel);
    if (state.ingestMode === 'open' && this.#options.ingestFolds !== false && !this.#warnedOpenOnly) {
      this.#warnedOpenOnly = true;
      this.#log.warn(`strategy ${strategy.name}${this.#rowAveraging() ? ' with rowAveraging' : ''}${stage ? ' with fine-tuning' : ''} needs every update, not partial sums: updates are opened on ${this.#options.ingest!.workers} worker thread(s) and aggregated on the main thread`);
    }
    let fitBytesDown: number;
    if (gradient && lambda !== undefined) {
      const control = { bytes: gradient.control, digest: controlDigest(gradient.control) };
      fitBytesDown = await this.#sendFits(state, configs, weights, stage, (config) => correctedConfig(config, lambda, control.digest), control.bytes);
    } else {
      fitBytesDown = await this.#sendFits(state, configs, weights, stage, (config) => config);
    }
    const bytesDown = fitBytesDown + (gradient?.bytesDown ?? 0);
    this.#lastFit = state;
    if (!(await state.settle())) {
      this.#log.warn(`round ${round}: an update-ingest worker failed with part of the round; the global head is unchanged; retrying`);
      return null;
    }
    const { aggregation } = state;
    if (aggregation.count < strategy.minUpdates) {
      this.#log.warn(`round ${round}: ${aggregation.count} update(s) accepted, ${strategy.minUpdates} needed; retrying`);
      return null;
    }
    let next: Float32Array;
    try {
      next = aggregation.finishAsync ? await aggregation.finishAsync() : aggregation.finish();
    } catch (error) {
      // Secure aggregation could not produce a verified sum (inconsistent shares, too many
      // dropouts): the head and the last checkpoint stay as they were, and the round is retried.
      if (!(error instanceof FedtlError && error.code === 'SECAGG_FAILED')) throw error;
      this.#log.warn(`round ${round}: ${error.message}; the global head is unchanged; retrying`);
      return null;
    }
    this.#weights = next;
    const average = this.#average;
    if (average) {
      average.observe(round, next);
      this.#exported = average.model ?? next;
    } else {
      this.#exported = next;
    }
    const train = state.metrics.finish();
    this.#log.info(`round ${round}: aggregated ${aggregation.count} update(s) over ${aggregation.exampleCount} examples; ${state.missing} dropped`);
    if (state.capped > 0) this.#log.warn(`round ${round}: ${state.capped} update(s) claimed more examples than ${this.#options.maxExampleRatio ?? DEFAULT_MAX_EXAMPLE_RATIO}× the median declared size and were weighed at that bound`);
    return {
      round,
      roundId: state.roundId,
      attempts: attempt,
      selected: state.selected.size + (gradient?.dropped ?? 0),
      accepted: aggregation.count,
      dropped: state.missing + (gradient?.dropped ?? 0),
      rejected: mergedCounts(state.rejected, gradient?.rejected),
      examples: aggregation.exampleCount,
      trainLoss: train['loss'] ?? null,
      trainAccuracy: train['accuracy'] ?? null,
      evalLoss: null,
      evalAccuracy: null,
      evalExamples: 0,
      serverLoss: null,
      serverAccuracy: null,
      bytesDown,
      bytesUp: state.bytesUp + (gradient?.bytesUp ?? 0),
      seconds: (Date.now() - started) / 1000,
      ...(average && average.count > 0 ? { averagedRounds: average.count } : {}),
    };
  }

  /** A fit round (or a gradient exchange) over `configs`' clients on `manifest`, folding into `aggregation`. */
  #fitState(round: number, roundId: string, configs: ReadonlyMap<string, FitConfig>, manifest: WeightManifest, exampleCap: number, aggregation: Aggregation): FitRound {
    return new FitRound({
      round,
      roundId,
      selected: [...configs.keys()],
      timeoutMs: this.#options.roundTimeoutMs ?? 60_000,
      aggregation,
      metrics: this.#strategy.aggregateFitMetrics(round),
      openUpdate: this.#options.openUpdate,
      parameterCount: manifest.parameterCount,
      rowSparse: acceptsRowSparse(manifest, configs.values()) ? manifest : null,
      exampleCap,
      onResolved: (clientId) => this.clients.setBusy(clientId, false),
      ingest: this.#options.ingest ?? null,
      ...(this.#options.ingestFolds === false ? { ingestFolds: false } : {}),
    });
  }

  /**
   * Sends each client of `state` its signed fit request, with the config `tell` makes of the
   * strategy's (and `control` when given), and waits for the round to settle; returns the bytes sent
   * down. One request object per distinct config: clients told the same thing share it (and
   * in-process clients verify it once).
   */
  async #sendFits(state: FitRound, configs: ReadonlyMap<string, FitConfig>, weights: Uint8Array, stage: TrainableStage | undefined, tell: (config: FitConfig) => FitConfig, control?: Uint8Array): Promise<number> {
    const { digest, sign } = this.#signer('fit', state.roundId, state.round, state.deadline, weights, stage);
    const requests = new Map<FitConfig, FitRequest>();
    return this.#collect(state, weights.byteLength + (control?.byteLength ?? 0), (participant, clientId) => {
      const config = configs.get(clientId)!;
      let request = requests.get(config);
      if (!request) {
        const told = tell(config);
        request = { roundId: state.roundId, round: state.round, weights, config: told, deadline: state.deadline, signature: sign(told), ...(stage ? { trainable: stage } : {}), ...(control ? { control } : {}) };
        requests.set(config, request);
      }
      return participant.sendFit(request, digest);
    });
  }

  /**
   * Drift correction's first exchange (shared/strategy/drift-correction.ts): asks the selected
   * clients for their full-batch gradients at `weights`, sealed and checked as updates are (shape,
   * finite values, sender, replay, example bound), and averages them by example count into the
   * control vector c. Null, after a warning, when too few arrive: the round is retried.
   */
  async #gradientExchange(round: number, attempt: number, configs: ReadonlyMap<string, FitConfig>, weights: Uint8Array, stage: TrainableStage | undefined, manifest: WeightManifest, exampleCap: number): Promise<GradientExchange | null> {
    // A gradient is zero outside the rows a client holds, as its delta is: row-sparse where the fit would be (#fitState).
    const state = this.#fitState(round, this.#roundId(round, attempt, 'gradient'), configs, manifest, exampleCap, new WeightedDeltaMean(new Float32Array(manifest.parameterCount)));
    const bytesDown = await this.#sendFits(state, configs, weights, stage, gradientConfig);
    if (!(await state.settle())) {
      this.#log.warn(`round ${round}: an update-ingest worker failed with part of the gradient exchange; retrying`);
      return null;
    }
    const { aggregation } = state;
    if (aggregation.count < this.#strategy.minUpdates) {
      this.#log.warn(`round ${round}: ${aggregation.count} gradient(s) accepted, ${this.#strategy.minUpdates} needed; retrying`);
      return null;
    }
    const before = state.metrics.finish();
    this.#log.info(`round ${round}: gradients of ${aggregation.count} client(s) over ${aggregation.exampleCount} examples${before['loss'] !== undefined ? ` (loss ${before['loss'].toFixed(4)} before training)` : ''}; ${state.missing} dropped`);
    return { control: float32ToBytes(aggregation.finish()), answered: new Set(state.answered), dropped: state.missing, rejected: state.rejected, bytesDown, bytesUp: state.bytesUp };
  }

  async #evaluateRound(record: RoundRecord): Promise<void> {
    if (this.#options.evaluateGlobal) {
      const result = await this.#options.evaluateGlobal(this.#exported, record.round);
      record.serverLoss = result.loss;
      record.serverAccuracy = result.accuracy;
    }
    if (this.#options.federatedEvaluation === false || this.#stopped) return;
    const fitted = [...(this.#lastFit?.selected ?? [])].filter((id) => this.clients.has(id));
    const clients = this.#strategy.configureEvaluate(record.round, this.clients.candidates(), fitted);
    if (clients.length === 0) return;
    const state = new EvaluateRound({
      round: record.round,
      roundId: this.#roundId(record.round, record.attempts, 'evaluate'),
      selected: clients,
      timeoutMs: this.#options.evaluateTimeoutMs ?? 30_000,
      metrics: this.#strategy.aggregateEvaluate(record.round),
      onResolved: (clientId) => this.clients.setBusy(clientId, false),
    });
    const schedule = this.#options.trainable;
    const stage = schedule?.stageFor(record.round);
    const weights = float32ToBytes(schedule && stage ? schedule.gather(this.#exported, stage) : this.#exported);
    const { digest, sign } = this.#signer('evaluate', state.roundId, record.round, state.deadline, weights, stage);
    const request = { roundId: state.roundId, round: record.round, weights, deadline: state.deadline, signature: sign(), ...(stage ? { trainable: stage } : {}) };
    record.bytesDown += await this.#collect(state, weights.byteLength, (participant) => participant.sendEvaluate(request, digest));
    const result = state.metrics.finish();
    const examples = result['examples'] ?? 0;
    if (examples > 0) {
      record.evalLoss = result['loss'] ?? null;
      record.evalAccuracy = result['accuracy'] ?? null;
      record.evalExamples = examples;
    }
  }
}

/** What a round's gradient exchange yields (see `RoundLoop.#gradientExchange`). */
interface GradientExchange {
  /** c, the example-weighted mean gradient, as float32 bytes on the round's manifest. */
  control: Uint8Array;
  /** Clients whose gradient was accepted: the fit goes to them alone. */
  answered: ReadonlySet<string>;
  /** Selected clients that sent no accepted gradient. */
  dropped: number;
  /** Gradients refused, by error code. */
  rejected: Readonly<Partial<Record<ErrorCode, number>>>;
  bytesDown: number;
  bytesUp: number;
}

/** The refusals of a round's two exchanges, by error code, added up. */
function mergedCounts(fit: Readonly<Partial<Record<ErrorCode, number>>>, gradient: Readonly<Partial<Record<ErrorCode, number>>> | undefined): Partial<Record<ErrorCode, number>> {
  const out: Partial<Record<ErrorCode, number>> = { ...fit };
  for (const [code, count] of Object.entries(gradient ?? {}) as [ErrorCode, number][]) out[code] = (out[code] ?? 0) + count;
  return out;
}

/** The loop's state after a round (see `RoundLoop.#snapshot`). */
interface RoundSnapshot {
  /** The global model clients train from (what a checkpoint resumes). */
  weights: Float32Array;
  /** The model to evaluate and export (the tail average once its window began). */
  exported: Float32Array;
  /** The strategy's and the average's state in JSON form. */
  state: () => { strategy: unknown; averaging: unknown };
}

/**
 * Whether a round takes row-sparse uploads: its manifest has an embedding table, and no client is
 * told to aggregate securely (masks need every coordinate, and the row indices — which words a
 * client used — must not travel in the clear: SECURITY.md).
 */
function acceptsRowSparse(manifest: WeightManifest, configs: Iterable<FitConfig>): boolean {
  if (embeddingEntryNames(manifest).size === 0) return false;
  for (const config of configs) if (config.extra?.['secagg'] === true) return false;
  return true;
}

/** An aggregation that widens each stage delta to the whole model before folding it in (a row-sparse one stays sparse where the inner aggregation takes it so). */
function widened(inner: Aggregation, expand: (delta: Float32Array) => Float32Array, expandSparse: (delta: SparseDelta) => SparseDelta): Aggregation {
  return {
    add: (update) => inner.add({ ...update, delta: expand(update.delta) }),
    ...(inner.addSparse ? { addSparse: (update: SparseClientUpdate) => inner.addSparse!({ ...update, delta: expandSparse(update.delta) }) } : {}),
    get count() {
      return inner.count;
    },
    get exampleCount() {
      return inner.exampleCount;
    },
    finish: () => inner.finish(),
  };
}
