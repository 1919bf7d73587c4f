/**
 * Head weights as the unit that crosses the wire: one flat Float32 buffer plus a manifest
 * (names, shapes, offsets). Pure code over typed arrays, except the two tensor adapters.
 */
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';

export interface WeightEntry {
  /** Variable name inside the head, e.g. `head/dense_0/kernel`. */
  name: string;
  shape: number[];
  /** Offset in float32 elements into the flat buffer. */
  offset: number;
  /** Number of float32 elements. */
  length: number;
}

export interface WeightManifest {
  entries: WeightEntry[];
  /** Total float32 elements; the flat buffer's length. */
  parameterCount: number;
}

export interface FlatWeights {
  manifest: WeightManifest;
  data: Float32Array;
}

/** Largest head a peer may describe; a manifest past this is refused before any allocation. */
export const MAX_PARAMETERS = 64 * 1024 * 1024;

function elementCount(shape: readonly number[]): number {
  return shape.reduce((product, dim) => product * dim, 1);
}

export function manifestFromShapes(named: ReadonlyArray<{ name: string; shape: readonly number[] }>): WeightManifest {
  let offset = 0;
  const entries = named.map(({ name, shape }) => {
    const length = elementCount(shape);
    const entry: WeightEntry = { name, shape: [...shape], offset, length };
    offset += length;
    return entry;
  });
  return { entries, parameterCount: offset };
}

/**
 * Validates an untrusted manifest (from a peer, a checkpoint or a file): contiguous, non-overlapping,
 * shapes of positive integers whose products match the lengths.
 */
export function parseManifest(value: unknown, source = 'manifest'): WeightManifest {
  const fail = (why: string): never => {
    throw new FedtlError('BAD_MESSAGE', `${source}: ${why}`);
  };
  if (typeof value !== 'object' || value === null) return fail('expected an object with entries and parameterCount');
  const record = value as Record<string, unknown>;
  const entriesValue = record['entries'];
  const count = record['parameterCount'];
  if (!Array.isArray(entriesValue)) return fail('entries must be an array');
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0 || count > MAX_PARAMETERS) {
    return fail(`parameterCount must be an integer in [0, ${MAX_PARAMETERS}]`);
  }
  let expectedOffset = 0;
  const entries: WeightEntry[] = entriesValue.map((raw: unknown, index: number) => {
    if (typeof raw !== 'object' || raw === null) return fail(`entries[${index}] is not an object`);
    const entry = raw as Record<string, unknown>;
    const name = entry['name'];
    const shape = entry['shape'];
    const offset = entry['offset'];
    const length = entry['length'];
    if (typeof name !== 'string' || name.length === 0 || name.length > 200) return fail(`entries[${index}].name must be a non-empty string`);
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d > 0)) {
      return fail(`entries[${index}].shape must be up to 8 positive integers`);
    }
    if (offset !== expectedOffset) return fail(`entries[${index}].offset is ${String(offset)}, expected ${expectedOffset}`);
    const dims = shape as number[];
    if (length !== elementCount(dims)) return fail(`entries[${index}].length ${String(length)} does not match shape [${dims.join(',')}]`);
    expectedOffset += length as number;
    return { name, shape: [...dims], offset: expectedOffset - (length as number), length: length as number };
  });
  if (expectedOffset !== count) return fail(`entries add up to ${expectedOffset} parameters but parameterCount is ${count}`);
  return { entries, parameterCount: count };
}

export function manifestsEqual(a: WeightManifest, b: WeightManifest): boolean {
  if (a.parameterCount !== b.parameterCount || a.entries.length !== b.entries.length) return false;
  return a.entries.every((entry, i) => {
    const other = b.entries[i]!;
    return entry.name === other.name && entry.offset === other.offset && entry.shape.join(',') === other.shape.join(',');
  });
}

/** Copies tensors into one flat buffer (reads them synchronously; the caller keeps ownership). */
export function flattenTensors(named: ReadonlyArray<{ name: string; tensor: tf.Tensor }>): FlatWeights {
  const manifest = manifestFromShapes(named.map(({ name, tensor }) => ({ name, shape: tensor.shape })));
  const data = new Float32Array(manifest.parameterCount);
  named.forEach(({ tensor }, i) => {
    data.set(tensor.dataSync() as Float32Array, manifest.entries[i]!.offset);
  });
  return { manifest, data };
}

/** Tensors for each manifest entry; the caller owns (and disposes) them. */
export function unflattenToTensors(weights: FlatWeights): tf.Tensor[] {
  const { manifest, data } = weights;
  if (data.length !== manifest.parameterCount) {
    throw new FedtlError('BAD_SHAPE', `weights have ${data.length} values but the manifest describes ${manifest.parameterCount}`);
  }
  return manifest.entries.map((entry) => tf.tensor(data.subarray(entry.offset, entry.offset + entry.length), entry.shape, 'float32'));
}

/** a - b, elementwise, into a new buffer. */
export function subtract(a: Float32Array, b: Float32Array): Float32Array {
  if (a.length !== b.length) throw new FedtlError('BAD_SHAPE', `cannot subtract buffers of ${a.length} and ${b.length} values`);
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! - b[i]!;
  return out;
}

/** First index holding NaN or ±Infinity, or -1. */
export function firstNonFinite(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    // v - v is NaN exactly when v is NaN or infinite; cheaper than Number.isFinite per element.
    if (v - v !== 0) return i;
  }
  return -1;
}

/** Float32 buffer → bytes for the wire, without copying when already aligned. */
export function float32ToBytes(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

/** Bytes from the wire → Float32 values; copies only when the bytes are not 4-byte aligned. */
export function bytesToFloat32(bytes: Uint8Array, source = 'weights'): Float32Array {
  if (bytes.byteLength % 4 !== 0) throw new FedtlError('BAD_SHAPE', `${source}: ${bytes.byteLength} bytes is not a whole number of float32 values`);
  if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  // Copy into a fresh buffer (Buffer#slice would return a view on the shared pool, not a copy).
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}
