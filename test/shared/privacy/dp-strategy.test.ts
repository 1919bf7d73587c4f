import { describe, expect, it } from 'vitest';
import { FedtlError } from '../../../shared/core/errors.ts';
import { generateIdentity, publicIdentity, type Identity } from '../../../shared/crypto/index.ts';
import { DifferentialPrivacy } from '../../../shared/privacy/dp-strategy.ts';
import { resolveDp } from '../../../shared/privacy/dp-fedavg.ts';
import { SecureAggregation } from '../../../shared/secagg/secure-aggregation-strategy.ts';
import { FedAvg } from '../../../shared/strategy/fed-avg.ts';
import { decodeState, encodeState } from '../../../shared/strategy/strategy-state.ts';

const candidates = (n: number) => Array.from({ length: n }, (_, i) => ({ clientId: `c${i}` }));

describe('DifferentialPrivacy wrapper (central DP-FedAvg)', () => {
  it('clips each update, averages with the fixed denominator and adds z·S/m noise (hand-computed with a fixed draw)', () => {
    const dp = resolveDp({ clipNorm: 1, noiseMultiplier: 2 }, { population: 10, clientsPerRound: 2, rounds: 5 });
    const strategy = new DifferentialPrivacy(new FedAvg({ minClients: 2, fractionFit: 0.2 }), { dp, population: 10, normal: () => 0.5 });
    expect(strategy.name).toBe('dp(fedavg)');
    const picked = strategy.configureFit(1, new Float32Array(2), candidates(10), () => 0.3);
    expect(picked).toHaveLength(2);
    const agg = strategy.aggregateFit(1, new Float32Array([1, 1]));
    agg.add({ clientId: 'a', delta: new Float32Array([3, 4]), exampleCount: 500, metrics: {} }); // clipped to (0.6, 0.8)
    agg.add({ clientId: 'b', delta: new Float32Array([0.2, 0]), exampleCount: 1, metrics: {} }); // kept; equal weight despite 1 example
    const next = agg.finish();
    // sum = (0.8, 0.8) + 2·1·0.5 = (1.8, 1.8); mean over m = 2 → 0.9; global 1 + 0.9
    expect(next[0]).toBeCloseTo(1.9, 5);
    expect(next[1]).toBeCloseTo(1.9, 5);
    expect(agg.count).toBe(2);
    const record = strategy.lastRecord!;
    expect(record.round).toBe(1);
    expect(record.samplingRate).toBe(0.2);
    expect(record.epsilonTotal).toBeGreaterThan(0);
  });

  it('refuses the round that would pass the budget, and keeps its account across a checkpoint', () => {
    const dp = resolveDp({ clipNorm: 1, noiseMultiplier: 1, budgetEpsilon: 4 }, { population: 10, clientsPerRound: 5, rounds: 100 });
    const make = () => new DifferentialPrivacy(new FedAvg({ minClients: 5, fractionFit: 0.5 }), { dp, population: 10, normal: () => 0 });
    const strategy = make();
    let round = 1;
    let stop: unknown;
    for (; round < 50; round++) {
      try {
        strategy.configureFit(round, new Float32Array(1), candidates(10), () => 0.5);
      } catch (e) {
        stop = e;
        break;
      }
      const agg = strategy.aggregateFit(round, new Float32Array(1));
      agg.add({ clientId: 'x', delta: new Float32Array([0.1]), exampleCount: 1, metrics: {} });
      agg.finish();
    }
    expect(stop).toBeInstanceOf(FedtlError);
    expect((stop as FedtlError).code).toBe('PRIVACY_BUDGET');
    expect((stop as Error).message).toMatch(/over the budget ε = 4/);
    expect(strategy.ledger.epsilon).toBeLessThanOrEqual(4);
    const resumed = make();
    resumed.restore(decodeState(encodeState(strategy.state())));
    expect(resumed.ledger.records).toHaveLength(round - 1);
    expect(resumed.ledger.epsilon).toBeCloseTo(strategy.ledger.epsilon, 10);
    expect(() => resumed.configureFit(round, new Float32Array(1), candidates(10), () => 0.5)).toThrow(/over the budget/);
  });
});

describe('SecureAggregation wrapper', () => {
  it('hands the inner strategy the FedAvg of the deltas, through the full protocol', () => {
    const ids = new Map<string, Identity>();
    const clients = Array.from({ length: 5 }, () => generateIdentity());
    for (const c of clients) ids.set(publicIdentity(c).clientId, c);
    const strategy = new SecureAggregation(new FedAvg({ minClients: 5 }), { coordinator: generateIdentity(), identityOf: (id) => ids.get(id), maxClients: 5 });
    expect(strategy.name).toBe('secagg(fedavg)');
    const global = new Float32Array([0.5, -0.5, 0]);
    const agg = strategy.aggregateFit(1, global);
    const deltas = clients.map((_, k) => new Float32Array([0.01 * k, -0.02 * k, 0.3]));
    [...ids.keys()].forEach((id, k) => agg.add({ clientId: id, delta: deltas[k]!, exampleCount: k + 1, metrics: {} }));
    const next = agg.finish();
    expect(agg.count).toBe(5);
    // FedAvg by examples 1..5: Σ k·(k−1)·0.01 / 15 = 0.4/15 for the first coordinate
    expect(next[0]).toBeCloseTo(0.5 + 0.4 / 15, 6);
    expect(next[1]).toBeCloseTo(-0.5 - 0.8 / 15, 6);
    expect(next[2]).toBeCloseTo(0.3, 6);
    expect(strategy.lastRound?.survivors).toHaveLength(5);
  });

  it('refuses a threshold above the clients per round and a ring too small at start', () => {
    const base = { coordinator: generateIdentity(), identityOf: () => undefined };
    expect(() => new SecureAggregation(new FedAvg(), { ...base, maxClients: 5, threshold: 6 })).toThrow(/threshold t = 6 exceeds the 5 clients per round/);
    expect(() => new SecureAggregation(new FedAvg(), { ...base, maxClients: 1000, bits: 16, maxWeight: 1000 })).toThrow(/too small for 1000 clients/);
  });
});
