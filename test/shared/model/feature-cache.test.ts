import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIdentityBase } from '../../../shared/bases/identity.ts';
import { extractFeatures, FeatureCache } from '../../../shared/model/feature-cache.ts';
import type { FeatureMatrix } from '../../../shared/model/feature-matrix.ts';
import type { FrozenBase } from '../../../shared/model/frozen-base.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';

let dir: string;
beforeAll(async () => {
  await selectBackend({ log: false });
  dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-feature-cache-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Rows r = [r, 10r, 100r]; a source that builds them per batch. */
const ROWS = 10;
const source = (start: number, end: number): tf.Tensor =>
  tf.tensor2d(Array.from({ length: end - start }, (_, i) => [start + i, 10 * (start + i), 100 * (start + i)]));

/** A matrix of known values, and a compute function that counts its calls. */
function counted(rows = ROWS): { compute: () => Promise<FeatureMatrix>; calls: () => number } {
  let calls = 0;
  return {
    compute: async () => {
      calls++;
      const values = Float32Array.from({ length: rows * 2 }, (_, i) => i / 4);
      return { values, rows, cols: 2 };
    },
    calls: () => calls,
  };
}

describe('extractFeatures', () => {
  it('runs the base over every example in batches and returns plain floats, disposing every tensor', async () => {
    // Prepare
    const base = createIdentityBase(3);
    const batches: number[] = [];
    const counting: FrozenBase = { ...base, embed: (b) => (batches.push(b.shape[0]!), base.embed(b)) };
    const before = tf.memory().numTensors;
    const progress: number[] = [];

    // Execute
    const matrix = await extractFeatures(counting, ROWS, source, { batchSize: 4, onProgress: (done) => progress.push(done) });

    // Assert
    expect(batches).toEqual([4, 4, 2]);
    expect(progress).toEqual([4, 8, 10]);
    expect(matrix).toMatchObject({ rows: 10, cols: 3 });
    expect(Array.from(matrix.values.subarray(21, 24))).toEqual([7, 70, 700]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses a base that returns the wrong shape, still disposing the batch', async () => {
    const base = createIdentityBase(3);
    const broken: FrozenBase = { ...base, embeddingSize: 4 };
    const before = tf.memory().numTensors;
    await expect(extractFeatures(broken, ROWS, source)).rejects.toMatchObject({ code: 'BAD_SHAPE', message: expect.stringContaining('expected [10,4]') });
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('FeatureCache', () => {
  it('computes once per (base, data) in memory and counts base runs', async () => {
    const cache = new FeatureCache();
    const { compute, calls } = counted();
    const first = await cache.get('base-a', 'data-1', ROWS, compute);
    const again = await cache.get('base-a', 'data-1', ROWS, compute);
    expect(again).toBe(first);
    expect(calls()).toBe(1);
    expect(cache.baseRuns).toBe(ROWS);

    // Another base or other data is another entry.
    await cache.get('base-b', 'data-1', ROWS, compute);
    await cache.get('base-a', 'data-2', ROWS, compute);
    expect(calls()).toBe(3);
    expect(cache.baseRuns).toBe(3 * ROWS);
  });

  it('persists to its directory: a new cache on the same directory runs no base', async () => {
    const directory = path.join(dir, 'persist');
    const { compute, calls } = counted();
    const written = await new FeatureCache({ directory }).get('base-a', 'data-1', ROWS, compute);

    const reopened = new FeatureCache({ directory });
    const read = await reopened.get('base-a', 'data-1', ROWS, compute);

    expect(calls()).toBe(1);
    expect(reopened.baseRuns).toBe(0);
    expect(read).not.toBe(written); // from disk, not shared memory
    expect(Array.from(read.values)).toEqual(Array.from(written.values));
    expect(read).toMatchObject({ rows: ROWS, cols: 2 });
    expect(await readdir(directory)).toEqual([`${FeatureCache.key('base-a', 'data-1')}.features`]);
  });

  it('ignores a truncated, garbled or mismatched cache file and recomputes it', async () => {
    const directory = path.join(dir, 'corrupt');
    const { compute, calls } = counted();
    const original = await new FeatureCache({ directory }).get('base-a', 'data-1', ROWS, compute);
    const file = path.join(directory, `${FeatureCache.key('base-a', 'data-1')}.features`);
    const good = await readFile(file);

    const corruptions: Array<[string, Buffer]> = [
      ['truncated', good.subarray(0, good.length - 3)],
      ['garbage', Buffer.from('not a feature file at all')],
      ['another key in the header', Buffer.concat([Buffer.alloc(32, 7), good.subarray(32)])],
      ['a row count that disagrees with the data', (() => { const b = Buffer.from(good); b.writeUInt32LE(ROWS + 1, 32); return b; })()],
    ];
    for (const [what, bytes] of corruptions) {
      await writeFile(file, bytes);
      const cache = new FeatureCache({ directory });
      const features = await cache.get('base-a', 'data-1', ROWS, compute);
      expect(cache.baseRuns, what).toBe(ROWS);
      expect(Array.from(features.values), what).toEqual(Array.from(original.values));
      // The recomputed file replaced the bad one.
      expect(Buffer.compare(await readFile(file), good), what).toBe(0);
    }
    expect(calls()).toBe(1 + corruptions.length);
  });

  it('refuses features whose row count is not the example count', async () => {
    const cache = new FeatureCache();
    await expect(cache.get('b', 'd', ROWS + 1, counted().compute)).rejects.toMatchObject({ code: 'BAD_SHAPE' });
    expect(cache.baseRuns).toBe(0);
  });

  it('forgets memory on clearMemory but keeps the disk copy', async () => {
    const directory = path.join(dir, 'clear');
    const cache = new FeatureCache({ directory });
    const { compute, calls } = counted();
    await cache.get('b', 'd', ROWS, compute);
    cache.clearMemory();
    await cache.get('b', 'd', ROWS, compute);
    expect(calls()).toBe(1);
    const memoryOnly = new FeatureCache();
    await memoryOnly.get('b', 'd', ROWS, compute);
    memoryOnly.clearMemory();
    await memoryOnly.get('b', 'd', ROWS, compute);
    expect(calls()).toBe(3);
  });
});

describe('FeatureCache.getJoint', () => {
  it('computes several bases\' features in one call when any is missing, stores the missing ones, and reads them back from disk', async () => {
    // Prepare: base "a" already cached, "b" and "c" not
    const cacheDir = path.join(dir, 'joint');
    const first = new FeatureCache({ directory: cacheDir });
    const a = counted();
    await first.get('a'.repeat(64), 'data-j', ROWS, a.compute);
    let calls = 0;
    const matrix = (offset: number): FeatureMatrix => ({ values: Float32Array.from({ length: ROWS * 2 }, (_, i) => i + offset), rows: ROWS, cols: 2 });
    const compute = async () => {
      calls++;
      return [matrix(1000), matrix(2000), matrix(3000)];
    };
    const hashes = ['a'.repeat(64), 'b'.repeat(64), 'c'.repeat(64)];

    // Execute
    const joint = await first.getJoint(hashes, 'data-j', ROWS, compute);
    const again = await new FeatureCache({ directory: cacheDir }).getJoint(hashes, 'data-j', ROWS, compute);

    // Assert: one computation; the cached "a" kept (not overwritten by the joint pass), b and c stored
    expect(calls).toBe(1);
    expect(first.baseRuns).toBe(2 * ROWS);
    expect(joint[0]!.values).toEqual((await a.compute()).values);
    expect(joint[1]!.values).toEqual(matrix(2000).values);
    expect(joint[2]!.values).toEqual(matrix(3000).values);
    expect(again.map((m) => Array.from(m.values))).toEqual(joint.map((m) => Array.from(m.values)));
  });

  it('refuses a joint computation that returns the wrong number of matrices or rows, storing nothing', async () => {
    const cache = new FeatureCache({ directory: path.join(dir, 'joint-bad') });
    const one = async () => [{ values: new Float32Array(ROWS * 2), rows: ROWS, cols: 2 }];
    await expect(cache.getJoint(['d'.repeat(64), 'e'.repeat(64)], 'data-k', ROWS, one)).rejects.toMatchObject({ code: 'BAD_SHAPE' });
    await expect(readdir(path.join(dir, 'joint-bad'))).rejects.toThrow();
  });
});
