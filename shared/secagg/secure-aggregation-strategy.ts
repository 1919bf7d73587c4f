/**
 * Secure aggregation as a strategy wrapper for clients that run in the coordinator's process
 * (`fedtl simulate --secure-aggregation`, virtual mode). Each round's accepted deltas go through
 * the full SecAgg+ protocol of {@link runSecAggRound} — per-round X25519 keys, the sparse graph,
 * Shamir shares, fixed-point quantization, masks, unmasking, every message sealed and signed —
 * and only the unmasked, decoded weighted mean reaches the inner strategy, as its single update.
 *
 * What this mode shows and what it does not: the numbers (quantization, dither, dropouts) and
 * the protocol's cost are those of a deployment. Confidentiality is not: in a simulation every
 * party lives in one process, and the deltas reach this wrapper in the clients' sealed update
 * envelopes before they are masked.
 */
import { FedtlError } from '../core/errors.ts';
import type { Identity } from '../crypto/index.ts';
import { refuseRowAveraging } from '../strategy/row-averaging.ts';
import { refuseDriftCorrection } from '../strategy/drift-correction.ts';
import { StrategyWrapper } from '../strategy/strategy-wrapper.ts';
import type { Aggregation, Candidate, ClientUpdate, FitInstruction, Strategy } from '../strategy/strategy.ts';
import { checkSecAggParameters } from './protocol.ts';
import { runSecAggRound, type InProcessRound } from './in-process.ts';
import { decodeSum, ringCodec } from './quantize.ts';

/** Options of {@link SecureAggregation}. */
export interface SecureAggregationOptions {
  readonly coordinator: Identity;
  /** The key of an in-process client. */
  readonly identityOf: (clientId: string) => Identity | undefined;
  /** Most clients one round can select (checked against the ring and t at start). */
  readonly maxClients: number;
  /** Ring bit width. @default 32 */
  readonly bits?: number;
  /** Per-coordinate clipping range of the ring. @default 1 */
  readonly clipRange?: number;
  /** Largest FedAvg weight (example count) a client carries; larger counts are capped. 1 = unweighted. @default 1000 */
  readonly maxWeight?: number;
  /** Shamir threshold t. @default ⌈2(k+1)/3⌉ */
  readonly threshold?: number;
  /** Graph degree k. @default 2⌈1.5·log2 n⌉ */
  readonly degree?: number;
  /** Subtractive dither (needed by distributed DP). @default false */
  readonly dither?: boolean;
}

export class SecureAggregation extends StrategyWrapper {
  readonly wrapperName = 'secagg';
  readonly #o: SecureAggregationOptions;
  /** Statistics of the last round's protocol run. */
  lastRound: InProcessRound | undefined;

  constructor(inner: Strategy, options: SecureAggregationOptions) {
    super(inner);
    this.#o = options;
    // Bad input fails at start, not in round 1.
    refuseRowAveraging(inner, 'secure aggregation');
    refuseDriftCorrection(inner, 'secure aggregation');
    ringCodec({ maxClients: options.maxClients, ...this.#ring() });
    checkSecAggParameters(options.maxClients, options.threshold, options.degree);
  }

  #ring() {
    return { bits: this.#o.bits ?? 32, clipRange: this.#o.clipRange ?? 1, maxWeight: this.#o.maxWeight ?? 1000 };
  }

  override configureFit(round: number, global: Float32Array, candidates: readonly Candidate[], random: () => number): FitInstruction[] {
    const instructions = this.inner.configureFit(round, global, candidates, random);
    if (instructions.length > this.#o.maxClients) {
      throw new FedtlError('BAD_CONFIG', `round ${round} selected ${instructions.length} clients; secure aggregation was set up for at most ${this.#o.maxClients}`);
    }
    // Marked as the socket variant marks it: clients then seal dense deltas (no row indices in the
    // clear, SECURITY.md), and the round refuses row-sparse ones.
    return StrategyWrapper.withExtra(instructions, { secagg: true });
  }

  override aggregateFit(round: number, global: Float32Array): Aggregation {
    const inner = this.inner.aggregateFit(round, global);
    const held: ClientUpdate[] = [];
    let count = 0;
    let examples = 0;
    const ring = this.#ring();
    return {
      add: (update) => {
        held.push({ ...update, delta: Float32Array.from(update.delta) });
        count++;
        examples += update.exampleCount;
      },
      get count() {
        return count;
      },
      get exampleCount() {
        return examples;
      },
      finish: () => {
        if (held.length < 2) throw new FedtlError('SECAGG_FAILED', `secure aggregation needs at least 2 inputs, round ${round} has ${held.length}`);
        const codec = ringCodec({ maxClients: held.length, ...ring });
        const clients = held.map((u) => {
          const identity = this.#o.identityOf(u.clientId);
          if (!identity) throw new FedtlError('UNKNOWN_CLIENT', `no in-process identity for ${u.clientId}`);
          return { identity, delta: u.delta, weight: Math.min(ring.maxWeight, Math.max(1, Math.round(u.exampleCount))) };
        });
        held.length = 0;
        const result = runSecAggRound({
          roundId: `secagg-r${round}`,
          coordinator: this.#o.coordinator,
          codec,
          clients,
          ...(this.#o.degree === undefined ? {} : { degree: Math.min(this.#o.degree, clients.length - 1) }),
          ...(this.#o.threshold === undefined ? {} : { threshold: this.#o.threshold }),
          dither: this.#o.dither ?? false,
        });
        this.lastRound = result;
        const decoded = decodeSum(codec, result.sum, global.length, result.ditherSum);
        const mean = new Float32Array(global.length);
        for (let i = 0; i < mean.length; i++) mean[i] = (decoded.weightedSum[i] as number) / decoded.totalWeight;
        inner.add({ clientId: 'secagg-sum', delta: mean, exampleCount: decoded.totalWeight, metrics: {} });
        return inner.finish();
      },
    };
  }
}
