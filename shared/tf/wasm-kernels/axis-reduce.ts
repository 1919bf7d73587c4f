/**
 * `Sum` and `Mean` for wasm over a contiguous block of axes that is not innermost, replacing
 * tfjs-backend-wasm's path for that case: it first transposes the reduced axes to the end (a full
 * copy through a generic transpose), then reduces. Batch norm's moments and gradients reduce over
 * `[0, 1, 2]` of `[N, H, W, C]`, and global average pooling over `[1, 2]`: here those are one
 * streaming pass, `out[o, j] = Σ_r x[o, r, j]`, with float64 accumulators. Other reductions
 * (innermost axes, scattered axes, non-float dtypes) go to tfjs's kernel unchanged.
 */
import * as tf from '@tensorflow/tfjs';
import { withKernelScope } from './kernel-scope.ts';

/** `[outer, reduced, inner]` sizes when `axes` is one contiguous block with something after it. */
function blockShape(shape: readonly number[], axes: number[]): [number, number, number] | undefined {
  const sorted = [...axes].sort((a, b) => a - b);
  const first = sorted[0];
  const last = sorted.at(-1);
  if (first === undefined || last === undefined || last - first + 1 !== sorted.length || last === shape.length - 1) return undefined;
  const size = (from: number, to: number) => tf.util.sizeFromShape(shape.slice(from, to));
  return [size(0, first), size(first, last + 1), size(last + 1, shape.length)];
}

function createReduceConfig(kernelName: typeof tf.Sum | typeof tf.Mean, original: tf.KernelConfig): tf.KernelConfig {
  return {
    kernelName,
    backendName: 'wasm',
    kernelFunc: (args) => {
      const { x } = args.inputs as { x: tf.TensorInfo };
      const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
      const axes = tf.util.parseAxisParam(axis, x.shape);
      const block = x.dtype === 'float32' ? blockShape(x.shape, axes) : undefined;
      if (block === undefined || block[1] === 0) return original.kernelFunc(args);
      const [outer, reduced, inner] = block;
      const outShape = keepDims ? x.shape.map((size, i) => (axes.includes(i) ? 1 : size)) : x.shape.filter((_, i) => !axes.includes(i));
      const scale = kernelName === tf.Mean ? 1 / reduced : 1;
      return withKernelScope(args.backend, (scope) => {
        const out = scope.alloc(outShape);
        const src = scope.view(x);
        const dst = scope.view(out);
        const accumulator = new Float64Array(inner);
        for (let o = 0; o < outer; o++) {
          accumulator.fill(0);
          let s = o * reduced * inner;
          for (let r = 0; r < reduced; r++) {
            for (let j = 0; j < inner; j++) accumulator[j] = accumulator[j]! + src[s + j]!;
            s += inner;
          }
          const d = o * inner;
          for (let j = 0; j < inner; j++) dst[d + j] = accumulator[j]! * scale;
        }
        return out;
      });
    },
  };
}

export function createSumConfig(original: tf.KernelConfig): tf.KernelConfig {
  return createReduceConfig(tf.Sum, original);
}

export function createMeanConfig(original: tf.KernelConfig): tf.KernelConfig {
  return createReduceConfig(tf.Mean, original);
}
