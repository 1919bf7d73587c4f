/**
 * Base features are computed once per (base, data set) and reused for every epoch of every round.
 *
 * {@link extractFeatures} runs the frozen base over a data set in batches; {@link FeatureCache}
 * keeps the result in memory and on disk, keyed by the base's content hash and the data set's
 * fingerprint, so a client that restarts does not run the base again either. The cache counts
 * base runs so tests (and users) can see that the base ran once per example.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { threadId } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';
import type { FeatureMatrix } from './feature-matrix.ts';
import type { FrozenBase } from './frozen-base.ts';

/** Builds the base-input tensor for examples [start, end); the extractor disposes it. */
export type BatchSource = (start: number, end: number) => tf.Tensor | Promise<tf.Tensor>;

export interface ExtractOptions {
  /** Examples per base forward pass. @default 64 */
  batchSize?: number;
  /** Called after each batch with examples done so far. */
  onProgress?: (done: number, total: number) => void;
}

/** Runs the frozen base over `count` examples; returns their embeddings as plain floats. */
export async function extractFeatures(base: FrozenBase, count: number, source: BatchSource, options: ExtractOptions = {}): Promise<FeatureMatrix> {
  const [features] = await extractJointFeatures({ bases: [base], embed: (batch) => [base.embed(batch)] }, count, source, options);
  return features!;
}

/**
 * Several feature bases that one pass of the same network embeds together, e.g. a base's output and
 * the features at a fine-tuning stage's boundary, which lies on the way to it.
 */
export interface JointEmbedder {
  /** The feature bases served, in the order {@link embed} returns their features. */
  readonly bases: readonly FrozenBase[];
  /** One batch's features for every base of {@link bases}; the extractor disposes them. */
  embed(batch: tf.Tensor): tf.Tensor2D[];
}

/** {@link extractFeatures} for every base of `joint` at once: one pass over the examples. */
export async function extractJointFeatures(joint: JointEmbedder, count: number, source: BatchSource, options: ExtractOptions = {}): Promise<FeatureMatrix[]> {
  const batchSize = options.batchSize ?? 64;
  const outputs = joint.bases.map((base) => ({ base, cols: base.embeddingSize, values: new Float32Array(count * base.embeddingSize) }));
  for (let start = 0; start < count; start += batchSize) {
    const end = Math.min(count, start + batchSize);
    const input = await source(start, end);
    let embedded: tf.Tensor2D[] = [];
    try {
      embedded = joint.embed(input);
      for (const [i, { base, cols, values }] of outputs.entries()) {
        const features = embedded[i];
        if (!features || features.shape[0] !== end - start || features.shape[1] !== cols) {
          throw new FedtlError('BAD_SHAPE', `base ${base.name} returned [${features?.shape.join(',') ?? ''}] for a batch of ${end - start}, expected [${end - start},${cols}]`);
        }
        values.set((await features.data()) as Float32Array, start * cols);
      }
    } finally {
      input.dispose();
      tf.dispose(embedded);
    }
    options.onProgress?.(end, count);
  }
  return outputs.map(({ cols, values }) => ({ values, rows: count, cols }));
}

export interface FeatureCacheOptions {
  /** Directory for cached feature files; `null` keeps them in memory only. @default null */
  directory?: string | null;
}

const MAGIC = 'fedtl-features/v1';

/** Memory + disk cache of base features keyed by base hash and data fingerprint. */
export class FeatureCache {
  readonly #memory = new Map<string, FeatureMatrix>();
  readonly #directory: string | null;
  /** Examples the base has embedded through this cache (misses only). */
  baseRuns = 0;

  constructor(options: FeatureCacheOptions = {}) {
    this.#directory = options.directory ?? null;
  }

  static key(baseHash: string, dataFingerprint: string): string {
    return createHash('sha256').update(`${MAGIC}|${baseHash}|${dataFingerprint}`).digest('hex');
  }

