/**
 * Secure aggregation (SecAgg+, Bell et al. 2020, building on Bonawitz et al. 2017) over real
 * sockets: a strategy wrapper whose aggregation, once the fit round has closed, drives the four
 * phases of `shared/secagg` (advertise keys → share keys → masked input → unmask) with the clients
 * whose fit update was accepted, and hands only the unmasked weighted mean to the inner strategy.
 *
 * Under this wrapper a client's fit update carries a zero delta (its example count and training
 * metrics only); the real delta stays on the client until it is quantized and masked. Every phase
 * message is sealed and signed (`SecAggServerSession` / `SecAggClientSession`), parsed at the
 * boundary, bound to the phase's kind and this round's id: other rounds' or phases' messages are
 * `STALE_ROUND`, repeated ones `REPLAY` / `DUPLICATE_UPDATE`. A client that disconnects or stays
 * silent past the phase deadline drops out; the state machines decide whether the sum can still
 * be recovered, and when it cannot the round fails with `SECAGG_FAILED` (the round loop keeps the
 * last good head and retries).
 */
import { randomBytes } from 'node:crypto';
import { FedtlError } from '../shared/core/errors.ts';
import type { Identity, SenderKeys } from '../shared/crypto/index.ts';
import { checkSecAggParameters } from '../shared/secagg/protocol.ts';
import { decodeSum, ringCodec } from '../shared/secagg/quantize.ts';
import { SecAggServerSession } from '../shared/secagg/session.ts';
import { refuseRowAveraging } from '../shared/strategy/row-averaging.ts';
import { refuseDriftCorrection } from '../shared/strategy/drift-correction.ts';
import { StrategyWrapper } from '../shared/strategy/strategy-wrapper.ts';
import type { Aggregation, Candidate, FitInstruction, Strategy } from '../shared/strategy/strategy.ts';
import type { SecAggDown, SecAggStep } from '../shared/protocol/secagg-messages.ts';

/** How the wrapper reaches the clients: the coordinator's sockets. */
export interface SecAggLink {
  /** Sends one step to a client; false when it is not connected (it drops out). */
  send(clientId: string, message: SecAggDown): boolean;
  /** Public keys of a connected, admitted client, or undefined. */
  resolveClient(clientId: string): SenderKeys | undefined;
}

/** Options of {@link SocketSecureAggregation}. */
export interface SocketSecureAggregationOptions {
  readonly coordinator: Identity;
  /** Most clients one round can select (checked against the ring and t at start). */
  readonly maxClients: number;
  /** Ring bit width. @default 32 */
  readonly bits?: number;
  /** Per-coordinate clipping range of the ring. @default 1 */
  readonly clipRange?: number;
  /** Largest FedAvg weight (example count) a client carries; larger counts are capped. @default 1000 */
  readonly maxWeight?: number;
  /** Shamir threshold t. @default ⌈2(k+1)/3⌉ */
  readonly threshold?: number;
  /** How long one phase waits for the clients' replies. @default 30000 */
  readonly phaseTimeoutMs?: number;
}

interface Phase {
  readonly roundId: string;
  readonly session: SecAggServerSession;
  readonly expected: Set<string>;
  readonly answered: Set<string>;
  wake: () => void;
}


export class SocketSecureAggregation extends StrategyWrapper {
  readonly wrapperName = 'secagg';
  readonly #o: SocketSecureAggregationOptions;
  #link: SecAggLink | undefined;
  #phase: Phase | null = null;

