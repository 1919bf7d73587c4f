import { describe, expect, it } from 'vitest';
import { FedAdagrad, FedAdam, FedYogi } from '../../../shared/strategy/fed-opt.ts';
import { FedProx } from '../../../shared/strategy/fed-prox.ts';
import { FedMedian, FedTrimmedMean, Krum, krumScores, NormBounding } from '../../../shared/strategy/robust.ts';
import { createStrategy, registerStrategy, strategyNames } from '../../../shared/strategy/registry.ts';
import { decodeState, encodeState } from '../../../shared/strategy/strategy-state.ts';
import type { Strategy } from '../../../shared/strategy/strategy.ts';

/** One round: `updates` as [delta, examples] folded onto `global`. */
function round(strategy: Strategy, global: number[], updates: Array<[number[], number]>, r = 1): number[] {
  const aggregation = strategy.aggregateFit(r, Float32Array.from(global));
  updates.forEach(([delta, examples], k) => aggregation.add({ clientId: `c${k}`, delta: Float32Array.from(delta), exampleCount: examples, metrics: {} }));
  return Array.from(aggregation.finish());
}

describe('FedProx', () => {
  it('tells every client its proximal weight μ, and aggregates as FedAvg', () => {
    const strategy = new FedProx({ minClients: 2, proximalMu: 0.1, learningRate: 0.02 });
    const instructions = strategy.configureFit(1, new Float32Array(2), [{ clientId: 'a' }, { clientId: 'b' }], () => 0.3);
    expect(instructions.map((i) => i.config)).toEqual([
      { epochs: 1, batchSize: 32, learningRate: 0.02, optimizer: 'adam', proximalMu: 0.1 },
      { epochs: 1, batchSize: 32, learningRate: 0.02, optimizer: 'adam', proximalMu: 0.1 },
    ]);
    expect(round(strategy, [1], [[[1], 10], [[-1], 30]])).toEqual([0.5]);
    expect(() => new FedProx({ proximalMu: -1 })).toThrow(/proximalMu/);
  });
});

describe('FedAdam, FedYogi, FedAdagrad (Reddi et al. 2021)', () => {
  // β₁ = β₂ = 0.5, τ = 0.1 (v starts at τ² = 0.01), η = 1; the round's mean delta Δ = 0.4 (two clients 0.2 and 0.6).
  const options = { minClients: 1, serverLearningRate: 1, beta1: 0.5, beta2: 0.5, tau: 0.1 };
  const updates: Array<[number[], number]> = [[[0.2], 1], [[0.6], 1]];

  it('FedAdam: m = 0.2, v = 0.5·0.01 + 0.5·0.16 = 0.085, x = 0.2/(√0.085 + 0.1); round 2: m = 0.3, v = 0.1225, x += 0.3/0.45', () => {
    const strategy = new FedAdam(options);
    const x1 = round(strategy, [0], updates)[0]!;
    expect(x1).toBeCloseTo(0.2 / (Math.sqrt(0.085) + 0.1), 6);
    const x2 = round(strategy, [x1], updates, 2)[0]!;
    expect(x2).toBeCloseTo(x1 + 0.3 / (0.35 + 0.1), 6);
  });

  it('FedYogi: v = 0.01 − 0.5·0.16·sign(0.01 − 0.16) = 0.09, x = 0.2/(0.3 + 0.1) = 0.5', () => {
    expect(round(new FedYogi(options), [0], updates)[0]).toBeCloseTo(0.5, 6);
  });

  it('FedAdagrad: v = 0.01 + 0.16 = 0.17, x = 0.2/(√0.17 + 0.1)', () => {
    expect(round(new FedAdagrad(options), [0], updates)[0]).toBeCloseTo(0.2 / (Math.sqrt(0.17) + 0.1), 6);
  });

  it('resumes bit-identically from its checkpointed moments', () => {
    const run = (restoreAt: number | null) => {
      let strategy: Strategy = new FedYogi({ minClients: 1 });
      let w = [0.1, -0.3];
      for (let r = 1; r <= 4; r++) {
        if (r === restoreAt) {
          const saved = JSON.parse(JSON.stringify(encodeState(strategy.state()))) as unknown;
          strategy = new FedYogi({ minClients: 1 });
          strategy.restore(decodeState(saved));
        }
        w = round(strategy, w, [[[Math.sin(r) / 9, 0.01 * r], 3], [[0.02, Math.cos(r) / 5], 7]], r);
      }
      return w;
    };
    expect(run(3)).toEqual(run(null));
  });
});

