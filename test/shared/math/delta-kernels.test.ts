import { describe, expect, it } from 'vitest';
import { foldQuad, inKernelMemory, KernelMemory, sumOfSquares } from '../../../shared/math/delta-kernels.ts';

/** The engine's WebAssembly global, typed for the two members the failure tests replace (the compiler's lib has no DOM). */
const wasm = (globalThis as unknown as { WebAssembly: { Instance: unknown; Memory: { prototype: { grow(pages: number): number } } } }).WebAssembly;

/** Deterministic float32 values of mixed sign and magnitude. */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return ((s / 2 ** 32 - 0.5) * 2) ** 3 * 10 ** ((s % 7) - 3);
  });
}

/** A kernel memory holding copies of `arrays` (float32) after a float64 sum of `sumLength` values. */
function inKernel(kernel: KernelMemory, sumLength: number, arrays: Float32Array[]): { sum: Float64Array; views: Float32Array[] } {
  const bytes = 8 * sumLength + arrays.reduce((total, a) => total + 4 * a.length, 0);
  expect(kernel.reserve(bytes)).toBe(true);
  const sum = new Float64Array(kernel.buffer, 0, sumLength);
  let offset = 8 * sumLength;
  const views = arrays.map((a) => {
    const view = new Float32Array(kernel.buffer, offset, a.length);
    view.set(a);
    offset += 4 * a.length;
    return view;
  });
  return { sum, views };
}

