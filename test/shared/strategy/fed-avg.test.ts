import { describe, expect, it } from 'vitest';
import { FedAvg, WeightedDeltaMean, foldWeighted, foldWeightedPair, foldWeightedQuad, sampleClients } from '../../../shared/strategy/fed-avg.ts';

describe('foldWeighted / foldWeightedPair / foldWeightedQuad', () => {
  it('a pair fold adds wa·a + wb·b to every element, as two single folds do', () => {
    const acc = Float64Array.from([1, -2, 0.5]);
    foldWeightedPair(acc, Float32Array.from([1, 2, 3]), 3, Float32Array.from([-1, 0.25, 4]), 2);
    expect(Array.from(acc)).toEqual([1 + 3 - 2, -2 + 6 + 0.5, 0.5 + 9 + 8]);
    const n = 1000;
    const a = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.01);
    const b = Float32Array.from({ length: n }, (_, i) => Math.cos(i) * 0.02);
    const start = Float64Array.from({ length: n }, (_, i) => i * 1e-3);
    const pair = Float64Array.from(start);
    foldWeightedPair(pair, a, 17, b, 5);
    const single = Float64Array.from(start);
    foldWeighted(single, a, 17);
    foldWeighted(single, b, 5);
    for (let i = 0; i < n; i++) expect(Math.abs(pair[i]! - single[i]!)).toBeLessThanOrEqual(1e-15 * Math.max(1, Math.abs(single[i]!)));
  });

  it('a quad fold adds wa·a + wb·b + wc·c + wd·d to every element, as four single folds do', () => {
    const acc = Float64Array.from([1, -2]);
    foldWeightedQuad(acc, Float32Array.from([1, 2]), 3, Float32Array.from([-1, 0.25]), 2, Float32Array.from([0.5, -4]), 4, Float32Array.from([8, 1]), 0.5);
    expect(Array.from(acc)).toEqual([1 + 3 - 2 + 2 + 4, -2 + 6 + 0.5 - 16 + 0.5]);
    const n = 1000;
    const deltas = [0, 1, 2, 3].map((k) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * (k + 1)) * 0.01));
    const weights = [17, 5, 1, 250];
    const start = Float64Array.from({ length: n }, (_, i) => i * 1e-3);
    const quad = Float64Array.from(start);
    foldWeightedQuad(quad, deltas[0]!, weights[0]!, deltas[1]!, weights[1]!, deltas[2]!, weights[2]!, deltas[3]!, weights[3]!);
    const single = Float64Array.from(start);
    deltas.forEach((d, k) => foldWeighted(single, d, weights[k]!));
    for (let i = 0; i < n; i++) expect(Math.abs(quad[i]! - single[i]!)).toBeLessThanOrEqual(1e-14 * Math.max(1, Math.abs(single[i]!)));
  });
});

