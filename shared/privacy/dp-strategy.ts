/**
 * DP-FedAvg as a strategy wrapper (McMahan et al., "Learning Differentially Private Recurrent
 * Language Models", ICLR 2018), as Flower wraps a strategy for differential privacy:
 *
 * - `configureFit` asks the accountant first and refuses (`PRIVACY_BUDGET`) a round whose
 *   cumulative ε would pass the budget; the round loop stops there and the caller exports the
 *   model it has;
 * - **central** placement: every update is clipped to S and counted with weight 1; `finish` adds
 *   N(0, (z·S)²) to the sum, divides by the number of clients selected (the fixed denominator) and
 *   hands that one noisy mean to the inner strategy as its only update, so a server optimizer
 *   (FedAvgM) only ever sees the noisy mean: post-processing;
 * - **distributed** placement (under secure aggregation): each update is clipped and given its
 *   client's share of the noise (distributed-noise.ts) before it goes to the inner strategy, which
 *   is then the secure-aggregation wrapper;
 * - adaptive clipping (Andrew et al. 2021) moves S after every round from the noisy count of
 *   unclipped updates; the delta then gets noise multiplier z_Δ and the accountant charges z.
 *
 * Every charged round is kept in {@link PrivacyLedger.records} (per round and cumulative ε) and
 * in the strategy state, so a resumed run keeps its account.
 */
import { FedtlError } from '../core/errors.ts';
import { refuseRowAveraging } from '../strategy/row-averaging.ts';
import { refuseDriftCorrection } from '../strategy/drift-correction.ts';
import { StrategyWrapper } from '../strategy/strategy-wrapper.ts';
import type { StrategyState } from '../strategy/strategy-state.ts';
import type { Aggregation, Candidate, ClientUpdate, FitInstruction, Strategy } from '../strategy/strategy.ts';
import { AdaptiveClip } from './adaptive-clip.ts';
import { addGaussianNoise, clipToNorm, cryptoNormalSource, type NormalSource } from './clip.ts';
import { addDistributedNoise } from './distributed-noise.ts';
import { PrivacyLedger, type PrivacyRecord, type ResolvedDp } from './dp-fedavg.ts';

/** Options of {@link DifferentialPrivacy}. */
export interface DifferentialPrivacyOptions {
  readonly dp: ResolvedDp;
  /** Clients that could be selected; q = selected / population. */
  readonly population: number;
  /** Distributed placement: fewest inputs a sum is made of (the secure-aggregation quorum). @default 1 */
  readonly minContributors?: number;
  /** Source of the noise. @default the CSPRNG */
  readonly normal?: NormalSource;
}

export class DifferentialPrivacy extends StrategyWrapper {
  readonly wrapperName = 'dp';
  readonly ledger: PrivacyLedger;
  readonly #o: DifferentialPrivacyOptions;
  readonly #adaptive: AdaptiveClip | undefined;
  readonly #normal: NormalSource;
  #clipNorm: number;
  #selected = 0;

  constructor(inner: Strategy, options: DifferentialPrivacyOptions) {
    super(inner);
    this.#o = options;
    refuseRowAveraging(inner, 'differential privacy');
    refuseDriftCorrection(inner, 'differential privacy');
    const { dp } = options;
    if (!Number.isSafeInteger(options.population) || options.population < 1) throw new FedtlError('BAD_CONFIG', `DP population must be an integer >= 1, got ${options.population}`);
    this.ledger = new PrivacyLedger({ delta: dp.delta, budgetEpsilon: dp.budgetEpsilon });
    this.#clipNorm = dp.clipNorm;
    this.#adaptive = dp.adaptiveClip ? new AdaptiveClip({ initialClipNorm: dp.clipNorm }) : undefined;
    this.#normal = options.normal ?? cryptoNormalSource();
  }

  /** The clipping norm the next round uses. */
  get clipNorm(): number {
    return this.#clipNorm;
  }

  /** The last charged round's record, if any. */
  get lastRecord(): PrivacyRecord | undefined {
    return this.ledger.records.at(-1);
  }

