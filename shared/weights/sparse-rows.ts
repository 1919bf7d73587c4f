/**
 * Row-sparse encoding of a delta: an embedding table's delta touches only the rows of the words a
 * client's texts contain (the others get no gradient, and Adam and SGD leave them exactly
 * unchanged), so those tables travel as (row indices, row values) and every other weight densely.
 *
 * Layout, little-endian, every field 4 bytes wide (so the float32 views stay aligned):
 *
 *     "fRS1"                                     magic
 *     per manifest entry, in order:
 *       row-sparse entry:  uint32 n, uint32 rows[n] (strictly increasing), float32 values[n × cols]
 *       dense entry:       float32 values[length]
 *
 * Pure code over typed arrays. Decoding validates everything (an encoded delta comes from a peer):
 * sizes, row order and range, and that the bytes end exactly where the manifest says.
 *
 * What the row indices reveal — which words a client used — is written in SECURITY.md.
 */
import { FedtlError } from '../core/errors.ts';
import type { WeightManifest } from './flat-weights.ts';

const MAGIC = 0x31535266; // "fRS1" read as a little-endian uint32

/** Names of manifest entries that are embedding tables (`<layer>/embeddings`, rank 2). */
export function embeddingEntryNames(manifest: WeightManifest): Set<string> {
  return new Set(manifest.entries.filter((e) => e.shape.length === 2 && e.name.endsWith('/embeddings')).map((e) => e.name));
}

/** Rows of each row-sparse entry that hold a non-zero value. */
function nonZeroRows(delta: Float32Array, offset: number, rows: number, cols: number): number[] {
  const used: number[] = [];
  for (let r = 0; r < rows; r++) {
    const start = offset + r * cols;
    for (let c = 0; c < cols; c++) {
      if (delta[start + c] !== 0) {
        used.push(r);
        break;
      }
    }
  }
  return used;
}

/**
 * Encodes `delta` (laid out by `manifest`) with the entries in `sparse` row-sparse.
 *
 * @example const bytes = encodeRowSparse(delta, manifest, embeddingEntryNames(manifest));
 */
export function encodeRowSparse(delta: Float32Array, manifest: WeightManifest, sparse: ReadonlySet<string>): Uint8Array {
  if (delta.length !== manifest.parameterCount) throw new FedtlError('BAD_SHAPE', `delta has ${delta.length} values, the manifest ${manifest.parameterCount}`);
  const plans = manifest.entries.map((entry) => {
    if (!sparse.has(entry.name)) return { entry, rows: null };
    if (entry.shape.length !== 2) throw new FedtlError('BAD_SHAPE', `row-sparse entry ${entry.name} must be a matrix, got [${entry.shape.join(',')}]`);
    return { entry, rows: nonZeroRows(delta, entry.offset, entry.shape[0]!, entry.shape[1]!) };
  });
  const words = 1 + plans.reduce((sum, { entry, rows }) => sum + (rows ? 1 + rows.length * (1 + entry.shape[1]!) : entry.length), 0);
  const buffer = new ArrayBuffer(words * 4);
  const u32 = new Uint32Array(buffer);
  const f32 = new Float32Array(buffer);
  u32[0] = MAGIC;
  let at = 1;
  for (const { entry, rows } of plans) {
    if (!rows) {
      f32.set(delta.subarray(entry.offset, entry.offset + entry.length), at);
      at += entry.length;
      continue;
    }
    const cols = entry.shape[1]!;
    u32[at++] = rows.length;
    u32.set(rows, at);
    at += rows.length;
    for (const r of rows) {
      f32.set(delta.subarray(entry.offset + r * cols, entry.offset + (r + 1) * cols), at);
      at += cols;
    }
  }
  return new Uint8Array(buffer);
}

/**
 * A delta that is zero outside a set of runs of consecutive values: what a row-sparse payload
 * decodes to without materializing the zeros. The coordinator validates and aggregates it as it
 * is (scan the sent values, add them into a running sum), so an update's cost follows the rows a
 * client sent, not the table's size.
 */
export interface SparseDelta {
  /** Length of the dense delta it stands for. */
  readonly length: number;
  /** The sent values; {@link SparseDelta.runs} index into it (other positions are not values). */
  readonly values: Float32Array;
  /**
   * Triplets (start in the dense delta, start in `values`, count): disjoint, inside `length`, each
   * inside one manifest entry, in increasing dense order as decoded. Every position outside a run is zero.
   */
  readonly runs: Uint32Array;
}

