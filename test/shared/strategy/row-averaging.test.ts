/**
 * Per-row averaging of embedding tables (shared/strategy/row-averaging.ts) as a pure aggregation:
 * rows counted from dense deltas and from row-sparse runs, the rescaling, and the layers that
 * refuse it (secure aggregation, differential privacy). The same rule over real sockets, with
 * sealed row-sparse and dense uploads, is in test/server/sparse-updates.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { FedtlError } from '../../../shared/core/errors.ts';
import { ClippedStrategy } from '../../../shared/strategy/clipped-strategy.ts';
import { FedAvg } from '../../../shared/strategy/fed-avg.ts';
import { badConfigOf, privacyLayers } from '../../support/privacy-layers.ts';
import { FedAvgM } from '../../../shared/strategy/fed-avg-m.ts';
import { FedAdagrad, FedAdam, FedYogi } from '../../../shared/strategy/fed-opt.ts';
import { FedProx } from '../../../shared/strategy/fed-prox.ts';
import { FedMedian, FedTrimmedMean, Krum, NormBounding } from '../../../shared/strategy/robust.ts';
import { createStrategy } from '../../../shared/strategy/registry.ts';
import { rowAveraged, rowTablesOf } from '../../../shared/strategy/row-averaging.ts';
import type { WeightManifest } from '../../../shared/weights/flat-weights.ts';

/** A 4-row × 2 table (`emb/embeddings`) after a 3-value dense entry: 11 values. */
const MANIFEST: WeightManifest = {
  parameterCount: 11,
  entries: [
    { name: 'dense/kernel', shape: [3], offset: 0, length: 3 },
    { name: 'emb/embeddings', shape: [4, 2], offset: 3, length: 8 },
  ],
} as unknown as WeightManifest;

