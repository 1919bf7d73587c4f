/**
 * fedtl's wasm gradient kernels against tfjs's `cpu` kernels on seeded random inputs, covering the
 * shapes, strides, paddings and channel multipliers fedtl's bases use (MobileNetV2: 3×3 stride-2
 * valid convolution after a [0, 1] zero pad, 1×1 convolutions, 3×3 depthwise same/stride 1 and
 * valid/stride 2; the small CNN: 3×3 convolutions on one channel; GloVe: embedding gradients).
 *
 * The kernels exist only for wasm, so every case runs on both backends explicitly, whatever
 * FEDTL_BACKEND the suite runs under. Max abs differences are printed at the end.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRandom } from '../../../../shared/math/random.ts';
import { withKernelScope } from '../../../../shared/tf/wasm-kernels/kernel-scope.ts';
import { isFedtlWasmKernel, registerWasmGradientKernels, selectBackend, WASM_FASTER_KERNELS, WASM_GRADIENT_KERNELS } from '../../../../shared/tf/index.ts';

type Shape4 = [number, number, number, number];
type Pad = 'same' | 'valid' | tf.backend_util.ExplicitPadding;

/** Seeded values in [-1, 1), so a failure reproduces. */
function random(size: number, seed: number): Float32Array {
  const rng = createRandom(seed);
  return Float32Array.from({ length: size }, () => rng.nextFloat() * 2 - 1);
}


interface KernelInput { shape: number[]; values: Float32Array | Int32Array; dtype: 'float32' | 'int32' }

function floats(shape: number[], seed: number): KernelInput {
  return { shape, values: random(tf.util.sizeFromShape(shape), seed), dtype: 'float32' };
}

