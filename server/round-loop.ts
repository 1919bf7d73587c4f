/**
 * The round loop, written once for every strategy and every transport.
 *
 * select clients → send the round's head and config → collect sealed updates until all selected
 * clients answered or the deadline passed → validate each as it arrives and fold it into the
 * strategy's streaming aggregation → if the quorum is met, take the new head; else retry the round
 * → federated evaluation → checkpoint.
 *
 * Transport-agnostic: socket.io connections (server/coordinator.ts) and in-process virtual clients
 * (simulation) are both {@link Participant}s, and both feed updates through {@link RoundLoop.receiveUpdate},
 * so a simulation runs exactly the validation and aggregation a deployment runs.
 */
import { createHash, randomBytes } from 'node:crypto';
import { FedtlError, toFedtlError, type ErrorCode } from '../shared/core/errors.ts';
import { createLogger, type Logger } from '../shared/core/log.ts';
import { createRandom } from '../shared/math/random.ts';
import type { HeadSpec } from '../shared/model/head.ts';
import type { Ack, EvaluateRequest, EvaluationReport, FitRequest } from '../shared/protocol/protocol.ts';
import { errorAck, roundSignedText } from '../shared/protocol/protocol.ts';
import type { Aggregation, Candidate, Strategy } from '../shared/strategy/strategy.ts';
import { float32ToBytes, manifestsEqual, type WeightManifest } from '../shared/weights/flat-weights.ts';
import { loadCheckpoint, saveCheckpoint } from './checkpoint.ts';
import type { RoundRecord } from './round-record.ts';

/** A client as the loop sees it: something that can be asked to fit or evaluate. */
export interface Participant {
  readonly clientId: string;
  sendFit(request: FitRequest): void;
  sendEvaluate(request: EvaluateRequest): void;
}

/** What opening a sealed update yields (see shared/crypto). */
export interface OpenedUpdate {
  roundId: string;
  clientId: string;
  exampleCount: number;
  metrics: Record<string, number>;
  delta: Float32Array;
  /** Unique id of this envelope, for replay detection. */
  nonce: string;
}

/** Verifies, decrypts and validates a sealed update; throws a FedtlError on any problem. */
export type UpdateOpener = (sealed: Uint8Array, expected: { roundId: string; clientId: string; parameterCount: number }) => OpenedUpdate;

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
  /** Signs a round message's text with the coordinator's key (base64 signature). */
  sign: (text: string) => string;
  /** Time each selected client has to send its update, in ms. @default 60000 */
  roundTimeoutMs?: number;
  /** Time clients have to report evaluation metrics, in ms. @default 30000 */
  evaluateTimeoutMs?: number;
  /** Federated evaluation after each round. @default true */
  federatedEvaluation?: boolean;
  /** Who evaluates each new head: the round's selected clients still connected, or every ready client. @default 'selected' */
  evaluateClients?: 'selected' | 'all';
  /** How long a round waits for enough clients before giving up, in ms. @default 600000 */
  waitForClientsMs?: number;
  /** Attempts of one round before the run stops for lack of a quorum. @default 3 */
  maxRoundAttempts?: number;
  /** Directory of checkpoints; `null` keeps none. @default null */
  checkpointDir?: string | null;
  /** Seed of client selection. @default 0 */
  seed?: number;
  /** Optional server-side evaluation of each new global head (e.g. a held-out test set in simulations). */
  evaluateGlobal?: (weights: Float32Array, round: number) => Promise<{ loss: number; accuracy: number }>;
  /** Called after every completed round. */
  onRound?: (record: RoundRecord, weights: Float32Array) => void;
  logger?: Logger;
}

interface ActiveRound {
  round: number;
  roundId: string;
  kind: 'fit' | 'evaluate';
  deadline: number;
  selected: Set<string>;
  answered: Set<string>;
  dropped: Set<string>;
  /** Envelope ids received this round (envelopes are bound to one roundId, so one round's worth suffices). */
  seenNonces: Set<string>;
  rejected: Partial<Record<ErrorCode, number>>;
  aggregation: Aggregation | null;
  trainLossSum: number;
  trainAccuracySum: number;
  trainMetricExamples: number;
  evalLossSum: number;
  evalAccuracySum: number;
  evalExamples: number;
  bytesUp: number;
  settle: () => void;
}