/** Whether `delta` is a {@link SparseDelta} rather than a dense one. */
export function isSparseDelta(delta: Float32Array | SparseDelta): delta is SparseDelta {
  return !(delta instanceof Float32Array);
}

/** The dense delta `sparse` stands for (zeros outside its runs). */
export function sparseToDense(sparse: SparseDelta): Float32Array {
  const dense = new Float32Array(sparse.length);
  const { runs, values } = sparse;
  for (let k = 0; k < runs.length; k += 3) dense.set(values.subarray(runs[k + 1]!, runs[k + 1]! + runs[k + 2]!), runs[k]!);
  return dense;
}

/**
 * `acc[i] += weight · delta[i]` in float64 over the sent values only: bit for bit what the dense
 * fold gives, since every other term would add `weight · 0 = 0`.
 */
export function foldSparse(acc: Float64Array, sparse: SparseDelta, weight: number): void {
  if (sparse.length !== acc.length) throw new FedtlError('BAD_SHAPE', `sparse delta stands for ${sparse.length} values, the sum has ${acc.length}`);
  const { runs, values } = sparse;
  for (let k = 0; k < runs.length; k += 3) {
    const to = runs[k]!;
    const from = runs[k + 1]!;
    const count = runs[k + 2]!;
    for (let i = 0; i < count; i++) acc[to + i] = acc[to + i]! + weight * values[from + i]!;
  }
}

/**
 * Decodes bytes from {@link encodeRowSparse} into a {@link SparseDelta} on `manifest`, checking the
 * structure (not the values: the caller scans those as it scans a dense delta).
 *
 * @throws FedtlError `BAD_MESSAGE` naming the entry when the bytes do not fit the manifest
 */
export function decodeRowSparseRuns(bytes: Uint8Array, manifest: WeightManifest, sparse: ReadonlySet<string>): SparseDelta {
  const fail = (why: string): never => {
    throw new FedtlError('BAD_MESSAGE', `row-sparse delta: ${why}`);
  };
  if (bytes.byteLength % 4 !== 0 || bytes.byteLength < 4) fail(`${bytes.byteLength} bytes is not a whole number of 4-byte words`);
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const words = aligned.byteLength / 4;
  const u32 = new Uint32Array(aligned.buffer, aligned.byteOffset, words);
  const f32 = new Float32Array(aligned.buffer, aligned.byteOffset, words);
  if (u32[0] !== MAGIC) fail('wrong magic; not a row-sparse delta');
  const runs: number[] = [];
  // Consecutive rows of one table are one run in both layouts: merged. Never across entries, so a
  // run stays inside one entry (ModelSchedule.expandSparse moves runs entry by entry).
  let entryRuns = 0;
  const run = (to: number, from: number, count: number) => {
    const last = runs.length - 3;
    if (last >= entryRuns && runs[last]! + runs[last + 2]! === to && runs[last + 1]! + runs[last + 2]! === from) runs[last + 2]! += count;
    else if (count > 0) runs.push(to, from, count);
  };
  let at = 1;
  const need = (count: number, what: string) => {
    if (at + count > words) fail(`${what} runs past the end (${words * 4} bytes)`);
  };
  for (const entry of manifest.entries) {
    entryRuns = runs.length;
    if (!sparse.has(entry.name)) {
      need(entry.length, entry.name);
      run(entry.offset, at, entry.length);
      at += entry.length;
      continue;
    }
    const [rows, cols] = [entry.shape[0]!, entry.shape[1]!];
    need(1, `${entry.name} row count`);
    const n = u32[at++]!;
    if (n > rows) fail(`${entry.name} lists ${n} rows but has ${rows}`);
    need(n + n * cols, entry.name);
    const indices = u32.subarray(at, at + n);
    at += n;
    let previous = -1;
    for (const r of indices) {
      if (r <= previous || r >= rows) fail(`${entry.name} row ${r} is out of order or outside [0, ${rows})`);
      previous = r;
      run(entry.offset + r * cols, at, cols);
      at += cols;
    }
  }
  if (at !== words) fail(`${(words - at) * 4} bytes left over after the last entry`);
  return { length: manifest.parameterCount, values: f32, runs: Uint32Array.from(runs) };
}

/**
 * Decodes bytes from {@link encodeRowSparse} into a dense delta on `manifest`.
 *
 * @throws FedtlError `BAD_MESSAGE` naming the entry when the bytes do not fit the manifest
 */
export function decodeRowSparse(bytes: Uint8Array, manifest: WeightManifest, sparse: ReadonlySet<string>): Float32Array {
  return sparseToDense(decodeRowSparseRuns(bytes, manifest, sparse));
}
