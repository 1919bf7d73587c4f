/**
 * The split-class CNN base, built from a tiny synthetic source set: a verified, loadable base whose
 * weights depend only on the seed and the data, and whose architecture matches the from-scratch
 * CNN head of the same convolutions.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { verifyBaseDir } from '../../../shared/bases/prepare-base.ts';
import { buildSplitClassCnnBase, splitClassCnnCacheKey, type SplitClassSource } from '../../../shared/bases/split-class-cnn.ts';
import type { Logger } from '../../../shared/core/log.ts';
import { createRandom } from '../../../shared/math/random.ts';
import { loadBase } from '../../../shared/model/base-loader.ts';
import { exportTransferModel, readExportSidecar } from '../../../shared/model/export.ts';
import { buildHead, type ConvFrontSpec } from '../../../shared/model/head.ts';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const conv: ConvFrontSpec = { inputShape: [8, 8, 1], layers: [{ filters: 4, kernelSize: 3, strides: 2 }] };

/** 48 8x8 images of two classes: a bright left half or a bright right half, with noise. */
function source(): SplitClassSource {
  const random = createRandom('split-class-source');
  const count = 48;
  const pixels = new Uint8Array(count * 64);
  const labels = Int32Array.from({ length: count }, (_, i) => i % 2);
  for (let i = 0; i < count; i++) {
    for (let p = 0; p < 64; p++) pixels[i * 64 + p] = Math.min(255, ((p % 8 < 4) === (labels[i] === 0) ? 180 : 20) + Math.floor(random.nextFloat() * 60));
  }
  return { pixels, size: 8, channels: 1, labels, classes: 2, description: '48 synthetic 8x8 test images' };
}

describe('buildSplitClassCnnBase', () => {
  const dirs: string[] = [];
  const build = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedtl-split-cnn-'));
    dirs.push(dir);
    const sidecar = await buildSplitClassCnnBase(dir, source(), { name: 'test-split-cnn', conv, epochs: 2, batchSize: 16, seed: 3, pretrainHidden: 8, logger: quiet });
    return { dir, sidecar };
  };
  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('writes a base that verifies by hash, states its provenance, loads and embeds without leaking tensors', async () => {
    const { dir, sidecar } = await build();
    expect(await verifyBaseDir(dir)).toEqual(sidecar);
    expect(sidecar.embeddingSize).toBe(4 * 4 * 4);
    expect(sidecar.origin).toContain('48 synthetic 8x8 test images');
    expect(sidecar.origin).toContain('seed 3');
    const base = await loadBase(dir);
    try {
      const before = tf.memory().numTensors;
      const images = tf.zeros([2, 8, 8, 1]);
      const embedding = base.embed(images);
      expect(embedding.shape).toEqual([2, 64]);
      tf.dispose([images, embedding]);
      expect(tf.memory().numTensors).toBe(before);
      // Same layers as the from-scratch CNN head on flat rows (reshape, convolutions, flatten): same weight shapes.
      const head = buildHead(64, { conv, hidden: [], activation: 'relu', dropout: 0, classes: 2 });
      expect(head.layers[1]!.getWeights().map((w) => w.shape)).toEqual(base.model!.layers[1]!.getWeights().map((w) => w.shape));
      head.dispose();
      // The export carries the base's provenance.
      const dense = buildHead(64, { hidden: [], activation: 'relu', dropout: 0, classes: 2 });
      const exported = await exportTransferModel(base, dense, join(dir, 'export'), { classNames: ['left', 'right'] });
      expect(exported.sidecar.base.origin).toBe(sidecar.origin);
      expect((await readExportSidecar(join(dir, 'export'))).base.origin).toContain('48 synthetic 8x8 test images');
      dense.dispose();
    } finally {
      base.dispose();
    }
  });

  it('is reproducible: the same data and seed give the same weights (the same hash)', async () => {
    const [a, b] = [await build(), await build()];
    expect(a.sidecar.hash).toBe(b.sidecar.hash);
  });

  it('refuses source images that do not fit the convolutions', async () => {
    const bad = { ...source(), size: 9 };
    await expect(buildSplitClassCnnBase(join(tmpdir(), 'never-written'), bad, { name: 'x', conv, logger: quiet })).rejects.toThrow(/source images are 9x9x1/);
  });

  it('keys the cache by the whole recipe: any change to the source or the training moves the base to a new directory', () => {
    const recipe = { conv, epochs: 2, seed: 3 };
    const key = splitClassCnnCacheKey('fashion-cnn-split', 'source A', recipe);
    expect(key).toMatch(/^fashion-cnn-split-[0-9a-f]{12}$/);
    // Defaults written out or left implicit are the same recipe.
    expect(splitClassCnnCacheKey('fashion-cnn-split', 'source A', { ...recipe, batchSize: 64, learningRate: 0.002, pretrainHidden: 64 })).toBe(key);
    const changed = [
      splitClassCnnCacheKey('fashion-cnn-split', 'source B', recipe),
      splitClassCnnCacheKey('fashion-cnn-split', 'source A', { ...recipe, epochs: 3 }),
      splitClassCnnCacheKey('fashion-cnn-split', 'source A', { ...recipe, seed: 4 }),
      splitClassCnnCacheKey('fashion-cnn-split', 'source A', { ...recipe, learningRate: 0.001 }),
      splitClassCnnCacheKey('fashion-cnn-split', 'source A', { ...recipe, conv: { ...conv, layers: [{ filters: 8, kernelSize: 3, strides: 2 }] } }),
    ];
    expect(new Set([key, ...changed]).size).toBe(changed.length + 1);
  });
});