interface Member {
  participant: Participant;
  examples: number;
}

export class RoundLoop {
  readonly #options: RoundLoopOptions;
  readonly #log: Logger;
  readonly #members = new Map<string, Member>();
  /** The last fit round after it closed, to tell a late update (DEADLINE_PASSED) from a stale one. */
  #closedFit: Pick<ActiveRound, 'round' | 'deadline' | 'selected' | 'answered'> | null = null;
  #weights: Float32Array;
  #history: RoundRecord[] = [];
  #completedRounds = 0;
  #runId: string;
  #active: ActiveRound | null = null;
  #membershipChanged: (() => void) | null = null;
  #stopped = false;
  #lastSelected: string[] = [];

  constructor(options: RoundLoopOptions) {
    this.#options = options;
    this.#log = options.logger ?? createLogger('coordinator');
    this.#weights = options.initialWeights;
    this.#runId = randomBytes(6).toString('hex');
    if (options.initialWeights.length !== options.manifest.parameterCount) {
      throw new FedtlError('BAD_SHAPE', `initial head has ${options.initialWeights.length} values, manifest says ${options.manifest.parameterCount}`);
    }
  }

  get weights(): Float32Array {
    return this.#weights;
  }

  get history(): readonly RoundRecord[] {
    return this.#history;
  }

  get completedRounds(): number {
    return this.#completedRounds;
  }

  get memberCount(): number {
    return this.#members.size;
  }

  /** The current round's id, or null between rounds. */
  get activeRoundId(): string | null {
    return this.#active?.roundId ?? null;
  }