describe('robust aggregation', () => {
  it('median: coordinate-wise, odd and even counts (hand-computed)', () => {
    expect(round(new FedMedian({ minClients: 1 }), [0, 0], [[[1, 10], 1], [[2, -1], 1], [[100, 0], 1]])).toEqual([2, 0]);
    // x: 1, 2, 3, 100 → 2.5; y: −1, 0, 5, 10 → 2.5
    expect(round(new FedMedian({ minClients: 1 }), [1, 1], [[[1, 10], 5], [[2, -1], 1], [[100, 0], 9], [[3, 5], 1]])).toEqual([3.5, 3.5]);
  });

  it('trimmed mean: β = 0.2 of five values cuts one from each end (hand-computed)', () => {
    // x: 1 2 3 4 100 → (2 + 3 + 4)/3 = 3; y: −50 0 1 2 3 → (0 + 1 + 2)/3 = 1
    const updates: Array<[number[], number]> = [[[1, 0], 1], [[100, 1], 1], [[3, -50], 1], [[4, 2], 1], [[2, 3], 1]];
    expect(round(new FedTrimmedMean({ minClients: 1, trimFraction: 0.2 }), [0, 0], updates)).toEqual([3, 1]);
  });

  it('Krum and Multi-Krum: scores are sums of squared distances to the n − f − 2 nearest (hand-computed)', () => {
    // f = 1, n = 5: two nearest. Deltas 0, 1, 2, 3, 100 → scores 1+4, 1+1, 1+1, 1+4, 97²+98².
    const deltas = [0, 1, 2, 3, 100].map((v) => Float32Array.from([v]));
    expect(Array.from(krumScores(deltas, 1))).toEqual([5, 2, 2, 5, 97 * 97 + 98 * 98]);
    const updates: Array<[number[], number]> = [0, 1, 2, 3, 100].map((v) => [[v], 1]);
    expect(round(new Krum({ byzantine: 1 }), [10], updates)).toEqual([11]);
    expect(round(new Krum({ byzantine: 1, multiKrum: 2 }), [10], updates)).toEqual([11.5]);
    expect(round(new Krum({ byzantine: 1, multiKrum: 3 }), [10], updates)).toEqual([11]);
    // Krum needs n ≥ 2f + 3: its quorum says so.
    expect(new Krum({ byzantine: 2, minClients: 2 }).minUpdates).toBe(7);
  });

  it('norm bounding: clips to c × the round’s median norm, then the example-weighted mean (hand-computed)', () => {
    // Norms 5, 1, 2 → median 2: [3, 4] → [1.2, 1.6]; mean ([1.2, 1.6] + [0, 1] + [0, 2]) / 3 = [0.4, 1.5333…]
    const next = round(new NormBounding({ minClients: 1 }), [0, 0], [[[3, 4], 1], [[0, 1], 1], [[0, 2], 1]]);
    expect(next[0]).toBeCloseTo(0.4, 6);
    expect(next[1]).toBeCloseTo(4.6 / 3, 6);
  });

  it('refuses a round whose held updates would pass the memory cap, naming the numbers and the knobs', () => {
    const strategy = new FedMedian({ minClients: 3, maxHeldMB: 1 });
    const candidates = [{ clientId: 'a' }, { clientId: 'b' }, { clientId: 'c' }];
    expect(() => strategy.configureFit(1, new Float32Array(200_000), candidates, () => 0.5)).toThrow(/median holds every update of a round: 3 clients × 200000 parameters × 4 bytes = 2\.3 MiB, over maxHeldMB 1.*--max-held-mb/);
    expect(strategy.configureFit(1, new Float32Array(1000), candidates, () => 0.5)).toHaveLength(3);
  });
});

describe('strategy registry', () => {
  it('builds every registered strategy by name, with defaults', () => {
    expect(strategyNames()).toEqual(['fedavg', 'fedavgm', 'fedprox', 'scaffold', 'fedadam', 'fedyogi', 'fedadagrad', 'median', 'trimmed-mean', 'krum', 'norm-bounding']);
    for (const name of strategyNames()) expect(createStrategy(name, { minClients: 5 }).name).toBe(name);
  });

  it('refuses an unknown name, a parameter the strategy does not take, a value out of range, and a duplicate', () => {
    expect(() => createStrategy('fedsgd', {})).toThrow(/unknown strategy "fedsgd"; choose one of fedavg/);
    expect(() => createStrategy('fedavg', {}, { serverMomentum: 0.9 })).toThrow(/serverMomentum is not a parameter of strategy fedavg; it takes serverLearningRate \(--server-lr\)/);
    expect(() => createStrategy('fedavgm', {}, { serverMomentum: 1 })).toThrow(/serverMomentum \(--server-momentum\) of strategy fedavgm must be ≥ 0 and < 1, got 1/);
    expect(() => createStrategy('krum', {}, { byzantine: 1.5 })).toThrow(/integer/);
    expect(() => registerStrategy({ name: 'fedavg', summary: '', params: [], create: () => createStrategy('fedavg', {}) })).toThrow(/already registered/);
  });
});
