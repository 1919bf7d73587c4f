/**
 * Client-level DP-FedAvg (McMahan et al., ICLR 2018) configuration, calibration and budget.
 *
 * Two placements of the noise:
 * - **central**: the coordinator clips each opened delta to S, sums them with equal weights, adds
 *   N(0, (z·S)²) per coordinate to the sum and divides by the number of clients selected (the
 *   fixed denominator of McMahan et al., so a dropout does not change the scale of the noise).
 * - **distributed** (with secure aggregation, where the coordinator never sees a single delta):
 *   each client clips its own delta and adds N(0, (z·S)²/m_min) per coordinate, m_min being the
 *   fewest clients whose inputs can make up a sum (the secure-aggregation quorum). Any sum of at
 *   least m_min such inputs carries Gaussian noise of variance ≥ (z·S)². The noisy delta is then
 *   quantized with subtractive dither and masked. Proof sketch in `distributed-noise.ts`.
 *
 * The accountant charges every round as one sampled Gaussian step with q = selected / population
 * and noise multiplier z; the budget refuses a round whose cumulative ε would exceed the limit.
 */
import { FedtlError } from '../core/errors.ts';
import { DEFAULT_ORDERS, epsilonFor, epsilonFromRdp, noiseMultiplierFor, rdpSampledGaussian } from './accountant.ts';

/** Where the noise is added. */
export type NoisePlacement = 'central' | 'distributed';

/** What the user configures (CLI flags `--dp-*`). */
export interface DpOptions {
  /** Clipping norm S of each client's delta, > 0. */
  readonly clipNorm: number;
  /** Noise multiplier z (noise std = z·S on the sum). Give this or `targetEpsilon`. */
  readonly noiseMultiplier?: number;
  /** Target ε after all configured rounds; z is calibrated to it. */
  readonly targetEpsilon?: number;
  /** δ of the (ε, δ) guarantee, in (0, 1). @default 1e-5 */
  readonly delta?: number;
  /** Largest cumulative ε the coordinator may spend; a round that would exceed it is refused. @default targetEpsilon, else none */
  readonly budgetEpsilon?: number;
  /** Adapt S to the `targetQuantile` of update norms (Andrew et al. 2021). @default false */
  readonly adaptiveClip?: boolean;
  /** @default 'central' (`'distributed'` under secure aggregation) */
  readonly placement?: NoisePlacement;
}

export const DEFAULT_DELTA = 1e-5;

/** Everything a DP run needs, validated. */
export interface ResolvedDp {
  readonly clipNorm: number;
  readonly noiseMultiplier: number;
  readonly delta: number;
  readonly budgetEpsilon: number | undefined;
  readonly adaptiveClip: boolean;
  readonly placement: NoisePlacement;
  /** Sampling rate q = clients per round / population. */
  readonly samplingRate: number;
  /** ε the configured number of rounds will cost (for the start-up message). */
  readonly plannedEpsilon: number;
}

/** The federation shape the calibration depends on. */
export interface DpPlan {
  /** Clients that could be selected (the population). */
  readonly population: number;
  readonly clientsPerRound: number;
  readonly rounds: number;
  /** Rounds already charged (resume); their ε counts against the budget. @default 0 */
  readonly roundsDone?: number;
}

/** Validates the options against the plan; throws `BAD_CONFIG` / `PRIVACY_BUDGET` with what to change. */
export function resolveDp(options: DpOptions, plan: DpPlan): ResolvedDp {
  const { clipNorm } = options;
  if (!(clipNorm > 0) || !Number.isFinite(clipNorm)) throw new FedtlError('BAD_CONFIG', `--dp-clip S must be a finite number > 0, got ${clipNorm}`);
  const delta = options.delta ?? DEFAULT_DELTA;
  if (!(delta > 0 && delta < 1)) throw new FedtlError('BAD_CONFIG', `--dp-delta must be in (0, 1), got ${delta}`);
  for (const [name, v] of [['--dp-epsilon', options.targetEpsilon], ['--dp-budget', options.budgetEpsilon]] as const) {
    if (v !== undefined && !(v > 0 && Number.isFinite(v))) throw new FedtlError('BAD_CONFIG', `${name} ε must be a finite number > 0, got ${v}`);
  }
  if (options.noiseMultiplier !== undefined && !(options.noiseMultiplier > 0 && Number.isFinite(options.noiseMultiplier))) {
    throw new FedtlError('BAD_CONFIG', `--dp-noise-multiplier must be a finite number > 0, got ${options.noiseMultiplier}`);
  }
  if (options.noiseMultiplier === undefined && options.targetEpsilon === undefined) {
    throw new FedtlError('BAD_CONFIG', 'differential privacy needs --dp-noise-multiplier or --dp-epsilon');
  }
  const { population, clientsPerRound, rounds } = plan;
  if (!Number.isSafeInteger(population) || population < 1 || !Number.isSafeInteger(clientsPerRound) || clientsPerRound < 1 || clientsPerRound > population) {
    throw new FedtlError('BAD_CONFIG', `differential privacy needs 1 <= clients per round (${clientsPerRound}) <= population (${population})`);
  }
  const q = clientsPerRound / population;
  const noiseMultiplier = options.noiseMultiplier ?? noiseMultiplierFor(options.targetEpsilon as number, q, rounds, delta);
  const budgetEpsilon = options.budgetEpsilon ?? options.targetEpsilon;
  const done = plan.roundsDone ?? 0;
  if (budgetEpsilon !== undefined) {
    const spent = done === 0 ? 0 : epsilonFor(q, noiseMultiplier, done, delta);
    const next = epsilonFor(q, noiseMultiplier, done + 1, delta);
    if (next > budgetEpsilon) {
      throw new FedtlError(
        'PRIVACY_BUDGET',
        `the privacy budget ε = ${budgetEpsilon} is already spent: ${done} round(s) cost ε = ${spent.toFixed(3)} and one more would reach ε = ${next.toFixed(3)} (δ = ${delta}). Raise the budget or start a new model`,
      );
    }
  }
  return {
    clipNorm,
    noiseMultiplier,
    delta,
    budgetEpsilon,
    adaptiveClip: options.adaptiveClip ?? false,
    placement: options.placement ?? 'central',
    samplingRate: q,
    plannedEpsilon: epsilonFor(q, noiseMultiplier, rounds, delta),
  };
}