  /** Loads the last checkpoint if there is one that fits this run; returns the rounds already done. */
  async resume(): Promise<number> {
    const directory = this.#options.checkpointDir;
    if (!directory) return 0;
    const checkpoint = await loadCheckpoint(directory);
    if (!checkpoint) return 0;
    const sameHead =
      JSON.stringify(checkpoint.headSpec) === JSON.stringify(this.#options.headSpec) && manifestsEqual(checkpoint.manifest, this.#options.manifest);
    if (checkpoint.baseHash !== this.#options.baseHash || !sameHead) {
      throw new FedtlError(
        'BAD_CONFIG',
        `checkpoint in ${directory} belongs to another ${checkpoint.baseHash !== this.#options.baseHash ? 'base' : 'head'}; use another output directory, or move the checkpoint away to start over`,
      );
    }
    this.#weights = checkpoint.weights;
    this.#history = checkpoint.history;
    this.#completedRounds = checkpoint.round;
    this.#runId = checkpoint.runId;
    this.#log.info(`resumed from checkpoint: ${checkpoint.round} round(s) done`);
    return checkpoint.round;
  }

  /** A client that is ready to train (base loaded, features computed). */
  addParticipant(participant: Participant, examples: number): void {
    this.#members.set(participant.clientId, { participant, examples });
    this.#membershipChanged?.();
  }

  /** A client that left; if it was selected in the running round, it is dropped from it. */
  removeParticipant(clientId: string): void {
    this.#members.delete(clientId);
    const active = this.#active;
    if (active && active.selected.has(clientId) && !active.answered.has(clientId)) {
      active.dropped.add(clientId);
      this.#log.info(`round ${active.round}: client ${clientId} left; dropped from this round`);
      this.#maybeSettle(active);
    }
  }

  /**
   * A selected client that will not answer this round (it crashed, went offline, or will miss the
   * deadline) without leaving the federation; the round stops waiting for it.
   */
  reportDropped(clientId: string, reason: string): void {
    const active = this.#active;
    if (!active || !active.selected.has(clientId) || active.answered.has(clientId)) return;
    active.dropped.add(clientId);
    this.#log.debug(`round ${active.round}: client ${clientId} dropped (${reason})`);
    this.#maybeSettle(active);
  }

  stop(): void {
    this.#stopped = true;
    this.#active?.settle();
    this.#membershipChanged?.();
  }

  /** Handles a sealed update from `clientId`; never throws, answers with a typed ack. */
  receiveUpdate(clientId: string, sealed: Uint8Array): Ack {
    const active = this.#active;
    try {
      if (!active || active.kind !== 'fit') {
        const closed = this.#closedFit;
        if (closed && closed.selected.has(clientId) && !closed.answered.has(clientId) && Date.now() > closed.deadline) {
          throw new FedtlError('DEADLINE_PASSED', `round ${closed.round} closed at its deadline before this update arrived; no round is collecting updates now`);
        }
        throw new FedtlError('STALE_ROUND', 'no round is collecting updates now');
      }
      if (!active.selected.has(clientId)) throw new FedtlError('NOT_SELECTED', `client ${clientId} was not selected for round ${active.round}`);
      if (active.answered.has(clientId)) throw new FedtlError('DUPLICATE_UPDATE', `client ${clientId} already sent its update for round ${active.round}`);
      if (Date.now() > active.deadline) throw new FedtlError('DEADLINE_PASSED', `round ${active.round}'s deadline has passed`);
      const opened = this.#options.openUpdate(sealed, { roundId: active.roundId, clientId, parameterCount: this.#options.manifest.parameterCount });
      if (opened.roundId !== active.roundId) throw new FedtlError('STALE_ROUND', `update is for round ${opened.roundId}, the current round is ${active.roundId}`);
      if (opened.clientId !== clientId) throw new FedtlError('BAD_SIGNATURE', `update names client ${opened.clientId} but came from ${clientId}`);
      if (active.seenNonces.has(opened.nonce)) throw new FedtlError('REPLAY', 'this update envelope was already received');
      active.seenNonces.add(opened.nonce);
      active.aggregation!.add({ clientId, delta: opened.delta, exampleCount: opened.exampleCount, metrics: opened.metrics });
      active.answered.add(clientId);
      active.bytesUp += sealed.byteLength;
      const loss = opened.metrics['loss'];
      const accuracy = opened.metrics['accuracy'];
      if (loss !== undefined && accuracy !== undefined && Number.isFinite(loss) && Number.isFinite(accuracy)) {
        active.trainLossSum += loss * opened.exampleCount;
        active.trainAccuracySum += accuracy * opened.exampleCount;
        active.trainMetricExamples += opened.exampleCount;
      }
      this.#maybeSettle(active);
      return { ok: true };
    } catch (thrown) {
      const error = toFedtlError(thrown, 'BAD_MESSAGE');
      if (active) active.rejected[error.code] = (active.rejected[error.code] ?? 0) + 1;
      this.#log.warn(`rejected update from ${clientId}: ${error.code}: ${error.message}`);
      return errorAck(error);
    }
  }

  /** Handles a client's evaluation report for the running evaluation. */
  receiveEvaluation(clientId: string, report: EvaluationReport): Ack {
    const active = this.#active;
    try {
      if (!active || active.kind !== 'evaluate' || report.roundId !== active.roundId) throw new FedtlError('STALE_ROUND', `evaluation for ${report.roundId} is not the one running`);
      if (!active.selected.has(clientId)) throw new FedtlError('NOT_SELECTED', `client ${clientId} was not asked to evaluate`);
      if (active.answered.has(clientId)) throw new FedtlError('DUPLICATE_UPDATE', `client ${clientId} already reported`);
      active.answered.add(clientId);
      active.evalLossSum += report.loss * report.examples;
      active.evalAccuracySum += report.accuracy * report.examples;
      active.evalExamples += report.examples;
      this.#maybeSettle(active);
      return { ok: true };
    } catch (thrown) {
      const error = toFedtlError(thrown, 'BAD_MESSAGE');
      this.#log.warn(`rejected evaluation from ${clientId}: ${error.message}`);
      return errorAck(error);
    }
  }

  #maybeSettle(active: ActiveRound): void {
    // O(dropped) rather than O(selected) per update: rounds with thousands of selected clients
    // call this once per update. Only selected clients are ever answered or dropped.
    let resolved = active.answered.size;
    for (const id of active.dropped) if (!active.answered.has(id)) resolved++;
    if (resolved >= active.selected.size) active.settle();
  }

