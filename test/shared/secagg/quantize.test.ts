import { describe, expect, it } from 'vitest';
import { FedtlError } from '../../../shared/core/errors.ts';
import { decodeSum, quantize, ringCodec } from '../../../shared/secagg/quantize.ts';

describe('ringCodec', () => {
  it('derives the scale that keeps the sum of K clients inside the ring (hand-computed)', () => {
    // Prepare: 16 bits, c = 1, K = 2, W = 1 → s = (2^15 − 1 − 2) / (2·1·1) = 16382.5
    const codec = ringCodec({ bits: 16, clipRange: 1, maxClients: 2, minLevels: 2 });
    expect(codec.scale).toBe(16382.5);
    expect(codec.mask).toBe(0xffff);
    expect(codec.sumErrorBound).toBeCloseTo(2 / (2 * 16382.5), 15);
  });

  it('quantizes by clamp, scale, round, two\'s complement (hand-computed)', () => {
    const codec = ringCodec({ bits: 16, clipRange: 1, maxClients: 2, minLevels: 2 });
    const q = quantize(codec, new Float32Array([0.5, -0.25, 2]), 1);
    // 0.5·16382.5 = 8191.25 → 8191; −0.25·16382.5 = −4095.625 → −4096 → 65536 − 4096; 2 is clamped to 1 → 16382.5 → 16383
    expect([...q]).toEqual([8191, 61440, 16383, 1]);
  });

  it('decodes the extreme sums of K clients exactly: no overflow at ±c·W for all K', () => {
    const K = 7;
    const W = 3;
    const codec = ringCodec({ bits: 16, clipRange: 0.5, maxClients: K, maxWeight: W, minLevels: 16 });
    for (const v of [0.5, -0.5]) {
      const sum = new Uint32Array(3);
      for (let k = 0; k < K; k++) {
        const q = quantize(codec, new Float32Array([v, -v]), W);
        for (let i = 0; i < 3; i++) sum[i] = ((sum[i] as number) + (q[i] as number)) & codec.mask;
      }
      const decoded = decodeSum(codec, sum, 2);
      expect(decoded.totalWeight).toBe(K * W);
      expect(Math.abs((decoded.weightedSum[0] as number) - K * W * v)).toBeLessThanOrEqual(codec.sumErrorBound);
      expect(Math.abs((decoded.weightedSum[1] as number) + K * W * v)).toBeLessThanOrEqual(codec.sumErrorBound);
    }
  });

  it('refuses a ring too small for K clients, naming the bits needed', () => {
    const attempt = () => ringCodec({ bits: 16, maxClients: 1000, maxWeight: 100 });
    expect(attempt).toThrow(FedtlError);
    expect(attempt).toThrow(/too small for 1000 clients.*Use at least \d+ bits/);
  });

  it('refuses a non-positive clipping range and bad bit widths', () => {
    expect(() => ringCodec({ maxClients: 10, clipRange: 0 })).toThrow(/clip range must be a finite number > 0/);
    expect(() => ringCodec({ maxClients: 10, bits: 40 })).toThrow(/bits must be an integer in \[8, 32\]/);
  });

  it('rejects NaN and out-of-range weights', () => {
    const codec = ringCodec({ maxClients: 4, maxWeight: 2 });
    expect(() => quantize(codec, new Float32Array([Number.NaN]), 1)).toThrow(/NaN/);
    expect(() => quantize(codec, new Float32Array([0]), 3)).toThrow(/weight must be an integer in \[1, 2\]/);
  });
});