  constructor(inner: Strategy, options: SocketSecureAggregationOptions) {
    super(inner);
    this.#o = options;
    // Bad settings fail at start, not in round 1.
    refuseRowAveraging(inner, 'secure aggregation');
    refuseDriftCorrection(inner, 'secure aggregation');
    ringCodec({ maxClients: options.maxClients, ...this.#ring() });
    checkSecAggParameters(options.maxClients, options.threshold);
  }

  #ring() {
    return { bits: this.#o.bits ?? 32, clipRange: this.#o.clipRange ?? 1, maxWeight: this.#o.maxWeight ?? 1000 };
  }

  /** Connects the wrapper to the coordinator's sockets. */
  attach(link: SecAggLink): void {
    this.#link = link;
  }

  override configureFit(round: number, global: Float32Array, candidates: readonly Candidate[], random: () => number): FitInstruction[] {
    const instructions = this.inner.configureFit(round, global, candidates, random);
    if (instructions.length > this.#o.maxClients) {
      throw new FedtlError('BAD_CONFIG', `round ${round} selected ${instructions.length} clients; secure aggregation was set up for at most ${this.#o.maxClients}`);
    }
    const ring = this.#ring();
    // The ring is part of the signed fit config, so a client quantizes exactly as the coordinator decodes.
    return StrategyWrapper.withExtra(instructions, { secagg: true, 'secagg.bits': ring.bits, 'secagg.clipRange': ring.clipRange, 'secagg.maxWeight': ring.maxWeight });
  }

  override aggregateFit(round: number, global: Float32Array): Aggregation {
    const inner = this.inner.aggregateFit(round, global);
    const inputs = new Map<string, number>();
    let examples = 0;
    const finishAsync = async (): Promise<Float32Array> => {
      const mean = await this.#run(round, global.length, inputs);
      inner.add({ clientId: 'secagg-sum', delta: mean.delta, exampleCount: mean.totalWeight, metrics: {} });
      return inner.finish();
    };
    return {
      add: (update) => {
        inputs.set(update.clientId, update.exampleCount);
        examples += update.exampleCount;
      },
      get count() {
        return inputs.size;
      },
      get exampleCount() {
        return examples;
      },
      finish: () => {
        throw new FedtlError('INTERNAL', 'secure aggregation over sockets finishes asynchronously (finishAsync)');
      },
      finishAsync,
    };
  }

  async #run(round: number, length: number, inputs: ReadonlyMap<string, number>): Promise<{ delta: Float32Array; totalWeight: number }> {
    const link = this.#link;
    if (!link) throw new FedtlError('INTERNAL', 'secure aggregation is not attached to a coordinator');
    // Keys are taken once per round: a client that disconnects later still has its shares checked.
    const keys = new Map<string, SenderKeys>();
    for (const id of inputs.keys()) {
      const k = link.resolveClient(id);
      if (k) keys.set(id, k);
    }
    const ids = [...keys.keys()];
    if (ids.length < 2) throw new FedtlError('SECAGG_FAILED', `secure aggregation needs at least 2 inputs, round ${round} has ${ids.length}`);
    const threshold = this.#o.threshold;
    if (threshold !== undefined && ids.length < threshold) throw new FedtlError('SECAGG_FAILED', `round ${round} has ${ids.length} inputs, fewer than the threshold t = ${threshold}`);
    const ring = this.#ring();
    const codec = ringCodec({ maxClients: ids.length, ...ring });
    const roundId = `secagg-r${round}-${randomBytes(6).toString('hex')}`;
    const session = new SecAggServerSession({
      roundId,
      coordinator: this.#o.coordinator,
      codec,
      vectorLength: length + 1,
      selected: ids,
      resolveClient: (id) => keys.get(id),
      ...(threshold === undefined ? {} : { threshold }),
    });
    try {
      await this.#step(roundId, session, 'start', new Map(ids.map((id) => [id, new Uint8Array(0)])), ids.length);
      await this.#step(roundId, session, 'keys', session.closeAdvertise(), ids.length);
      await this.#step(roundId, session, 'forward', session.closeShares(), ids.length);
      await this.#step(roundId, session, 'survivors', session.closeMaskedInput(), ids.length);
      const result = session.finish();
      const decoded = decodeSum(codec, result.sum, length, result.ditherSum);
      const delta = new Float32Array(length);
      for (let i = 0; i < length; i++) delta[i] = (decoded.weightedSum[i] as number) / decoded.totalWeight;
      return { delta, totalWeight: decoded.totalWeight };
    } finally {
      this.#phase = null;
    }
  }

  /** Sends one phase's messages and waits until every addressee answered, dropped or timed out. */
  async #step(roundId: string, session: SecAggServerSession, step: SecAggStep, messages: ReadonlyMap<string, Uint8Array>, clients: number): Promise<void> {
    const link = this.#link as SecAggLink;
    const phase: Phase = { roundId, session, expected: new Set(), answered: new Set(), wake: () => {} };
    this.#phase = phase;
    for (const [clientId, bytes] of messages) if (link.send(clientId, { roundId, step, clients, bytes })) phase.expected.add(clientId);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.#o.phaseTimeoutMs ?? 30_000);
      phase.wake = () => {
        if ([...phase.expected].every((id) => phase.answered.has(id))) {
          clearTimeout(timer);
          resolve();
        }
      };
      phase.wake();
    });
  }

  /** A client's sealed phase message; throws a `FedtlError` (and changes nothing) when it is refused. */
  receive(clientId: string, roundId: string, bytes: Uint8Array): void {
    const phase = this.#phase;
    if (!phase || phase.roundId !== roundId) throw new FedtlError('STALE_ROUND', `no secure-aggregation phase of round ${roundId} is open`);
    if (!phase.expected.has(clientId)) throw new FedtlError('NOT_SELECTED', `client ${clientId} is not part of this secure-aggregation phase`);
    if (phase.answered.has(clientId)) throw new FedtlError('DUPLICATE_UPDATE', `client ${clientId} already answered this phase`);
    const sender = phase.session.receive(bytes);
    if (sender !== clientId) throw new FedtlError('BAD_MESSAGE', `a message of ${sender} arrived on the connection of ${clientId}`);
    phase.answered.add(clientId);
    phase.wake();
  }

  /** A client disconnected: the current phase stops waiting for it. */
  dropped(clientId: string): void {
    const phase = this.#phase;
    if (!phase || !phase.expected.delete(clientId)) return;
    phase.wake();
  }
}