  async #waitForMembers(minimum: number): Promise<void> {
    const limit = Date.now() + (this.#options.waitForClientsMs ?? 600_000);
    while (this.#members.size < minimum && !this.#stopped) {
      const remaining = limit - Date.now();
      if (remaining <= 0) throw new FedtlError('QUORUM_NOT_MET', `only ${this.#members.size} client(s) connected after waiting; ${minimum} needed`);
      this.#log.info(`waiting for clients: ${this.#members.size}/${minimum} ready`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.#membershipChanged = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#membershipChanged = null;
    }
  }

  #newActive(round: number, attempt: number, kind: 'fit' | 'evaluate', selected: string[], timeoutMs: number): { active: ActiveRound; done: Promise<void> } {
    let settle!: () => void;
    const done = new Promise<void>((resolve) => {
      settle = resolve;
    });
    const deadline = Date.now() + timeoutMs;
    const timer = setTimeout(() => settle(), timeoutMs);
    const active: ActiveRound = {
      round,
      roundId: `${this.#runId}-r${round}-a${attempt}-${kind}`,
      kind,
      deadline,
      selected: new Set(selected),
      answered: new Set(),
      dropped: new Set(),
      seenNonces: new Set(),
      rejected: {},
      aggregation: null,
      trainLossSum: 0,
      trainAccuracySum: 0,
      trainMetricExamples: 0,
      evalLossSum: 0,
      evalAccuracySum: 0,
      evalExamples: 0,
      bytesUp: 0,
      settle: () => {
        clearTimeout(timer);
        settle();
      },
    };
    return { active, done };
  }

  /** Runs rounds until `rounds` are complete; resolves with the history. */
  async run(): Promise<readonly RoundRecord[]> {
    const { strategy } = this.#options;
    const random = createRandom(`${this.#options.seed ?? 0}`);
    // Selection must not repeat after a resume: skip the draws of completed rounds' streams.
    while (this.#completedRounds < this.#options.rounds && !this.#stopped) {
      const round = this.#completedRounds + 1;
      const roundRandom = random.fork(`round-${round}`);
      const started = Date.now();
      let record: RoundRecord | null = null;
      const maxAttempts = this.#options.maxRoundAttempts ?? 3;
      for (let attempt = 1; attempt <= maxAttempts && !this.#stopped && !record; attempt++) {
        record = await this.#fitRound(strategy, round, attempt, () => roundRandom.nextFloat(), started);
        if (!record && attempt === maxAttempts) {
          throw new FedtlError('QUORUM_NOT_MET', `round ${round} failed ${maxAttempts} times for lack of a quorum of ${strategy.minUpdates} updates`);
        }
      }
      if (!record) break;
      await this.#evaluateRound(record);
      record.seconds = (Date.now() - started) / 1000;
      this.#history.push(record);
      this.#completedRounds = round;
      if (this.#options.checkpointDir) {
        await saveCheckpoint(this.#options.checkpointDir, {
          round,
          runId: this.#runId,
          baseHash: this.#options.baseHash,
          headSpec: this.#options.headSpec,
          manifest: this.#options.manifest,
          weights: this.#weights,
          history: this.#history,
        });
      }
      this.#options.onRound?.(record, this.#weights);
    }
    return this.#history;
  }

  async #fitRound(strategy: Strategy, round: number, attempt: number, random: () => number, started: number): Promise<RoundRecord | null> {
    await this.#waitForMembers(Math.max(strategy.minClients, strategy.minUpdates));
    if (this.#stopped) return null;
    const candidates: Candidate[] = [...this.#members.entries()].map(([clientId, member]) => ({ clientId, lastExampleCount: member.examples }));
    const selected = strategy.selectClients(round, candidates, random).map((c) => c.clientId);
    this.#lastSelected = selected;
    const timeout = this.#options.roundTimeoutMs ?? 60_000;
    const { active, done } = this.#newActive(round, attempt, 'fit', selected, timeout);
    active.aggregation = strategy.beginAggregation(round, this.#weights);
    const config = strategy.fitConfig(round);
    const weightBytes = float32ToBytes(this.#weights);
    const digest = createHash('sha256').update(weightBytes).digest('hex');
    const request: FitRequest = {
      roundId: active.roundId,
      round,
      weights: weightBytes,
      config,
      deadline: active.deadline,
      signature: this.#options.sign(roundSignedText('fit', active.roundId, round, active.deadline, digest, config)),
    };
    this.#active = active;
    this.#log.info(`round ${round}${attempt > 1 ? ` (attempt ${attempt})` : ''}: ${selected.length} of ${this.#members.size} clients selected`);
    for (const clientId of selected) this.#members.get(clientId)?.participant.sendFit(request);
    await done;
    this.#active = null;
    this.#closedFit = { round, deadline: active.deadline, selected: active.selected, answered: active.answered };
    const aggregation = active.aggregation;
    const missing = [...active.selected].filter((id) => !active.answered.has(id)).length;
    if (aggregation.count < strategy.minUpdates) {
      this.#log.warn(`round ${round}: ${aggregation.count} update(s) accepted, ${strategy.minUpdates} needed; retrying`);
      return null;
    }
    this.#weights = aggregation.finish();
    const trainExamples = active.trainMetricExamples;
    this.#log.info(`round ${round}: aggregated ${aggregation.count} update(s) over ${aggregation.exampleCount} examples; ${missing} dropped`);
    return {
      round,
      roundId: active.roundId,
      attempts: attempt,
      selected: selected.length,
      accepted: aggregation.count,
      dropped: missing,
      rejected: active.rejected,
      examples: aggregation.exampleCount,
      trainLoss: trainExamples > 0 ? active.trainLossSum / trainExamples : null,
      trainAccuracy: trainExamples > 0 ? active.trainAccuracySum / trainExamples : null,
      evalLoss: null,
      evalAccuracy: null,
      evalExamples: 0,
      serverLoss: null,
      serverAccuracy: null,
      bytesDown: weightBytes.byteLength * selected.length,
      bytesUp: active.bytesUp,
      seconds: (Date.now() - started) / 1000,
    };
  }

  async #evaluateRound(record: RoundRecord): Promise<void> {
    if (this.#options.evaluateGlobal) {
      const result = await this.#options.evaluateGlobal(this.#weights, record.round);
      record.serverLoss = result.loss;
      record.serverAccuracy = result.accuracy;
    }
    if (this.#options.federatedEvaluation === false || this.#stopped) return;
    const clients = this.#options.evaluateClients === 'all' ? [...this.#members.keys()] : this.#lastSelected.filter((id) => this.#members.has(id));
    if (clients.length === 0) return;
    const timeout = this.#options.evaluateTimeoutMs ?? 30_000;
    const { active, done } = this.#newActive(record.round, record.attempts, 'evaluate', clients, timeout);
    const weightBytes = float32ToBytes(this.#weights);
    const digest = createHash('sha256').update(weightBytes).digest('hex');
    const request: EvaluateRequest = {
      roundId: active.roundId,
      round: record.round,
      weights: weightBytes,
      deadline: active.deadline,
      signature: this.#options.sign(roundSignedText('evaluate', active.roundId, record.round, active.deadline, digest)),
    };
    this.#active = active;
    for (const clientId of clients) this.#members.get(clientId)?.participant.sendEvaluate(request);
    await done;
    this.#active = null;
    record.bytesDown += weightBytes.byteLength * clients.length;
    if (active.evalExamples > 0) {
      record.evalLoss = active.evalLossSum / active.evalExamples;
      record.evalAccuracy = active.evalAccuracySum / active.evalExamples;
      record.evalExamples = active.evalExamples;
    }
  }
}