  /** Cached features, or computes them with `compute` once and stores them. */
  async get(baseHash: string, dataFingerprint: string, count: number, compute: () => Promise<FeatureMatrix>): Promise<FeatureMatrix> {
    const key = FeatureCache.key(baseHash, dataFingerprint);
    const inMemory = this.#memory.get(key);
    if (inMemory) return inMemory;
    const onDisk = await this.#read(key, count);
    if (onDisk) {
      this.#memory.set(key, onDisk);
      return onDisk;
    }
    const computed = await compute();
    if (computed.rows !== count) throw new FedtlError('BAD_SHAPE', `feature extraction returned ${computed.rows} rows for ${count} examples`);
    this.baseRuns += computed.rows;
    this.#memory.set(key, computed);
    await this.#write(key, computed);
    return computed;
  }

  /**
   * {@link get} for several bases' features of one data set that `compute` produces together (see
   * {@link extractJointFeatures}): read where cached, else computed once for all of them, and the
   * missing ones stored. The result is in `baseHashes` order.
   */
  async getJoint(baseHashes: readonly string[], dataFingerprint: string, count: number, compute: () => Promise<FeatureMatrix[]>): Promise<FeatureMatrix[]> {
    const found: Array<FeatureMatrix | null> = [];
    for (const hash of baseHashes) {
      const key = FeatureCache.key(hash, dataFingerprint);
      const cached = this.#memory.get(key) ?? (await this.#read(key, count));
      if (cached) this.#memory.set(key, cached);
      found.push(cached);
    }
    if (found.every((matrix) => matrix !== null)) return found as FeatureMatrix[];
    const computed = await compute();
    if (computed.length !== baseHashes.length || computed.some((matrix) => matrix.rows !== count)) {
      throw new FedtlError('BAD_SHAPE', `joint feature extraction returned ${computed.map((m) => m.rows).join('/')} rows for ${count} examples of ${baseHashes.length} bases`);
    }
    this.baseRuns += count;
    for (const [i, hash] of baseHashes.entries()) {
      if (found[i]) continue;
      const key = FeatureCache.key(hash, dataFingerprint);
      this.#memory.set(key, computed[i]!);
      await this.#write(key, computed[i]!);
    }
    return baseHashes.map((_, i) => found[i] ?? computed[i]!);
  }

  clearMemory(): void {
    this.#memory.clear();
  }

  #file(key: string): string | null {
    return this.#directory === null ? null : path.join(this.#directory, `${key}.features`);
  }

  async #read(key: string, count: number): Promise<FeatureMatrix | null> {
    const file = this.#file(key);
    if (file === null) return null;
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch {
      return null;
    }
    // Layout: 32-byte key, uint32 rows, uint32 cols, float32 values. Anything off is a stale or
    // torn file: ignore it and recompute rather than train on garbage.
    if (bytes.length < 40 || bytes.subarray(0, 32).toString('hex') !== key) return null;
    const rows = bytes.readUInt32LE(32);
    const cols = bytes.readUInt32LE(36);
    if (rows !== count || bytes.length !== 40 + rows * cols * 4) return null;
    const values = new Float32Array(rows * cols);
    new Uint8Array(values.buffer).set(bytes.subarray(40));
    return { values, rows, cols };
  }

  async #write(key: string, matrix: FeatureMatrix): Promise<void> {
    const file = this.#file(key);
    if (file === null) return;
    await mkdir(path.dirname(file), { recursive: true });
    const header = Buffer.alloc(40);
    Buffer.from(key, 'hex').copy(header, 0);
    header.writeUInt32LE(matrix.rows, 32);
    header.writeUInt32LE(matrix.cols, 36);
    // Per process and thread: worker threads of one run (the simulation's baselines) may write the same features at once.
    const temporary = `${file}.${process.pid}-${threadId}.tmp`;
    await writeFile(temporary, Buffer.concat([header, new Uint8Array(matrix.values.buffer, matrix.values.byteOffset, matrix.values.byteLength)]));
    await rename(temporary, file);
  }
}