/** One round's entry in the privacy ledger, as written to history.json and the report. */
export interface PrivacyRecord {
  readonly round: number;
  readonly samplingRate: number;
  readonly noiseMultiplier: number;
  readonly clipNorm: number;
  /** ε of this round alone at δ. */
  readonly epsilonRound: number;
  /** ε of all rounds so far at δ (RDP composition). */
  readonly epsilonTotal: number;
  readonly delta: number;
}

/**
 * The running privacy account of a model: RDP summed over rounds at every order, converted to ε
 * at δ. Restorable from the records of a checkpoint.
 */
export class PrivacyLedger {
  readonly delta: number;
  readonly budgetEpsilon: number | undefined;
  readonly #orders: readonly number[];
  readonly #rdp: number[];
  readonly records: PrivacyRecord[] = [];

  constructor(options: { delta: number; budgetEpsilon?: number | undefined; orders?: readonly number[] }) {
    this.delta = options.delta;
    this.budgetEpsilon = options.budgetEpsilon;
    this.#orders = options.orders ?? DEFAULT_ORDERS;
    this.#rdp = this.#orders.map(() => 0);
  }

  /** ε spent so far. */
  get epsilon(): number {
    return this.#rdp.every((r) => r === 0) ? 0 : epsilonFromRdp(this.#rdp, this.delta, this.#orders).epsilon;
  }

  /** (ε of the round alone, cumulative ε) if a round at (q, z) ran now; records nothing. */
  preview(samplingRate: number, noiseMultiplier: number): { epsilonRound: number; epsilonTotal: number } {
    const step = this.#orders.map((a) => rdpSampledGaussian(samplingRate, noiseMultiplier, a));
    return {
      epsilonRound: epsilonFromRdp(step, this.delta, this.#orders).epsilon,
      epsilonTotal: epsilonFromRdp(this.#rdp.map((r, i) => r + (step[i] as number)), this.delta, this.#orders).epsilon,
    };
  }

  /** Throws `PRIVACY_BUDGET` if a round at (q, z) would take ε past the budget. */
  checkBudget(round: number, samplingRate: number, noiseMultiplier: number): void {
    if (this.budgetEpsilon === undefined) return;
    const { epsilonTotal } = this.preview(samplingRate, noiseMultiplier);
    if (epsilonTotal > this.budgetEpsilon) {
      throw new FedtlError(
        'PRIVACY_BUDGET',
        `round ${round} would raise ε from ${this.epsilon.toFixed(3)} to ${epsilonTotal.toFixed(3)}, over the budget ε = ${this.budgetEpsilon} (δ = ${this.delta}); stopping with the model of round ${round - 1}`,
      );
    }
  }

  /** Charges one round. */
  charge(round: number, samplingRate: number, noiseMultiplier: number, clipNorm: number): PrivacyRecord {
    const { epsilonRound } = this.preview(samplingRate, noiseMultiplier);
    this.#orders.forEach((a, i) => {
      this.#rdp[i] = (this.#rdp[i] as number) + rdpSampledGaussian(samplingRate, noiseMultiplier, a);
    });
    const record: PrivacyRecord = { round, samplingRate, noiseMultiplier, clipNorm, epsilonRound, epsilonTotal: this.epsilon, delta: this.delta };
    this.records.push(record);
    return record;
  }

  /** Rebuilds a ledger from saved records (a resumed run). */
  static restore(records: readonly PrivacyRecord[], options: { delta: number; budgetEpsilon?: number | undefined }): PrivacyLedger {
    const ledger = new PrivacyLedger(options);
    for (const r of records) ledger.charge(r.round, r.samplingRate, r.noiseMultiplier, r.clipNorm);
    return ledger;
  }
}