/** Runs one kernel on `backend` and returns its values; checks it leaks no tensor. */
async function runOn(backend: 'cpu' | 'wasm', kernelName: string, inputs: Record<string, KernelInput>, attrs: object): Promise<{ shape: number[]; values: Float32Array }> {
  await selectBackend({ prefer: backend, log: false });
  const before = tf.memory().numTensors;
  const tensors: tf.NamedTensorMap = {};
  for (const [name, input] of Object.entries(inputs)) tensors[name] = tf.tensor(input.values, input.shape, input.dtype);
  const out = tf.engine().runKernel(kernelName, tensors, attrs as tf.NamedAttrMap) as tf.Tensor;
  const result = { shape: out.shape, values: (await out.data()) as Float32Array };
  tf.dispose([out, ...Object.values(tensors)]);
  expect(tf.memory().numTensors).toBe(before);
  return result;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

const report: Array<{ kernel: string; case: string; maxAbsDiff: number }> = [];

/** Runs on cpu and wasm, asserts equal shapes and values within float32 rounding of the sums. */
async function expectWasmMatchesCpu(kernelName: string, label: string, inputs: Record<string, KernelInput>, attrs: object): Promise<void> {
  const cpu = await runOn('cpu', kernelName, inputs, attrs);
  const wasm = await runOn('wasm', kernelName, inputs, attrs);
  expect(wasm.shape).toEqual(cpu.shape);
  const diff = maxAbsDiff(wasm.values, cpu.values);
  report.push({ kernel: kernelName, case: label, maxAbsDiff: diff });
  // Sums of up to a few hundred products of values in [-1, 1): float32 rounding stays far below this.
  expect(diff).toBeLessThan(1e-4);
  // And the outputs are not trivially zero (a kernel that wrote nothing would match a zero output).
  expect(cpu.values.some((v) => Math.abs(v) > 1e-3)).toBe(true);
}

interface ConvCase { label: string; x: Shape4; filter: Shape4; strides: number | [number, number]; pad: Pad; dilations?: number }

const CONV_CASES: ConvCase[] = [
  { label: 'MobileNetV2 Conv1: 3×3 stride 2 valid', x: [2, 9, 9, 3], filter: [3, 3, 3, 8], strides: 2, pad: 'valid' },
  { label: 'MobileNetV2 1×1 expand/project, same', x: [2, 3, 3, 16], filter: [1, 1, 16, 24], strides: 1, pad: 'same' },
  { label: 'MobileNetV2 Conv_1: 1×1 valid', x: [3, 3, 3, 20], filter: [1, 1, 20, 32], strides: 1, pad: 'valid' },
  { label: 'small CNN: 3×3 same on 1 channel', x: [2, 12, 12, 1], filter: [3, 3, 1, 8], strides: 1, pad: 'same' },
  { label: 'small CNN: 3×3 valid, 8 → 16', x: [2, 10, 10, 8], filter: [3, 3, 8, 16], strides: 1, pad: 'valid' },
  { label: '5×3 filter, strides [2, 1], same, odd sizes', x: [1, 11, 8, 4], filter: [5, 3, 4, 6], strides: [2, 1], pad: 'same' },
  { label: '1×1 stride 2 (strided pixels, no window)', x: [2, 7, 7, 5], filter: [1, 1, 5, 6], strides: 2, pad: 'valid' },
  { label: 'explicit asymmetric padding, stride 2', x: [2, 9, 9, 2], filter: [3, 3, 2, 3], strides: 2, pad: [[0, 0], [1, 2], [2, 0], [0, 0]] },
];

interface DepthwiseCase { label: string; x: Shape4; filter: Shape4; strides: number; pad: Pad }

const DEPTHWISE_CASES: DepthwiseCase[] = [
  { label: 'MobileNetV2 3×3 stride 1 same', x: [2, 6, 6, 24], filter: [3, 3, 24, 1], strides: 1, pad: 'same' },
  { label: 'MobileNetV2 3×3 stride 2 valid (after [0, 1] pad)', x: [2, 9, 9, 16], filter: [3, 3, 16, 1], strides: 2, pad: 'valid' },
  { label: 'top blocks at 96 px: 3×3 map, 3×3 same', x: [4, 3, 3, 40], filter: [3, 3, 40, 1], strides: 1, pad: 'same' },
  { label: 'channel multiplier 2, stride 2 same', x: [2, 8, 8, 3], filter: [3, 3, 3, 2], strides: 2, pad: 'same' },
  { label: 'channel multiplier 3, 5×5 valid', x: [1, 9, 7, 4], filter: [5, 5, 4, 3], strides: 1, pad: 'valid' },
  { label: 'explicit asymmetric padding, multiplier 2', x: [2, 9, 9, 2], filter: [3, 3, 2, 2], strides: 2, pad: [[0, 0], [1, 2], [2, 0], [0, 0]] },
];

describe('wasm gradient kernels', () => {
  beforeAll(async () => {
    await selectBackend({ prefer: 'wasm', log: false });
  });

  afterAll(async () => {
    console.info(`max abs difference, wasm vs cpu:\n${report.map((r) => `  ${r.kernel} | ${r.case} | ${r.maxAbsDiff.toExponential(2)}`).join('\n')}`);
    const pinned = process.env['FEDTL_BACKEND'];
    await selectBackend({ prefer: pinned === 'cpu' ? 'cpu' : 'wasm', log: false });
  });

  it('fills exactly the kernels wasm lacks and cpu has, for wasm only, idempotently', () => {
    const names = WASM_GRADIENT_KERNELS.map((k) => k.kernelName);
    expect(names).toEqual(['Conv2DBackpropFilter', 'DepthwiseConv2dNativeBackpropFilter', 'DepthwiseConv2dNativeBackpropInput', 'UnsortedSegmentSum']);
    for (const config of WASM_GRADIENT_KERNELS) {
      expect(tf.getKernel(config.kernelName, 'wasm')?.kernelFunc).toBe(config.kernelFunc);
      // The cpu backend keeps its own kernel: registration touches wasm only.
      const cpu = tf.getKernel(config.kernelName, 'cpu');
      expect(cpu).toBeDefined();
      expect(cpu?.kernelFunc).not.toBe(config.kernelFunc);
    }
    // Kernels wasm has but runs slowly in a training step: fedtl's replace them, on wasm only.
    expect(WASM_FASTER_KERNELS.map((k) => k.kernelName)).toEqual(['Conv2DBackpropInput', 'Tile', 'Sum', 'Mean', 'Sqrt']);
    for (const { kernelName } of [...WASM_GRADIENT_KERNELS, ...WASM_FASTER_KERNELS]) {
      expect(isFedtlWasmKernel(kernelName), kernelName).toBe(true);
      expect(tf.getKernel(kernelName, 'cpu')?.kernelFunc).not.toBe(tf.getKernel(kernelName, 'wasm')?.kernelFunc);
    }
    expect(registerWasmGradientKernels()).toEqual([]);
  });

  describe('Conv2DBackpropFilter and Conv2DBackpropInput', () => {
    it.each(CONV_CASES)('Conv2DBackpropFilter: $label', async ({ label, x, filter, strides, pad }) => {
      const info = tf.backend_util.computeConv2DInfo(x, filter, strides, 1, pad);
      await expectWasmMatchesCpu(tf.Conv2DBackpropFilter, label, { x: floats(x, 1), dy: floats(info.outShape, 2) }, {
        strides, pad, dataFormat: 'NHWC', filterShape: filter,
      });
    });

    it.each(CONV_CASES)('Conv2DBackpropInput: $label', async ({ label, x, filter, strides, pad }) => {
      const info = tf.backend_util.computeConv2DInfo(x, filter, strides, 1, pad);
      await expectWasmMatchesCpu(tf.Conv2DBackpropInput, label, { dy: floats(info.outShape, 12), filter: floats(filter, 13) }, {
        strides, pad, dataFormat: 'NHWC', inputShape: x,
      });
    });

    it('refuses non-float32 tensors with a clear error', async () => {
      await expect(runOn('wasm', tf.Conv2DBackpropFilter, {
        x: { shape: [1, 4, 4, 2], values: new Int32Array(32), dtype: 'int32' }, dy: floats([1, 4, 4, 3], 2),
      }, { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [1, 1, 2, 3] })).rejects.toThrow(/Conv2DBackpropFilter: 'x' must be float32, got int32/);
    });

    it('refuses channels-first data with a clear error', async () => {
      await expect(runOn('wasm', tf.Conv2DBackpropFilter, { x: floats([1, 2, 4, 4], 1), dy: floats([1, 3, 4, 4], 2) }, {
        strides: 1, pad: 'same', dataFormat: 'NCHW', filterShape: [1, 1, 2, 3],
      })).rejects.toThrow(/supports dataFormat 'NHWC' only/);
    });
  });

  describe('DepthwiseConv2dNativeBackpropFilter and ...BackpropInput', () => {
    it.each(DEPTHWISE_CASES)('$label', async ({ label, x, filter, strides, pad }) => {
      const info = tf.backend_util.computeConv2DInfo(x, filter, strides, 1, pad, undefined, true);
      await expectWasmMatchesCpu(tf.DepthwiseConv2dNativeBackpropFilter, label, { x: floats(x, 3), dy: floats(info.outShape, 4) }, {
        strides, pad, dilations: 1, filterShape: filter,
      });
      await expectWasmMatchesCpu(tf.DepthwiseConv2dNativeBackpropInput, label, { dy: floats(info.outShape, 5), filter: floats(filter, 6) }, {
        strides, pad, dilations: 1, inputShape: x,
      });
    });

    it('handles dilations: each gradient is the adjoint of the forward dilated convolution', async () => {
      // tfjs's cpu backprop kernels ignore dilations (tfjs's gradient refuses dilations > 1), so
      // here the reference is the forward kernel: <dy, conv(x, w)> = <x, dX(dy, w)> = <w, dW(x, dy)>.
      await selectBackend({ prefer: 'wasm', log: false });
      const before = tf.memory().numTensors;
      const x = tf.tensor4d(random(2 * 9 * 9 * 4, 7), [2, 9, 9, 4]);
      const w = tf.tensor4d(random(3 * 3 * 4 * 2, 8), [3, 3, 4, 2]);
      const attrs = { strides: 1, pad: 'same' as const, dilations: 2 };
      const [forward, viaInput, viaFilter] = tf.tidy(() => {
        const y = tf.depthwiseConv2d(x, w, 1, 'same', 'NHWC', 2);
        const dy = tf.tensor4d(random(y.size, 9), y.shape);
        const dx = tf.engine().runKernel(tf.DepthwiseConv2dNativeBackpropInput, { dy, filter: w }, { ...attrs, inputShape: x.shape }) as tf.Tensor;
        const dw = tf.engine().runKernel(tf.DepthwiseConv2dNativeBackpropFilter, { x, dy }, { ...attrs, filterShape: w.shape }) as tf.Tensor;
        return [tf.sum(tf.mul(dy, y)), tf.sum(tf.mul(x, dx)), tf.sum(tf.mul(w, dw))].map((t) => t.dataSync()[0]!);
      });
      tf.dispose([x, w]);
      expect(Math.abs(viaInput! - forward!)).toBeLessThan(1e-3);
      expect(Math.abs(viaFilter! - forward!)).toBeLessThan(1e-3);
      report.push({ kernel: 'depthwise backprop (adjoint)', case: 'dilation 2, multiplier 2', maxAbsDiff: Math.max(Math.abs(viaInput! - forward!), Math.abs(viaFilter! - forward!)) });
      expect(tf.memory().numTensors).toBe(before);
    });
  });

  it('a composite kernel frees its intermediates, also when it throws', async () => {
    await selectBackend({ prefer: 'wasm', log: false });
    const backend = tf.engine().backend;
    const before = backend.numDataIds();
    const x = tf.tensor2d([[1, 2], [3, 4]]);
    const kept = withKernelScope(backend, (scope) => {
      scope.alloc([1000]);
      return scope.run(tf.Transpose, { x: scope.reshape(x, [2, 2]) }, { perm: [1, 0] });
    });
    expect(backend.numDataIds()).toBe(before + 2);
    backend.disposeData(kept.dataId);
    expect(() => withKernelScope(backend, (scope) => {
      scope.alloc([1000]);
      scope.run(tf.Transpose, { x }, { perm: [1, 0] });
      throw new Error('kernel failed halfway');
    })).toThrow('kernel failed halfway');
    x.dispose();
    expect(backend.numDataIds()).toBe(before);
  });

  describe('Tile, Sum and Mean (faster replacements)', () => {
    it.each([
      { label: 'per-channel vector to an activation (batch norm gradient)', shape: [1, 1, 1, 24], reps: [4, 3, 3, 1] },
      { label: 'every axis repeated', shape: [2, 3, 4], reps: [3, 1, 2] },
      { label: 'inner axis of 1 repeated', shape: [5, 1], reps: [2, 7] },
    ])('Tile: $label', async ({ label, shape, reps }) => {
      await expectWasmMatchesCpu(tf.Tile, label, { x: floats(shape, 14) }, { reps });
    });

    it('Tile keeps int32 values exact and leaves bool to tfjs', async () => {
      await selectBackend({ prefer: 'wasm', log: false });
      const ints = tf.tile(tf.tensor2d([[1, 2], [3, 4]], [2, 2], 'int32'), [2, 2]);
      expect(ints.arraySync()).toEqual([[1, 2, 1, 2], [3, 4, 3, 4], [1, 2, 1, 2], [3, 4, 3, 4]]);
      const bools = tf.tile(tf.tensor1d([true, false], 'bool'), [2]);
      expect(Array.from(bools.dataSync())).toEqual([1, 0, 1, 0]);
      tf.dispose([ints, bools]);
    });

    it.each([
      { label: 'batch-norm moments: axes [0, 1, 2]', shape: [4, 3, 3, 40], axis: [0, 1, 2], keepDims: false },
      { label: 'global average pooling: axes [1, 2]', shape: [4, 3, 3, 40], axis: [1, 2], keepDims: false },
      { label: 'axis 0 with keepDims', shape: [6, 5], axis: [0], keepDims: true },
      { label: 'negative axis -3', shape: [2, 5, 3, 4], axis: [-3], keepDims: false },
      { label: 'innermost axes (tfjs kernel)', shape: [4, 6, 5], axis: [1, 2], keepDims: false },
      { label: 'scattered axes (tfjs kernel)', shape: [4, 6, 5], axis: [0, 2], keepDims: true },
    ])('Sum and Mean: $label', async ({ label, shape, axis, keepDims }) => {
      await expectWasmMatchesCpu(tf.Sum, label, { x: floats(shape, 15) }, { axis, keepDims });
      await expectWasmMatchesCpu(tf.Mean, label, { x: floats(shape, 16) }, { axis, keepDims });
    });
  });

  describe('Sqrt (faster replacement)', () => {
    it('gives the same float32 values as cpu on normal, subnormal, zero and special values', async () => {
      const rng = createRandom(17);
      // Adam's second moments: normal values, subnormal ones (below 1.18e-38), exact zeros.
      const values = Float32Array.from({ length: 4096 }, (_, i) => (i % 3 === 0 ? rng.nextFloat() * 10 : i % 3 === 1 ? rng.nextFloat() * 1e-39 : 0));
      values.set([Number.POSITIVE_INFINITY, -1, Number.NaN, 1.4e-45, 3.4e38], 0);
      const cpu = await runOn('cpu', tf.Sqrt, { x: { shape: [values.length], values, dtype: 'float32' } }, {});
      const wasm = await runOn('wasm', tf.Sqrt, { x: { shape: [values.length], values, dtype: 'float32' } }, {});
      // Bit for bit: both are the correctly rounded float32 square root (NaN for negatives and NaN).
      expect(Array.from(wasm.values)).toEqual(Array.from(cpu.values));
      expect(wasm.values[1]).toBeNaN();
      expect(cpu.values.some((v) => v > 0 && v < 1e-19)).toBe(true);
    });
  });

  describe('UnsortedSegmentSum', () => {
    it('sums rows into segments like cpu, dropping out-of-range ids', async () => {
      const ids = Int32Array.from({ length: 60 }, (_, i) => (i * 7) % 23);
      ids[5] = -1;
      ids[9] = 23;
      await expectWasmMatchesCpu(tf.UnsortedSegmentSum, 'embedding rows, 60 tokens into 23 segments', {
        x: floats([60, 16], 10), segmentIds: { shape: [60], values: ids, dtype: 'int32' },
      }, { numSegments: 23 });
    });

    it('works on 3-D values and int32 values', async () => {
      const ids = Int32Array.from([3, 0, 3, 1, 0]);
      await expectWasmMatchesCpu(tf.UnsortedSegmentSum, 'rank 3 values', {
        x: floats([5, 2, 3], 11), segmentIds: { shape: [5], values: ids, dtype: 'int32' },
      }, { numSegments: 4 });
      const out = await runOn('wasm', tf.UnsortedSegmentSum, {
        x: { shape: [5], values: Int32Array.from([1, 2, 3, 4, 5]), dtype: 'int32' }, segmentIds: { shape: [5], values: ids, dtype: 'int32' },
      }, { numSegments: 4 });
      expect(Array.from(out.values)).toEqual([2 + 5, 4, 0, 1 + 3]);
    });

    it('refuses segment ids that do not match x with a clear error', async () => {
      await expect(runOn('wasm', tf.UnsortedSegmentSum, {
        x: floats([4, 2], 1), segmentIds: { shape: [3], values: Int32Array.from([0, 1, 2]), dtype: 'int32' },
      }, { numSegments: 3 })).rejects.toThrow(/segmentIds must be 1-D with x.shape\[0\] = 4 ids/);
    });
  });
});
