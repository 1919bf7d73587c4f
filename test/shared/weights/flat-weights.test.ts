import { describe, expect, it } from 'vitest';
import { bytesToFloat32, firstNonFinite, float32ToBytes, manifestFromShapes, parseManifest, subtract } from '../../../shared/weights/flat-weights.ts';

describe('weight manifests', () => {
  it('lays tensors out contiguously', () => {
    const manifest = manifestFromShapes([
      { name: 'a/kernel', shape: [2, 3] },
      { name: 'a/bias', shape: [3] },
    ]);
    expect(manifest.parameterCount).toBe(9);
    expect(manifest.entries.map((e) => [e.offset, e.length])).toEqual([[0, 6], [6, 3]]);
    expect(parseManifest(JSON.parse(JSON.stringify(manifest)))).toEqual(manifest);
  });

  it('refuses gaps, overlaps, bad shapes and absurd sizes', () => {
    const good = manifestFromShapes([{ name: 'w', shape: [2, 2] }, { name: 'b', shape: [2] }]);
    expect(() => parseManifest({ ...good, parameterCount: 7 })).toThrow(/parameterCount is 7/);
    expect(() => parseManifest({ entries: [{ ...good.entries[0], offset: 1 }], parameterCount: 4 })).toThrow(/offset/);
    expect(() => parseManifest({ entries: [{ name: 'w', shape: [2, -2], offset: 0, length: 4 }], parameterCount: 4 })).toThrow(/shape/);
    expect(() => parseManifest({ entries: [], parameterCount: 1e12 })).toThrow(/parameterCount/);
    expect(() => parseManifest('nope')).toThrow(/object/);
  });
});

describe('flat buffers', () => {
  it('round-trips float32 through bytes, aligned or not', () => {
    const values = new Float32Array([1.5, -2, 3e-8]);
    expect(Array.from(bytesToFloat32(float32ToBytes(values)))).toEqual(Array.from(values));
    const unaligned = new Uint8Array(13);
    unaligned.set(float32ToBytes(values), 1);
    expect(Array.from(bytesToFloat32(unaligned.subarray(1)))).toEqual(Array.from(values));
    expect(() => bytesToFloat32(new Uint8Array(5))).toThrow(/whole number/);
  });

  it('finds NaN and infinities and subtracts', () => {
    expect(firstNonFinite(new Float32Array([0, 1, Number.NaN]))).toBe(2);
    expect(firstNonFinite(new Float32Array([Number.NEGATIVE_INFINITY]))).toBe(0);
    expect(firstNonFinite(new Float32Array([3.4e38, -3.4e38]))).toBe(-1);
    expect(Array.from(subtract(new Float32Array([3, 1]), new Float32Array([1, 1])))).toEqual([2, 0]);
  });
});
