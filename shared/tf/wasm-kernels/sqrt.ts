/**
 * `Sqrt` for wasm, replacing tfjs-backend-wasm's own on float32 tensors. Adam divides by the square
 * root of its second-moment estimate every step, and for weights whose gradients are tiny that
 * estimate holds subnormal float32 values, on which the wasm kernel's float32 square root runs
 * about 25 times slower than on normal ones (measured: 5.1 ms against 0.2 ms for 100,352 values;
 * a third of the CPU time of the main job's fine-tuning rounds went there). Widened to float64,
 * a float32 subnormal is an ordinary number, so the square root is taken in float64 and rounded
 * back once: the correctly rounded float32 result, as the float32 instruction gives.
 */
import * as tf from '@tensorflow/tfjs';
import { withKernelScope } from './kernel-scope.ts';

/** fedtl's `Sqrt` for float32 (the only dtype `tf.sqrt` takes); anything else goes to `original`. */
export function createSqrtConfig(original: tf.KernelConfig): tf.KernelConfig {
  return {
    kernelName: tf.Sqrt,
    backendName: 'wasm',
    kernelFunc: (args) => {
      const { x } = args.inputs as { x: tf.TensorInfo };
      if (x.dtype !== 'float32') return original.kernelFunc(args);
      return withKernelScope(args.backend, (scope) => {
        const out = scope.alloc([...x.shape], 'float32');
        const source = scope.view(x);
        const target = scope.view(out);
        // Float32Array stores round the float64 result to float32 (correctly rounded: a square root
        // computed in double and rounded to single is the single-precision square root).
        for (let i = 0; i < source.length; i++) target[i] = Math.sqrt(source[i]!);
        return out;
      });
    },
  };
}