describe('rowAveraged', () => {
  it('averages each table row over the updates that sent it, dense or row-sparse, and leaves the rest FedAvg', () => {
    // Prepare: client a (30 examples) sends rows 0, 2 and 3; client b (10) sends row 1 (as two runs of one value each) and row 3
    const tables = rowTablesOf(MANIFEST);
    expect(tables).toEqual([{ offset: 3, rows: 4, cols: 2 }]);
    const global = new Float32Array(11).fill(1);
    const a = Float32Array.from([0.4, 0, 0, /* row 0 */ 0.2, -0.2, /* row 1 */ 0, 0, /* row 2 */ 0.4, 0.4, /* row 3 */ 0.2, 0.2]);
    const bValues = Float32Array.from([0.8, 0, 0, /* row 1 */ 0.3, -0.1, /* row 3 */ 0.1, 0.1]);
    const bRuns = Uint32Array.from([0, 0, 3, 5, 3, 1, 6, 4, 1, 9, 5, 2]);
    const aggregation = rowAveraged(new FedAvg().aggregateFit(1, global), tables);

    // Execute
    aggregation.add({ clientId: 'a', delta: a, exampleCount: 30, metrics: {} });
    aggregation.addSparse!({ clientId: 'b', delta: { length: 11, values: bValues, runs: bRuns }, exampleCount: 10, metrics: {} });
    const next = Array.from(aggregation.finish(), (v) => Number(v.toFixed(6)));

    // Assert: the dense entry and the shared row 3 are FedAvg's means over 40 examples; rows 0 and 2
    // are a's own steps, row 1 b's (counted once although it came in two runs)
    expect(next).toEqual([1.5, 1, 1, 1.2, 0.8, 1.3, 0.9, 1.4, 1.4, 1.175, 1.175]);
    expect(aggregation.count).toBe(2);
    expect(aggregation.exampleCount).toBe(40);
    // Row averaging needs each update: no partial sums.
    expect(aggregation.addPartial).toBeUndefined();
  });

  it.each([
    ['FedAvg', 1],
    ['FedAvg with server learning rate 0.5', 0.5],
  ])('applies the step of a row one client of 1000 examples sent exactly, below half an ulp of FedAvg\'s step (%s)', (_name, eta) => {
    // Prepare: weights 0.3; client a (1 example) sends row 0 (Δ 1e-5) and row 1 (Δ 1e-4); client b
    // (999 examples) sends row 2 (Δ 1e-5) and the dense entry. N / N_row = 1000 for a's rows: FedAvg's
    // step there, 1e-8 and 1e-7, is below or a few half-ulps of 0.3 (2^-26 ≈ 1.5e-8).
    const tables = rowTablesOf(MANIFEST);
    const global = new Float32Array(11).fill(0.3);
    const a = Float32Array.from([0, 0, 0, /* row 0 */ 1e-5, 1e-5, /* row 1 */ 1e-4, -1e-4, 0, 0, 0, 0]);
    const b = Float32Array.from([2e-3, 0, 0, 0, 0, 0, 0, /* row 2 */ 1e-5, -1e-5, 0, 0]);
    const aggregation = rowAveraged(new FedAvg({ serverLearningRate: eta }).aggregateFit(1, global), tables);

    // Execute
    aggregation.add({ clientId: 'a', delta: a, exampleCount: 1, metrics: {} });
    aggregation.add({ clientId: 'b', delta: b, exampleCount: 999, metrics: {} });
    const next = aggregation.finish();

    // Assert: each row is its one sender's step η·Δ on the float32 weight, added in float64 and rounded
    // once (computed here from the inputs); the dense entry is FedAvg's mean η·999·Δ / 1000
    const g = Math.fround(0.3);
    const want = [g + (eta * 999 * Math.fround(2e-3)) / 1000, g, g];
    for (let i = 3; i < 11; i++) want.push(g + eta * (a[i]! + b[i]!));
    expect(Array.from(next)).toEqual(want.map(Math.fround));
    // The rare rows moved by η·Δ within half an ulp of 0.3 (2^-26): a step of 1e-5 is not rounded to
    // 0 before a rescale, nor one of 1e-4 to 8.9e-5.
    expect(next[3]).not.toBe(global[3]);
    expect(Math.abs(next[3]! - g - eta * Math.fround(1e-5))).toBeLessThanOrEqual(2 ** -26);
    expect(Math.abs(next[5]! - g - eta * Math.fround(1e-4))).toBeLessThanOrEqual(2 ** -26);
  });

  it('refuses an aggregation that is not a weighted mean', () => {
    const global = new Float32Array(11);
    expect(() => rowAveraged(new FedMedian().aggregateFit(1, global), rowTablesOf(MANIFEST))).toThrow(/rowAveraging needs a strategy whose aggregation is FedAvg's weighted mean/);
    // Clipping keeps FedAvg's mean, so it is taken through the clipping wrapper.
    expect(rowAveraged(new ClippedStrategy(new FedAvg({ rowAveraging: true }), { clipNorm: 1 }).aggregateFit(1, global), rowTablesOf(MANIFEST)).finish).toBeTypeOf('function');
  });

  it('is refused at construction by every strategy whose aggregation is not FedAvg\'s weighted mean', () => {
    const cases: Array<[string, () => unknown]> = [
      ['FedAvgM', () => new FedAvgM({ rowAveraging: true })],
      ['FedAdam', () => new FedAdam({ rowAveraging: true })],
      ['FedYogi', () => new FedYogi({ rowAveraging: true })],
      ['FedAdagrad', () => new FedAdagrad({ rowAveraging: true })],
      ['FedMedian', () => new FedMedian({ rowAveraging: true })],
      ['FedTrimmedMean', () => new FedTrimmedMean({ rowAveraging: true })],
      ['Krum', () => new Krum({ rowAveraging: true })],
      ['NormBounding', () => new NormBounding({ rowAveraging: true })],
    ];
    for (const [name, make] of cases) {
      const error = errorOf(make);
      expect(error, name).toBeInstanceOf(FedtlError);
      expect((error as FedtlError).code).toBe('BAD_CONFIG');
      expect((error as FedtlError).message).toMatch(new RegExp(`^${name} does not take rowAveraging: .*only FedAvg and FedProx`));
    }
    // Without it each one builds; FedAvg and FedProx take it.
    expect(new FedAdam({ rowAveraging: false }).rowAveraging).toBe(false);
    expect(new FedMedian().rowAveraging).toBe(false);
    expect(new FedAvg({ rowAveraging: true }).rowAveraging).toBe(true);
    expect(new FedProx({ rowAveraging: true }).rowAveraging).toBe(true);
  });

  it('is a FedAvg and FedProx parameter (0 or 1), forwarded by wrappers, and nothing else takes it', () => {
    expect(createStrategy('fedavg', {}).rowAveraging).toBe(false);
    expect(createStrategy('fedavg', {}, { rowAveraging: 1 }).rowAveraging).toBe(true);
    expect(createStrategy('fedprox', {}, { rowAveraging: 1 }).rowAveraging).toBe(true);
    expect(new ClippedStrategy(new FedAvg({ rowAveraging: true }), { clipNorm: 1 }).rowAveraging).toBe(true);
    expect(() => createStrategy('fedavg', {}, { rowAveraging: 2 })).toThrow(/rowAveraging \(--row-averaging\) of strategy fedavg must be an integer ≥ 0 and < 2, got 2/);
    expect(() => createStrategy('fedprox', {}, { rowAveraging: 0.5 })).toThrow(/rowAveraging \(--row-averaging\) of strategy fedprox must be an integer/);
    expect(() => createStrategy('fedavgm', {}, { rowAveraging: 1 })).toThrow(/rowAveraging is not a parameter of strategy fedavgm/);
  });

  it('is refused with secure aggregation (in-process and over sockets) and with differential privacy', () => {
    for (const [layer, make] of privacyLayers(() => new FedAvg({ minClients: 2, rowAveraging: true }))) {
      expect(badConfigOf(make).message).toMatch(new RegExp(`rowAveraging \\(--row-averaging 1\\) cannot be combined with ${layer}: .*; run with --row-averaging 0`));
    }
    // Without row averaging each one builds.
    for (const [, make] of privacyLayers(() => new FedAvg({ minClients: 2 }))) expect(make().rowAveraging).toBe(false);
  });
});

/** What `make` throws, or undefined when it returns. */
function errorOf(make: () => unknown): unknown {
  try {
    make();
  } catch (caught) {
    return caught;
  }
  return undefined;
}
