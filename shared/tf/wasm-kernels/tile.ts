/**
 * `Tile` for wasm, replacing tfjs-backend-wasm's own (an index computation per output element,
 * which made tiling the slowest kernel of a MobileNetV2 training step: batch-norm's gradient tiles
 * per-channel vectors to the whole activation). Here each source row is copied once and every
 * repetition is a block copy (`copyWithin`, a memmove) of what is already written.
 */
import * as tf from '@tensorflow/tfjs';
import { withKernelScope } from './kernel-scope.ts';

type Values = Float32Array | Int32Array;

/** Writes `src` (shape `shape`) tiled `reps` times into `dst`, one level (axis) at a time. */
function tileInto(src: Values, shape: readonly number[], reps: readonly number[], dst: Values): void {
  const rank = shape.length;
  const srcStrides = tf.util.computeStrides([...shape]);
  // Size of one output sub-block below each axis.
  const outBlock = new Array<number>(rank + 1).fill(1);
  for (let axis = rank - 1; axis >= 0; axis--) outBlock[axis] = outBlock[axis + 1]! * shape[axis]! * reps[axis]!;
  const fill = (axis: number, s: number, d: number): void => {
    const length = shape[axis]!;
    if (axis === rank - 1) {
      if (length === 1) dst.fill(src[s]!, d, d + reps[axis]!);
      else dst.set(src.subarray(s, s + length), d);
    } else {
      const child = outBlock[axis + 1]!;
      for (let i = 0; i < length; i++) fill(axis + 1, s + i * srcStrides[axis]!, d + i * child);
    }
    const written = length * outBlock[axis + 1]!;
    if (axis === rank - 1 && length === 1) return;
    for (let rep = 1; rep < reps[axis]!; rep++) dst.copyWithin(d + rep * written, d, d + written);
  };
  fill(0, 0, 0);
}

/** fedtl's `Tile` for float32 and int32; other dtypes (bool, string) go to `original`. */
export function createTileConfig(original: tf.KernelConfig): tf.KernelConfig {
  return {
    kernelName: tf.Tile,
    backendName: 'wasm',
    kernelFunc: (args) => {
      const { x } = args.inputs as { x: tf.TensorInfo };
      const { reps } = args.attrs as unknown as { reps: number[] };
      if ((x.dtype !== 'float32' && x.dtype !== 'int32') || x.shape.length === 0) return original.kernelFunc(args);
      return withKernelScope(args.backend, (scope) => {
        const out = scope.alloc(x.shape.map((size, i) => size * reps[i]!), x.dtype);
        if (tf.util.sizeFromShape(out.shape) > 0) tileInto(scope.view(x), x.shape, reps, scope.view(out));
        return out;
      });
    },
  };
}
