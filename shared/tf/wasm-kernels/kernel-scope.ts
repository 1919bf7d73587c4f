/**
 * Runs wasm kernels on raw `TensorInfo`s from inside another kernel, and frees what they made.
 *
 * A kernel must not call public tfjs ops: while a gradient tape records, those calls would be
 * recorded as well and backprop would count them twice. tfjs's own backends compose kernels by
 * calling each other's kernel functions directly, below the engine; this helper does the same by
 * looking the wasm kernels up in tfjs's registry by name, and it owns every intermediate it hands
 * out so that a composite kernel leaks nothing, even when it throws.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { FedtlError } from '../../core/errors.ts';

/** The wasm backend handed to a kernel function (tfjs types it as `{}`). */
export function asWasmBackend(backend: unknown): BackendWasm {
  const candidate = backend as Partial<BackendWasm> | undefined;
  if (typeof candidate?.typedArrayFromHeap !== 'function' || typeof candidate.makeOutput !== 'function') {
    throw new FedtlError('BACKEND', 'a fedtl wasm kernel ran on a backend that is not wasm');
  }
  return candidate as BackendWasm;
}

export class WasmKernelScope {
  private readonly owned: tf.TensorInfo[] = [];

  constructor(readonly backend: BackendWasm) {}

  /** Runs the wasm kernel `kernelName`; its output belongs to this scope. */
  run(kernelName: string, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap = {}): tf.TensorInfo {
    const kernel = tf.getKernel(kernelName, 'wasm');
    if (kernel === undefined) throw new FedtlError('BACKEND', `the wasm backend has no '${kernelName}' kernel`);
    const out = kernel.kernelFunc({ inputs, attrs, backend: this.backend });
    if (Array.isArray(out)) throw new FedtlError('INTERNAL', `wasm kernel '${kernelName}' returned several outputs where one was expected`);
    this.owned.push(out);
    return out;
  }

  /** A view of `shape` on the same data (no copy). */
  reshape(x: tf.TensorInfo, shape: number[]): tf.TensorInfo {
    return this.run(tf.Reshape, { x }, { shape });
  }

  /** Fresh, uninitialised memory on the wasm heap, owned by this scope. */
  alloc(shape: number[], dtype: tf.DataType = 'float32'): tf.TensorInfo {
    const out = this.backend.makeOutput(shape, dtype);
    this.owned.push(out);
    return out;
  }

  /**
   * A typed view of a tensor's memory on the wasm heap. Take views after the last `alloc`/`run`
   * of a step: growing the heap detaches earlier views.
   */
  view(x: tf.TensorInfo): Float32Array | Int32Array {
    const values = this.backend.typedArrayFromHeap(x);
    if (!(values instanceof Float32Array || values instanceof Int32Array)) {
      throw new FedtlError('BAD_DATA', `expected a float32 or int32 tensor, got ${x.dtype}`);
    }
    return values;
  }

  /** Frees every tensor this scope made except `keep` (whose reference passes to the caller). */
  release(keep?: tf.TensorInfo): void {
    for (const info of this.owned.splice(0)) {
      if (info !== keep) this.backend.disposeData(info.dataId);
    }
  }
}

/**
 * Runs `body` with a fresh scope and returns its result; every other tensor the body made through
 * the scope is freed, also when it throws.
 */
export function withKernelScope(backend: unknown, body: (scope: WasmKernelScope) => tf.TensorInfo): tf.TensorInfo {
  const scope = new WasmKernelScope(asWasmBackend(backend));
  let result: tf.TensorInfo | undefined;
  try {
    result = body(scope);
    return result;
  } finally {
    scope.release(result);
  }
}

/** Throws a clear error unless every tensor is float32 (the wasm matrix kernels' only dtype). */
export function requireFloat32(kernelName: string, tensors: Record<string, tf.TensorInfo>): void {
  for (const [name, info] of Object.entries(tensors)) {
    if (info.dtype !== 'float32') throw new FedtlError('BAD_DATA', `${kernelName}: '${name}' must be float32, got ${info.dtype}`);
  }
}

/** Throws a clear error unless the layout is channels-last (NHWC), the only one implemented here. */
export function requireChannelsLast(kernelName: string, dataFormat: unknown): void {
  if (dataFormat !== undefined && dataFormat !== 'NHWC' && dataFormat !== 'channelsLast') {
    throw new FedtlError('BAD_CONFIG', `${kernelName} on wasm supports dataFormat 'NHWC' only, got '${String(dataFormat)}'`);
  }
}
