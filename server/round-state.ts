/**
 * The state of one running round: a fit round (collecting sealed updates) or an evaluate round
 * (collecting evaluation reports). Each owns accepting and counting its replies — who was
 * selected, who answered, who dropped out, what was rejected and why — and settles when every
 * selected client is resolved or the deadline passes. The round loop creates one per attempt and
 * awaits {@link RoundState.done}.
 */
import { FedtlError, toFedtlError, type ErrorCode } from '../shared/core/errors.ts';
import type { Ack, EvaluationResult } from '../shared/protocol/protocol.ts';
import { errorAck } from '../shared/protocol/protocol.ts';
import type { Aggregation, MetricAggregation } from '../shared/strategy/strategy.ts';
import type { WeightManifest } from '../shared/weights/flat-weights.ts';
import { isSparseDelta, sparseToDense, type SparseDelta } from '../shared/weights/sparse-rows.ts';
import type { UpdateIngest } from './update-ingest.ts';

/** What opening a sealed update yields (see shared/crypto). */
export interface OpenedUpdate {
  roundId: string;
  clientId: string;
  exampleCount: number;
  metrics: Record<string, number>;
  /** Dense, or the sent rows of a row-sparse upload (zero elsewhere). */
  delta: Float32Array | SparseDelta;
  /** Unique id of this envelope, for replay detection. */
  nonce: string;
}

/** Verifies, decrypts and validates a sealed update; throws a FedtlError on any problem. */
export type UpdateOpener = (sealed: Uint8Array, expected: UpdateExpectation) => OpenedUpdate;

/** What a fit round tells its opener about the updates it takes. */
export interface UpdateExpectation {
  roundId: string;
  clientId: string;
  parameterCount: number;
  /** The round's manifest when it accepts row-sparse uploads (see {@link FitRoundOptions.rowSparse}). @default undefined (dense only) */
  rowSparse?: WeightManifest;
}

/** Folds an opened delta into `aggregation`: sparse as it is where the aggregation takes it so, densely otherwise. */
function addUpdate(aggregation: Aggregation, update: { clientId: string; delta: Float32Array | SparseDelta; exampleCount: number; metrics: Record<string, number> }): void {
  const { delta } = update;
  if (!isSparseDelta(delta)) aggregation.add({ ...update, delta });
  else if (aggregation.addSparse) aggregation.addSparse({ ...update, delta });
  else aggregation.add({ ...update, delta: sparseToDense(delta) }); // robust rules, clipping, privacy: every coordinate
}

export type RoundKind = 'fit' | 'evaluate';

export interface RoundStateOptions {
  round: number;
  roundId: string;
  selected: readonly string[];
  timeoutMs: number;
  /** Told when a selected client is resolved (answered or dropped), to free it for other work. */
  onResolved?: (clientId: string) => void;
}

abstract class RoundState {
  abstract readonly kind: RoundKind;
  readonly round: number;
  readonly roundId: string;
  readonly deadline: number;
  readonly selected: ReadonlySet<string>;
  readonly answered = new Set<string>();
  readonly dropped = new Set<string>();
  readonly rejected: Partial<Record<ErrorCode, number>> = {};
  /** Resolves when every selected client answered or dropped, the deadline passed, or {@link close} was called. */
  readonly done: Promise<void>;
  #settle!: () => void;
  readonly #timer: ReturnType<typeof setTimeout>;
  readonly #onResolved: ((clientId: string) => void) | undefined;
  #closed = false;