describe('delta kernels', () => {
  it('runs in WebAssembly SIMD on Node 20', () => {
    expect(KernelMemory.create()).not.toBeNull();
  });

  it('sumOfSquares: by hand, and bit for bit the same in a kernel memory as in a plain array, for every tail length', () => {
    expect(sumOfSquares(Float32Array.from([1, -2, 3]))).toBe(14);
    expect(sumOfSquares(new Float32Array(0))).toBe(0);
    const kernel = KernelMemory.create()!;
    for (const n of [1, 7, 8, 9, 15, 16, 17, 1000, 16_384, 20_003]) {
      const plain = values(n, n);
      const { views } = inKernel(kernel, 0, [plain]);
      const inMemory = views[0]!;
      // The SIMD path is taken for the view and for a subarray of it, never for the plain array.
      expect(inKernelMemory(inMemory)).toBe(true);
      expect(inKernelMemory(inMemory.subarray(3))).toBe(true);
      expect(inKernelMemory(plain)).toBe(false);
      expect(sumOfSquares(inMemory)).toBe(sumOfSquares(plain));
      // A view at an odd offset inside the memory, too (the envelope sums block by block).
      expect(sumOfSquares(inMemory.subarray(3))).toBe(sumOfSquares(plain.subarray(3)));
      // The same as a float64 sum to rounding (the order differs from a left-to-right loop).
      let exact = 0;
      for (const x of plain) exact += x * x;
      expect(Math.abs(sumOfSquares(plain) - exact)).toBeLessThanOrEqual(1e-12 * exact);
    }
  });

  it('sumOfSquares: NaN and ±Infinity make the sum non-finite in both forms (the envelope relies on it)', () => {
    const kernel = KernelMemory.create()!;
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      for (const at of [0, 5, 8, 20]) {
        const plain = values(21, 3);
        plain[at] = bad;
        const inMemory = inKernel(kernel, 0, [plain]).views[0]!;
        expect(Number.isFinite(sumOfSquares(plain))).toBe(false);
        expect(Object.is(sumOfSquares(inMemory), sumOfSquares(plain))).toBe(true);
      }
    }
  });

  it('foldQuad refuses a delta whose length differs from the sum, before touching the sum', () => {
    const acc = new Float64Array([1, 2, 3]);
    const three = () => new Float32Array(3);
    expect(() => foldQuad(acc, three(), 1, three(), 1, new Float32Array(2), 1, three(), 1)).toThrow(RangeError);
    expect(() => foldQuad(acc, three(), 1, three(), 1, three(), 1, new Float32Array(4), 1)).toThrow('every delta must have the sum');
    expect([...acc]).toEqual([1, 2, 3]);
  });

  it('foldQuad: by hand, and bit for bit the same in a kernel memory as in plain arrays (odd lengths too)', () => {
    const acc = Float64Array.from([1, -2, 0.5]);
    foldQuad(acc, Float32Array.from([1, 2, 0]), 3, Float32Array.from([-1, 0.25, 0]), 2, Float32Array.from([0.5, -4, 0]), 4, Float32Array.from([8, 1, 2]), 0.5);
    expect(Array.from(acc)).toEqual([1 + 3 - 2 + 2 + 4, -2 + 6 + 0.5 - 16 + 0.5, 0.5 + 1]);
    const kernel = KernelMemory.create()!;
    for (const n of [1, 2, 3, 1001, 20_000]) {
      const deltas = [0, 1, 2, 3].map((k) => values(n, 10 * n + k));
      const weights = [17, 5, 1, 250.5];
      const start = Float64Array.from({ length: n }, (_, i) => i * 1e-3 - 7);
      const { sum, views } = inKernel(kernel, n, deltas);
      // The ingest worker's layout (the sum, then the four decrypt buffers, in one memory) takes SIMD;
      // any one array outside it sends the fold to JavaScript.
      expect(inKernelMemory(sum, ...views)).toBe(true);
      expect(inKernelMemory(sum, views[0]!, views[1]!, views[2]!, deltas[3]!)).toBe(false);
      sum.set(start);
      const plain = Float64Array.from(start);
      for (let pass = 0; pass < 3; pass++) {
        foldQuad(sum, views[0]!, weights[0]!, views[1]!, weights[1]!, views[2]!, weights[2]!, views[3]!, weights[3]!);
        foldQuad(plain, deltas[0]!, weights[0]!, deltas[1]!, weights[1]!, deltas[2]!, weights[2]!, deltas[3]!, weights[3]!);
      }
      for (let i = 0; i < n; i++) if (sum[i] !== plain[i]) expect.fail(`n=${n}: element ${i} is ${sum[i]} in the kernel memory, ${plain[i]} in plain arrays`);
    }
  });

  it('a kernel memory grows on demand, and its new views are used in SIMD again', () => {
    const kernel = KernelMemory.create()!;
    const small = inKernel(kernel, 0, [values(64, 1)]).views[0]!;
    const expected = sumOfSquares(Float32Array.from(values(70_000, 2)));
    const grown = inKernel(kernel, 0, [values(70_000, 2)]).views[0]!;
    expect(small.length).toBe(0); // detached by the growth
    expect(inKernelMemory(small)).toBe(false);
    expect(inKernelMemory(grown)).toBe(true);
    expect(sumOfSquares(grown)).toBe(expected);
    expect(kernel.reserve(2 ** 32)).toBe(false); // beyond a kernel memory: the caller uses plain arrays
  });

  it('a growth the engine refuses returns false and leaves the memory and its views in SIMD', () => {
    // Committing pages fails only under memory pressure or an address-space limit, which a test
    // cannot cause without starving the machine, so the engine's growth is made to fail the way it
    // does then (a RangeError), for this one call.
    const kernel = KernelMemory.create()!;
    const { views } = inKernel(kernel, 0, [values(1000, 4)]);
    const before = views[0]!;
    const grow = wasm.Memory.prototype.grow;
    wasm.Memory.prototype.grow = () => {
      throw new RangeError('WebAssembly.Memory.grow(): Unable to grow instance memory');
    };
    try {
      expect(kernel.reserve(kernel.buffer.byteLength + 1)).toBe(false);
    } finally {
      wasm.Memory.prototype.grow = grow;
    }
    expect(before.length).toBe(1000);
    expect(inKernelMemory(before)).toBe(true);
    expect(sumOfSquares(before)).toBe(sumOfSquares(values(1000, 4)));
    // And it grows again once the engine allows it.
    expect(kernel.reserve(kernel.buffer.byteLength + 1)).toBe(true);
    expect(inKernelMemory(new Float32Array(kernel.buffer))).toBe(true);
  });

  it('a kernel memory the engine cannot set up gives null (plain arrays), not an error', () => {
    const Instance = wasm.Instance;
    wasm.Instance = function refused(): never {
      throw new RangeError('WebAssembly.Instance(): Out of memory: Cannot allocate Wasm memory for new instance');
    };
    try {
      expect(KernelMemory.create()).toBeNull();
    } finally {
      wasm.Instance = Instance;
    }
    expect(KernelMemory.create()).not.toBeNull();
  });
});