describe('WeightedDeltaMean', () => {
  it('applies the example-weighted mean of deltas (hand-computed)', () => {
    // Prepare: global [1, 2]; client a: 10 examples, delta [1, 0]; client b: 30 examples, delta [-1, 4].
    const mean = new WeightedDeltaMean(new Float32Array([1, 2]));
    // Execute
    mean.add({ clientId: 'a', delta: new Float32Array([1, 0]), exampleCount: 10, metrics: {} });
    mean.add({ clientId: 'b', delta: new Float32Array([-1, 4]), exampleCount: 30, metrics: {} });
    // Assert: (10*1 + 30*-1)/40 = -0.5 → 0.5 ; (0 + 120)/40 = 3 → 5
    expect(Array.from(mean.finish())).toEqual([0.5, 5]);
    expect(mean.count).toBe(2);
    expect(mean.exampleCount).toBe(40);
  });

  it('folds a pre-summed partial exactly like the updates it sums (hand-computed)', () => {
    // Prepare: global [1, 2]; a: 10 × [1, 0], b: 30 × [-1, 4] pre-summed → [10 - 30, 0 + 120] = [-20, 120], 40 examples.
    const viaAdd = new WeightedDeltaMean(new Float32Array([1, 2]));
    viaAdd.add({ clientId: 'a', delta: new Float32Array([1, 0]), exampleCount: 10, metrics: {} });
    viaAdd.add({ clientId: 'b', delta: new Float32Array([-1, 4]), exampleCount: 30, metrics: {} });
    const viaPartial = new WeightedDeltaMean(new Float32Array([1, 2]));
    // Execute: one partial plus one ordinary update (c: 20 × [2, -2]) on top, and an empty partial.
    viaPartial.addPartial(new Float64Array([-20, 120]), 40, 2);
    viaPartial.addPartial(new Float64Array(2), 0, 0);
    viaAdd.add({ clientId: 'c', delta: new Float32Array([2, -2]), exampleCount: 20, metrics: {} });
    viaPartial.add({ clientId: 'c', delta: new Float32Array([2, -2]), exampleCount: 20, metrics: {} });
    // Assert: (−20 + 40)/60 = 1/3 → 1.333…; (120 − 40)/60 = 4/3 → 3.333…
    expect(viaPartial.count).toBe(3);
    expect(viaPartial.exampleCount).toBe(60);
    expect(Array.from(viaPartial.finish())).toEqual(Array.from(viaAdd.finish()));
    expect(Array.from(viaPartial.finish())).toEqual([Math.fround(1 + 1 / 3), Math.fround(2 + 4 / 3)]);
  });

  it('refuses a partial of the wrong size or with inconsistent counts', () => {
    const mean = new WeightedDeltaMean(new Float32Array(2));
    expect(() => mean.addPartial(new Float64Array(3), 1, 1)).toThrow(/3 values/);
    expect(() => mean.addPartial(new Float64Array(2), 1, 2)).toThrow(/claims 1 examples/);
    expect(() => mean.addPartial(new Float64Array(2), 5, 0)).toThrow(/claims 5 examples/);
    expect(() => mean.addPartial(new Float64Array(2), 1, -1)).toThrow(/-1 updates/);
    expect(mean.count).toBe(0);
  });

  it('scales by the server learning rate', () => {
    const mean = new WeightedDeltaMean(new Float32Array([0]), { serverLearningRate: 0.5 });
    mean.add({ clientId: 'a', delta: new Float32Array([2]), exampleCount: 1, metrics: {} });
    expect(Array.from(mean.finish())).toEqual([1]);
  });

  it('refuses wrong sizes, non-positive counts and an empty aggregate', () => {
    const mean = new WeightedDeltaMean(new Float32Array(3));
    expect(() => mean.add({ clientId: 'a', delta: new Float32Array(2), exampleCount: 1, metrics: {} })).toThrow(/BAD_SHAPE|3/);
    expect(() => mean.add({ clientId: 'a', delta: new Float32Array(3), exampleCount: 0, metrics: {} })).toThrow(/examples/);
    expect(() => mean.finish()).toThrow(/no update/);
  });

  it('does not lose precision over a thousand small updates', () => {
    const mean = new WeightedDeltaMean(new Float32Array([0]));
    for (let i = 0; i < 1000; i++) mean.add({ clientId: `c${i}`, delta: new Float32Array([1e-4]), exampleCount: 7, metrics: {} });
    expect(mean.finish()[0]).toBeCloseTo(1e-4, 9);
  });
});

describe('FedAvg selection', () => {
  const candidates = Array.from({ length: 50 }, (_, i) => ({ clientId: `c${i}` }));

  it('picks max(minClients, C·n) distinct clients, capped by maxClients', () => {
    let seed = 1;
    const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    expect(new FedAvg({ fractionFit: 0.1, minClients: 2 }).selectClients(1, candidates, random)).toHaveLength(5);
    expect(new FedAvg({ fractionFit: 0.01, minClients: 3 }).selectClients(1, candidates, random)).toHaveLength(3);
    expect(new FedAvg({ fractionFit: 1, minClients: 2, maxClients: 8 }).selectClients(1, candidates, random)).toHaveLength(8);
    const picked = sampleClients(candidates, 20, random).map((c) => c.clientId);
    expect(new Set(picked).size).toBe(20);
  });

  it('rejects nonsense options with a clear message', () => {
    expect(() => new FedAvg({ fractionFit: 0 })).toThrow(/fractionFit/);
    expect(() => new FedAvg({ minClients: 0 })).toThrow(/minClients/);
    expect(() => new FedAvg({ minClients: 5, maxClients: 2 })).toThrow(/maxClients/);
  });
});