  constructor(options: RoundStateOptions) {
    this.round = options.round;
    this.roundId = options.roundId;
    this.selected = new Set(options.selected);
    this.deadline = Date.now() + options.timeoutMs;
    this.#onResolved = options.onResolved;
    this.done = new Promise<void>((resolve) => {
      this.#settle = resolve;
    });
    this.#timer = setTimeout(() => this.close(), options.timeoutMs);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Selected clients that neither answered nor were accepted (dropped, or silent until the deadline). */
  get missing(): number {
    return this.selected.size - this.answered.size;
  }

  /** Stops collecting; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const id of this.selected) if (!this.answered.has(id) && !this.dropped.has(id)) this.#onResolved?.(id);
    this.#settle();
  }

  /** A selected client that will not answer (it left, crashed or will miss the deadline); the round stops waiting for it. */
  drop(clientId: string): boolean {
    if (this.#closed || !this.selected.has(clientId) || this.answered.has(clientId) || this.dropped.has(clientId)) return false;
    this.dropped.add(clientId);
    this.#resolved(clientId);
    return true;
  }

  /** Whether `clientId` may answer now; throws the typed refusal otherwise. */
  protected checkSender(clientId: string, noun: string): void {
    if (this.#closed) throw new FedtlError(Date.now() > this.deadline && this.selected.has(clientId) && !this.answered.has(clientId) ? 'DEADLINE_PASSED' : 'STALE_ROUND', `round ${this.round} is closed`);
    if (!this.selected.has(clientId)) throw new FedtlError('NOT_SELECTED', `client ${clientId} was not selected for round ${this.round}`);
    if (this.answered.has(clientId)) throw new FedtlError('DUPLICATE_UPDATE', `client ${clientId} already sent its ${noun} for round ${this.round}`);
    if (Date.now() > this.deadline) throw new FedtlError('DEADLINE_PASSED', `round ${this.round}'s deadline has passed`);
  }

  protected accepted(clientId: string): void {
    this.answered.add(clientId);
    this.#resolved(clientId);
  }

  protected refuse(thrown: unknown): Ack {
    const error = toFedtlError(thrown, 'BAD_MESSAGE');
    this.rejected[error.code] = (this.rejected[error.code] ?? 0) + 1;
    return errorAck(error);
  }

  #resolved(clientId: string): void {
    this.#onResolved?.(clientId);
    // O(dropped) rather than O(selected) per answer: rounds with thousands of selected clients
    // call this once per update. Only selected clients are ever answered or dropped.
    let resolved = this.answered.size;
    for (const id of this.dropped) if (!this.answered.has(id)) resolved++;
    if (resolved >= this.selected.size) this.close();
  }
}

export interface FitRoundOptions extends RoundStateOptions {
  aggregation: Aggregation;
  metrics: MetricAggregation;
  openUpdate: UpdateOpener;
  parameterCount: number;
  /** Largest example count one update weighs with (server/weight-bound.ts). @default Infinity */
  exampleCap?: number;
  /**
   * Opens updates on worker threads (server/update-ingest.ts) instead of this thread: updates then
   * come in through {@link FitRound.acceptAsync}, and the round must be {@link FitRound.settle}d
   * before its aggregation is read. @default null (the serial path, {@link FitRound.accept})
   */
  ingest?: UpdateIngest | null;
  /** Workers fold updates into partial sums when the aggregation takes them (`false`: they only open them). @default true */
  ingestFolds?: boolean;
  /**
   * The round's manifest, when it accepts row-sparse uploads of its embedding tables: set by the
   * round loop when the manifest has one and secure aggregation does not run (masks need every
   * coordinate). @default null (dense updates only; a row-sparse one is refused `BAD_MESSAGE`)
   */
  rowSparse?: WeightManifest | null;
}

/** A fit round: opens each sealed update, checks it belongs here, and folds it into the strategy's aggregation. */
export class FitRound extends RoundState {
  readonly kind = 'fit';
  readonly aggregation: Aggregation;
  readonly metrics: MetricAggregation;
  readonly #open: UpdateOpener;
  readonly #parameterCount: number;
  readonly #rowSparse: WeightManifest | null;
  readonly #exampleCap: number;
  /** Updates that claimed more examples than the cap and were weighed at the cap. */
  capped = 0;
  /** Envelope ids received this round (envelopes are bound to one roundId, so one round's worth suffices). */
  readonly #seenNonces = new Set<string>();
  bytesUp = 0;

  readonly #ingest: UpdateIngest | null;
  /** Workers fold updates into partial sums (the aggregation takes them); else they only open them. */
  readonly #fold: boolean;
  /** Updates folded on workers, to check against what the workers report at {@link settle}. */
  #folded = 0;
  /** Submissions to workers not answered yet. */
  readonly #inFlight = new Set<Promise<Ack>>();
  /** Each client's latest submission: a client's next one waits for it, as on the serial path. */
  readonly #lastOf = new Map<string, Promise<Ack>>();
  /** Open-only updates reach the aggregation in arrival order: each waits for the previous one's turn. */
  #turn: Promise<void> = Promise.resolve();

  constructor(options: FitRoundOptions) {
    super(options);
    this.aggregation = options.aggregation;
    this.metrics = options.metrics;
    this.#open = options.openUpdate;
    this.#parameterCount = options.parameterCount;
    this.#rowSparse = options.rowSparse ?? null;
    this.#exampleCap = options.exampleCap ?? Number.POSITIVE_INFINITY;
    this.#ingest = options.ingest ?? null;
    this.#fold = options.ingestFolds !== false && typeof this.aggregation.addPartial === 'function';
    this.#ingest?.begin({ roundId: this.roundId, parameterCount: this.#parameterCount, exampleCap: this.#exampleCap, ...(this.#rowSparse ? { rowSparse: this.#rowSparse } : {}) });
  }

  /** Where updates are opened: this thread, workers that also sum them, or workers that only open them. */
  get ingestMode(): 'serial' | 'fold' | 'open' {
    return this.#ingest === null ? 'serial' : this.#fold ? 'fold' : 'open';
  }

  /** Handles a sealed update; never throws, answers with a typed ack. */
  accept(clientId: string, sealed: Uint8Array): Ack {
    try {
      this.checkSender(clientId, 'update');
      const opened = this.#open(sealed, { roundId: this.roundId, clientId, parameterCount: this.#parameterCount, ...(this.#rowSparse ? { rowSparse: this.#rowSparse } : {}) });
      if (opened.roundId !== this.roundId) throw new FedtlError('STALE_ROUND', `update is for round ${opened.roundId}, the current round is ${this.roundId}`);
      if (opened.clientId !== clientId) throw new FedtlError('BAD_SIGNATURE', `update names client ${opened.clientId} but came from ${clientId}`);
      if (this.#seenNonces.has(opened.nonce)) throw new FedtlError('REPLAY', 'this update envelope was already received');
      this.#seenNonces.add(opened.nonce);
      // Bounded here, where every strategy's updates pass, not inside one strategy.
      const exampleCount = Math.min(opened.exampleCount, this.#exampleCap);
      if (exampleCount < opened.exampleCount) this.capped++;
      addUpdate(this.aggregation, { clientId, delta: opened.delta, exampleCount, metrics: opened.metrics });
      this.metrics.add(clientId, exampleCount, opened.metrics);
      this.bytesUp += sealed.byteLength;
      this.accepted(clientId);
      return { ok: true };
    } catch (thrown) {
      return this.refuse(thrown);
    }
  }

  /**
   * {@link accept} for a round with worker ingest (on the serial path it is `accept`): the same
   * checks, codes and counts. One client's updates are decided one after another, as on the
   * serial path, so a second update is DUPLICATE_UPDATE exactly when the first was accepted.
   */
  acceptAsync(clientId: string, sealed: Uint8Array): Promise<Ack> {
    const ingest = this.#ingest;
    if (ingest === null) return Promise.resolve(this.accept(clientId, sealed));
    const previous = this.#lastOf.get(clientId);
    const job = previous ? previous.then(() => this.#acceptOnWorker(ingest, clientId, sealed)) : this.#acceptOnWorker(ingest, clientId, sealed);
    this.#lastOf.set(clientId, job);
    this.#inFlight.add(job);
    void job.then(() => {
      this.#inFlight.delete(job);
      if (this.#lastOf.get(clientId) === job) this.#lastOf.delete(clientId);
    });
    return job;
  }

  /**
   * Waits for the updates still being opened on workers (they arrived before the round closed) and
   * folds the workers' partial sums into the aggregation. Call it after {@link done}, before the
   * aggregation is read. Resolves `false` if a worker died with part of the round: the round
   * cannot count. Nothing to do on the serial path.
   */
  async settle(): Promise<boolean> {
    const ingest = this.#ingest;
    if (ingest === null) return true;
    while (this.#inFlight.size > 0) await Promise.all([...this.#inFlight]);
    try {
      const partial = await ingest.finish();
      if (!this.#fold) return true;
      if (partial.count !== this.#folded) throw new FedtlError('INTERNAL', `workers summed ${partial.count} updates, ${this.#folded} were accepted`);
      if (partial.sum !== null && partial.count > 0) this.aggregation.addPartial!(partial.sum, partial.exampleCount, partial.count);
      return true;
    } catch {
      return false;
    }
  }

  async #acceptOnWorker(ingest: UpdateIngest, clientId: string, sealed: Uint8Array): Promise<Ack> {
    let release: (() => void) | undefined;
    try {
      this.checkSender(clientId, 'update');
      const turn = this.#turn;
      if (!this.#fold) {
        // The next update's turn comes once the previous one's came and this one is decided.
        const decided = new Promise<void>((resolve) => (release = resolve));
        this.#turn = Promise.all([turn, decided]).then(() => undefined);
      }
      const bytes = sealed.byteLength; // read before the bytes move to a worker
      const outcome = await ingest.submit(sealed, clientId, this.#fold);
      if (!outcome.ok) throw new FedtlError(outcome.code, outcome.message);
      const { header, weight } = outcome;
      // The worker refused any other round id or sender with the serial path's codes. A replayed
      // envelope cannot reach this point: it names its sender (checked) and a sender has one update per round.
      if (this.#seenNonces.has(header.updateId)) throw new FedtlError('REPLAY', 'this update envelope was already received');
      this.#seenNonces.add(header.updateId);
      if (this.#fold) this.#folded++;
      else {
        await turn;
        addUpdate(this.aggregation, { clientId, delta: outcome.delta!, exampleCount: weight, metrics: { ...header.metrics } });
      }
      if (weight < header.exampleCount) this.capped++;
      this.metrics.add(clientId, weight, header.metrics);
      this.bytesUp += bytes;
      this.accepted(clientId);
      return { ok: true };
    } catch (thrown) {
      return this.refuse(thrown);
    } finally {
      release?.();
    }
  }
}

export interface EvaluateRoundOptions extends RoundStateOptions {
  metrics: MetricAggregation;
}

/** An evaluate round: folds each selected client's report into the strategy's evaluation aggregate. */
export class EvaluateRound extends RoundState {
  readonly kind = 'evaluate';
  readonly metrics: MetricAggregation;

  constructor(options: EvaluateRoundOptions) {
    super(options);
    this.metrics = options.metrics;
  }

  accept(clientId: string, report: EvaluationResult): Ack {
    try {
      if (report.roundId !== this.roundId) throw new FedtlError('STALE_ROUND', `evaluation for ${report.roundId} is not the one running`);
      this.checkSender(clientId, 'evaluation');
      this.metrics.add(clientId, report.examples, { loss: report.loss, accuracy: report.accuracy });
      this.accepted(clientId);
      return { ok: true };
    } catch (thrown) {
      return this.refuse(thrown);
    }
  }
}

export type ActiveRound = FitRound | EvaluateRound;