  override configureFit(round: number, global: Float32Array, candidates: readonly Candidate[], random: () => number): FitInstruction[] {
    const instructions = this.inner.configureFit(round, global, candidates, random);
    this.ledger.checkBudget(round, instructions.length / this.#o.population, this.#o.dp.noiseMultiplier);
    this.#selected = instructions.length;
    return instructions;
  }

  override aggregateFit(round: number, global: Float32Array): Aggregation {
    const { dp } = this.#o;
    const inner = this.inner.aggregateFit(round, global);
    const selected = Math.max(1, this.#selected);
    const clip = this.#clipNorm;
    const z = dp.noiseMultiplier;
    const zDelta = this.#adaptive ? this.#adaptive.deltaNoiseMultiplier(z, selected) : z;
    const distributed = dp.placement === 'distributed';
    let sum: Float64Array | null = null;
    let count = 0;
    let examples = 0;
    let unclipped = 0;
    const charge = () => {
      this.ledger.charge(round, selected / this.#o.population, z, clip);
      if (this.#adaptive) this.#clipNorm = this.#adaptive.update(unclipped, count, this.#normal);
    };
    return {
      add: (update: ClientUpdate) => {
        const delta = Float32Array.from(update.delta); // a copy: clipping must not touch the caller's buffer
        if (!clipToNorm(delta, clip).clipped) unclipped++;
        count++;
        examples += update.exampleCount;
        if (distributed) {
          addDistributedNoise(delta, zDelta, clip, this.#o.minContributors ?? 1, this.#normal);
          inner.add({ ...update, delta, exampleCount: 1 });
          return;
        }
        sum ??= new Float64Array(delta.length);
        for (let i = 0; i < delta.length; i++) sum[i] = (sum[i] as number) + (delta[i] as number);
      },
      get count() {
        return count;
      },
      get exampleCount() {
        return examples;
      },
      finish: () => {
        if (count === 0) throw new FedtlError('QUORUM_NOT_MET', 'no update was aggregated');
        if (distributed) {
          const next = inner.finish();
          charge();
          return next;
        }
        const total = sum as Float64Array;
        addGaussianNoise(total, zDelta * clip, this.#normal);
        const mean = new Float32Array(total.length);
        for (let i = 0; i < total.length; i++) mean[i] = (total[i] as number) / selected;
        inner.add({ clientId: 'dp-noisy-mean', delta: mean, exampleCount: 1, metrics: {} });
        const next = inner.finish();
        charge();
        return next;
      },
    };
  }

  protected override ownState(): StrategyState | null {
    const records: StrategyState = {};
    this.ledger.records.forEach((r, i) => {
      records[String(i)] = { ...r };
    });
    return { clipNorm: this.#clipNorm, records };
  }

  protected override restoreOwn(state: StrategyState | null): void {
    if (state === null) return;
    const clipNorm = state['clipNorm'];
    if (typeof clipNorm === 'number' && clipNorm > 0) this.#clipNorm = clipNorm;
    const records = state['records'];
    if (records === null || typeof records !== 'object' || records instanceof Float64Array) return;
    const restored: PrivacyRecord[] = Object.keys(records)
      .sort((a, b) => Number(a) - Number(b))
      .map((k) => parseRecord(records[k]));
    // Restore runs once, on a fresh ledger, before any round.
    for (const r of restored) this.ledger.charge(r.round, r.samplingRate, r.noiseMultiplier, r.clipNorm);
  }
}

function parseRecord(value: unknown): PrivacyRecord {
  const v = value as Record<string, unknown>;
  const num = (k: string): number => {
    const x = v?.[k];
    if (typeof x !== 'number' || !Number.isFinite(x)) throw new FedtlError('CORRUPT_FILE', `checkpoint privacy record: ${k} is not a number`);
    return x;
  };
  return {
    round: num('round'),
    samplingRate: num('samplingRate'),
    noiseMultiplier: num('noiseMultiplier'),
    clipNorm: num('clipNorm'),
    epsilonRound: num('epsilonRound'),
    epsilonTotal: num('epsilonTotal'),
    delta: num('delta'),
  };
}
