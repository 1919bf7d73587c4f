import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDataset, subset, type LabeledDataset } from '../../client/data/dataset.ts';
import { computeFeatures } from '../../client/features.ts';
import { createIdentityBase } from '../../shared/bases/identity.ts';
import { openBase } from '../../shared/bases/prepare-base.ts';
import { Tokenizer } from '../../shared/bases/tokenizer.ts';
import type { LoadedBase } from '../../shared/model/base-loader.ts';
import { FeatureCache } from '../../shared/model/feature-cache.ts';
import type { FrozenBase } from '../../shared/model/frozen-base.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';

let work: string;
let glove: LoadedBase;

beforeAll(async () => {
  await selectBackend({ log: false });
  work = await mkdtemp(path.join(os.tmpdir(), 'fedtl-features-'));
  glove = await openBase('glove-100d', { cacheDir: path.join(work, 'cache'), vocabularySize: 2000, sequenceLength: 16 });
});
afterAll(async () => {
  glove.dispose();
  await rm(work, { recursive: true, force: true });
});

const TEXTS = ['a good film', 'a bad film', 'the worst acting i have seen', 'great', 'dull and long'];
const textData = (): LabeledDataset =>
  createDataset({ name: 'reviews', examples: { kind: 'text', texts: [...TEXTS] }, labels: Int32Array.from([1, 0, 0, 1, 0]), classNames: ['neg', 'pos'] });
const rowData = (): LabeledDataset =>
  createDataset({ name: 'rows', examples: { kind: 'tensor', rows: Float32Array.from([1, 2, 3, 4, 5, 6]), rowSize: 3 }, labels: Int32Array.from([0, 1]), classNames: ['a', 'b'] });
const imageData = (): LabeledDataset =>
  createDataset({ name: 'img', examples: { kind: 'image', pixels: Uint8Array.from([0, 51, 102, 255]), width: 2, height: 2, channels: 1 }, labels: Int32Array.from([0]), classNames: ['x'] });

/** Wraps a base so every embedded row is counted. */
function counting(base: FrozenBase): { base: FrozenBase; rows: () => number } {
  let rows = 0;
  return {
    base: { ...base, embed: (batch) => ((rows += batch.shape[0]!), base.embed(batch)) },
    rows: () => rows,
  };
}

describe('computeFeatures', () => {
  it('tokenizes text with the base vocabulary and embeds it, batch by batch', async () => {
    const tokenizer = new Tokenizer(glove.input.kind === 'text' ? glove.input.vocabulary : [], { sequenceLength: 16 });
    const ids = tokenizer.encodeBatch(TEXTS);
    const direct = glove.embed(ids);
    const expected = (await direct.data()) as Float32Array;
    tf.dispose([ids, direct]);

    const features = await computeFeatures(glove, textData(), { batchSize: 2 });

    expect(features).toMatchObject({ rows: 5, cols: 100 });
    let max = 0;
    for (let i = 0; i < expected.length; i++) max = Math.max(max, Math.abs(features.values[i]! - expected[i]!));
    expect(max).toBeLessThan(1e-6);
  });

  it('passes numeric rows through the identity base and scales image pixels into [0, 1] for it', async () => {
    const rows = await computeFeatures(createIdentityBase(3), rowData());
    expect(Array.from(rows.values)).toEqual([1, 2, 3, 4, 5, 6]);
    const pixels = await computeFeatures(createIdentityBase(4), imageData());
    expect(Array.from(pixels.values)).toEqual([0, 0.2, 0.4, 1].map((v) => Math.fround(v)));
  });

  it('refuses data the base cannot read, naming both', async () => {
    await expect(computeFeatures(glove, rowData())).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining('reads text') });
    await expect(computeFeatures(createIdentityBase(3), textData())).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining('holds text') });
    await expect(computeFeatures(createIdentityBase(5), rowData())).rejects.toMatchObject({ code: 'BAD_DATA' });
  });

  it('runs the base once per example with a cache, whatever the data set is called', async () => {
    const { base, rows } = counting(glove);
    const cache = new FeatureCache({ directory: path.join(work, 'features') });
    const first = await computeFeatures(base, textData(), { cache });
    const again = await computeFeatures(base, textData(), { cache });
    // Same content under another name: the fingerprint ignores names.
    const renamed = await computeFeatures(base, { ...textData(), name: 'other-name' }, { cache });
    expect(again).toBe(first);
    expect(renamed).toBe(first);
    expect(rows()).toBe(5);
    expect(cache.baseRuns).toBe(5);

    // Different content is a different entry.
    await computeFeatures(base, subset(textData(), [0, 1]), { cache });
    expect(rows()).toBe(7);

    // Without a cache the base runs every call.
    await computeFeatures(base, textData());
    await computeFeatures(base, textData());
    expect(rows()).toBe(17);
  });

  it('leaks no tensors', async () => {
    await computeFeatures(glove, textData());
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      await computeFeatures(glove, textData(), { batchSize: 2 });
      await computeFeatures(createIdentityBase(4), imageData());
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
