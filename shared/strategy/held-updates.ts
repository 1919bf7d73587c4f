/**
 * The base of the aggregations that cannot stream: coordinate-wise median, trimmed mean, Krum and
 * norm bounding need every update of the round at once. Each held update costs its delta, 4 bytes
 * per parameter (a copy: the loop may reuse the buffer it handed over), so a round holds
 * selected clients × parameters × 4 bytes. Before a round is sent out, {@link HoldingStrategy}
 * refuses a selection whose updates would exceed `maxHeldMB`, naming the numbers and the knobs.
 */
import { FedtlError } from '../core/errors.ts';
import { FedAvg, type FedAvgOptions } from './fed-avg.ts';
import { checkedOption, isPositive } from './option-check.ts';
import type { Aggregation, Candidate, ClientUpdate, FitInstruction } from './strategy.ts';

export const HOLDING_DEFAULTS = { maxHeldMB: 512 } as const;

export interface HoldingOptions extends FedAvgOptions {
  /** Largest memory the round's held updates may take, in MiB. @default 512 */
  maxHeldMB?: number;
}

/** One held update: a private copy of its delta. */
export interface HeldUpdate {
  clientId: string;
  delta: Float32Array;
  exampleCount: number;
}

/** Holds the round's updates; `combine` turns them into the next head once the round closed. */
export class HeldUpdates implements Aggregation {
  readonly #global: Float32Array;
  readonly #held: HeldUpdate[] = [];
  readonly #combine: (updates: readonly HeldUpdate[], global: Float32Array) => Float32Array;
  #examples = 0;

  constructor(global: Float32Array, combine: (updates: readonly HeldUpdate[], global: Float32Array) => Float32Array) {
    this.#global = global;
    this.#combine = combine;
  }

  add(update: ClientUpdate): void {
    if (update.delta.length !== this.#global.length) throw new FedtlError('BAD_SHAPE', `update from ${update.clientId} has ${update.delta.length} values, the head has ${this.#global.length}`);
    if (!Number.isSafeInteger(update.exampleCount) || update.exampleCount <= 0) throw new FedtlError('BAD_MESSAGE', `update from ${update.clientId} claims ${update.exampleCount} examples`);
    this.#held.push({ clientId: update.clientId, delta: Float32Array.from(update.delta), exampleCount: update.exampleCount });
    this.#examples += update.exampleCount;
  }

  get count(): number {
    return this.#held.length;
  }

  get exampleCount(): number {
    return this.#examples;
  }

  finish(): Float32Array {
    if (this.#held.length === 0) throw new FedtlError('QUORUM_NOT_MET', 'no update was aggregated');
    return this.#combine(this.#held, this.#global);
  }
}

/** `global + combined`, rounded once to float32. */
export function applyDelta(global: Float32Array, delta: ArrayLike<number>): Float32Array {
  const next = new Float32Array(global.length);
  for (let i = 0; i < next.length; i++) next[i] = global[i]! + delta[i]!;
  return next;
}

/** FedAvg whose aggregation holds every update: checks the memory cap before each round. */
export abstract class HoldingStrategy extends FedAvg {
  readonly maxHeldBytes: number;

  constructor(options: HoldingOptions = {}) {
    super(options);
    const megabytes = checkedOption(options.maxHeldMB, HOLDING_DEFAULTS.maxHeldMB, 'maxHeldMB', isPositive, 'a positive number');
    this.maxHeldBytes = megabytes * 1024 * 1024;
  }

  protected abstract combine(updates: readonly HeldUpdate[], global: Float32Array): Float32Array;

  override configureFit(round: number, global: Float32Array, candidates: readonly Candidate[], random: () => number): FitInstruction[] {
    const instructions = super.configureFit(round, global, candidates, random);
    const bytes = instructions.length * global.length * 4;
    if (bytes > this.maxHeldBytes) {
      throw new FedtlError(
        'BAD_CONFIG',
        `${this.name} holds every update of a round: ${instructions.length} clients × ${global.length} parameters × 4 bytes = ${(bytes / 1048576).toFixed(1)} MiB, over maxHeldMB ${(this.maxHeldBytes / 1048576).toFixed(0)}. Select fewer clients per round (fraction, maxClients), or raise maxHeldMB (--max-held-mb).`,
      );
    }
    return instructions;
  }

  override aggregateFit(_round: number, global: Float32Array): Aggregation {
    return new HeldUpdates(global, (updates, start) => this.combine(updates, start));
  }
}
