import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cutBaseHash, fileLoadHandler, fileSaveHandler, loadBase, writeSidecar, type BaseSidecar } from '../../../shared/model/base-loader.ts';
import { hashModelDir } from '../../../shared/model/model-hash.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';

let tmp: string;

beforeAll(async () => {
  await selectBackend({ log: false });
  tmp = await mkdtemp(path.join(os.tmpdir(), 'fedtl-loader-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** input [4] → dense 8 relu ("hidden") → dense 3 softmax ("out"). */
function mlp(): tf.LayersModel {
  const input = tf.input({ shape: [4], name: 'features' });
  const hidden = tf.layers.dense({ units: 8, activation: 'relu', name: 'hidden' }).apply(input) as tf.SymbolicTensor;
  const out = tf.layers.dense({ units: 3, activation: 'softmax', name: 'out' }).apply(hidden) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

/** input [6,6,3] → conv 4 filters ("conv", same padding) → flatten → dense 2. */
function cnn(): tf.LayersModel {
  const input = tf.input({ shape: [6, 6, 3], name: 'pixels' });
  const conv = tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv' }).apply(input) as tf.SymbolicTensor;
  const flat = tf.layers.flatten({ name: 'flat' }).apply(conv) as tf.SymbolicTensor;
  const out = tf.layers.dense({ units: 2, name: 'out' }).apply(flat) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

async function saveWithSidecar(model: tf.LayersModel, dir: string, extra: Partial<BaseSidecar> = {}): Promise<string> {
  await model.save(fileSaveHandler(dir));
  const sidecar: BaseSidecar = { format: 'fedtl-base', version: 1, name: path.basename(dir), kind: 'layers', input: { kind: 'tensor', size: 4 }, hash: await hashModelDir(dir), ...extra };
  await writeSidecar(dir, sidecar);
  return dir;
}

async function values(t: tf.Tensor): Promise<number[]> {
  const v = Array.from(await t.data());
  t.dispose();
  return v;
}

describe('file IO handlers', () => {
  it('round-trips a LayersModel through a directory', async () => {
    const model = mlp();
    const dir = path.join(tmp, 'roundtrip');
    const result = await model.save(fileSaveHandler(dir));
    expect(result.modelArtifactsInfo.weightDataBytes).toBe((4 * 8 + 8 + 8 * 3 + 3) * 4);
    const loaded = await tf.loadLayersModel(fileLoadHandler(dir));
    const x = tf.tensor2d([[1, -2, 3, 0.5]]);
    expect(await values(loaded.predict(x) as tf.Tensor)).toEqual(await values(model.predict(x) as tf.Tensor));
    tf.dispose([x]);
    model.dispose();
    loaded.dispose();
  });

  it('reports a truncated shard as CORRUPT_FILE naming the directory', async () => {
    const model = mlp();
    const dir = path.join(tmp, 'truncated');
    await model.save(fileSaveHandler(dir));
    model.dispose();
    await truncate(path.join(dir, 'weights.bin'), 10);
    await expect(fileLoadHandler(dir).load!()).rejects.toMatchObject({ code: 'CORRUPT_FILE', message: expect.stringContaining(dir) });
  });
});

describe('loadBase (layers)', () => {
  it('loads the whole model: hash = model hash, embed = predict, frozen', async () => {
    const model = mlp();
    const dir = await saveWithSidecar(model, path.join(tmp, 'whole'));
    const base = await loadBase(dir);
    expect(base.name).toBe('whole');
    expect(base.embeddingSize).toBe(3);
    expect(base.hash).toBe(await hashModelDir(dir));
    expect(base.hash).toBe(base.modelHash);
    expect(base.input).toEqual({ kind: 'tensor', size: 4 });
    expect(base.model!.layers.every((layer) => !layer.trainable)).toBe(true);
    expect(base.model!.trainableWeights).toHaveLength(0);
    const x = tf.tensor2d([[0.1, 0.2, -0.3, 0.4], [1, 1, 1, 1]]);
    const got = await values(base.embed(x));
    const want = await values(model.predict(x) as tf.Tensor);
    got.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 6));
    x.dispose();
    base.dispose();
    model.dispose();
  });

  it('cuts at a named layer; the cut is part of the hash', async () => {
    const model = mlp();
    const dir = await saveWithSidecar(model, path.join(tmp, 'cut'));
    const base = await loadBase(dir, { kind: 'layers', cutLayer: 'hidden' });
    expect(base.embeddingSize).toBe(8);
    expect(base.hash).not.toBe(base.modelHash);
    expect(base.hash).toBe(cutBaseHash(base.modelHash, { kind: 'layers', cutLayer: 'hidden' }));
    const x = tf.tensor2d([[0.1, 0.2, -0.3, 0.4]]);
    const hidden = model.getLayer('hidden');
    const [kernel, bias] = hidden.getWeights() as [tf.Tensor2D, tf.Tensor1D];
    const want = await values(tf.tidy(() => tf.relu(tf.add(tf.matMul(x, kernel), bias))));
    const got = await values(base.embed(x));
    got.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 5));
    x.dispose();
    base.dispose();
    model.dispose();
  });

  it('average-pools (or flattens) a convolutional cut', async () => {
    const model = cnn();
    const dir = await saveWithSidecar(model, path.join(tmp, 'cnn'), { input: { kind: 'image', size: 6, channels: 3, range: [0, 1] } });
    const pooled = await loadBase(dir, { cutLayer: 'conv', pooling: 'avg' });
    const flat = await loadBase(dir, { cutLayer: 'conv', pooling: 'none' });
    expect(pooled.embeddingSize).toBe(4);
    expect(flat.embeddingSize).toBe(6 * 6 * 4);
    expect(pooled.hash).not.toBe(flat.hash);
    const x = tf.randomUniform([2, 6, 6, 3], 0, 1, 'float32', 7);
    const convOut = tf.model({ inputs: model.inputs, outputs: model.getLayer('conv').output as tf.SymbolicTensor });
    const want = await values(tf.tidy(() => tf.mean(convOut.predict(x) as tf.Tensor, [1, 2])));
    const got = await values(pooled.embed(x));
    got.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 5));
    x.dispose();
    pooled.dispose();
    flat.dispose();
    model.dispose();
  });

  it('rejects a changed model with HASH_MISMATCH naming the directory', async () => {
    const model = mlp();
    const dir = await saveWithSidecar(model, path.join(tmp, 'tampered'));
    model.dispose();
    const weights = await readFile(path.join(dir, 'weights.bin'));
    weights[3]! ^= 0xff;
    await writeFile(path.join(dir, 'weights.bin'), weights);
    await expect(loadBase(dir)).rejects.toMatchObject({ code: 'HASH_MISMATCH', message: expect.stringContaining(dir) });
    // Debug escape hatch still loads it.
    const base = await loadBase(dir, { verifyHash: false });
    base.dispose();
  });

  it('explains an unknown cut layer and a wrong input shape', async () => {
    const model = mlp();
    const dir = await saveWithSidecar(model, path.join(tmp, 'errors'));
    model.dispose();
    await expect(loadBase(dir, { cutLayer: 'nope' })).rejects.toMatchObject({ code: 'BAD_CONFIG', message: expect.stringContaining('nope') });
    const base = await loadBase(dir);
    const wrong = tf.zeros([2, 5]);
    expect(() => base.embed(wrong)).toThrow(expect.objectContaining({ code: 'BAD_SHAPE' }));
    wrong.dispose();
    base.dispose();
  });

  it('infers a flat input without a sidecar', async () => {
    const model = mlp();
    const dir = path.join(tmp, 'nosidecar');
    await model.save(fileSaveHandler(dir));
    model.dispose();
    const base = await loadBase(dir);
    expect(base.input).toEqual({ kind: 'tensor', size: 4 });
    expect(base.sidecar).toBeUndefined();
    base.dispose();
  });

  it('does not leak tensors across repeated embeds, and frees everything on dispose', async () => {
    const model = mlp();
    const dir = await saveWithSidecar(model, path.join(tmp, 'leak'));
    model.dispose();
    const before = tf.memory().numTensors;
    const base = await loadBase(dir, { cutLayer: 'hidden' });
    const x = tf.ones([5, 4]);
    base.embed(x).dispose();
    const loaded = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) base.embed(x).dispose();
    expect(tf.memory().numTensors).toBe(loaded);
    x.dispose();
    base.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('loadBase (graph)', () => {
  /** A hand-written GraphModel: relu(x · W) with x [?,3], W [3,2]. */
  async function writeGraphModel(dir: string): Promise<void> {
    const dim = (n: number): { size: string } => ({ size: String(n) });
    const topology = {
      node: [
        { name: 'x', op: 'Placeholder', attr: { dtype: { type: 'DT_FLOAT' }, shape: { shape: { dim: [dim(-1), dim(3)] } } } },
        { name: 'w', op: 'Const', attr: { value: { tensor: { dtype: 'DT_FLOAT', tensorShape: { dim: [dim(3), dim(2)] } } }, dtype: { type: 'DT_FLOAT' } } },
        { name: 'matmul', op: 'MatMul', input: ['x', 'w'], attr: { transpose_a: { b: false }, transpose_b: { b: false }, T: { type: 'DT_FLOAT' } } },
        { name: 'relu', op: 'Relu', input: ['matmul'], attr: { T: { type: 'DT_FLOAT' } } },
      ],
      library: {},
      versions: { producer: 1 },
    };
    const w = new Float32Array([1, -1, 2, 0, -3, 1]);
    await fileSaveHandler(dir).save!({
      modelTopology: topology,
      format: 'graph-model',
      weightSpecs: [{ name: 'w', shape: [3, 2], dtype: 'float32' }],
      weightData: w.buffer,
    });
  }

  it('evaluates a node with execute', async () => {
    const dir = path.join(tmp, 'graph');
    await writeGraphModel(dir);
    const before = tf.memory().numTensors;
    const base = await loadBase(dir, { kind: 'graph', node: 'relu' });
    expect(base.model).toBeNull();
    expect(base.graphModel).not.toBeNull();
    expect(base.embeddingSize).toBe(2);
    expect(base.input).toEqual({ kind: 'tensor', size: 3 });
    const x = tf.tensor2d([[1, 1, 1], [1, 0, 0]]);
    // x·W = [[1-... ]]: row 1 = [1+2-3, -1+0+1] = [0, 0]; row 2 = [1, -1] → relu [1, 0]
    expect(await values(base.embed(x))).toEqual([0, 0, 1, 0]);
    const matmul = await loadBase(dir, { kind: 'graph', node: 'matmul' });
    expect(matmul.hash).not.toBe(base.hash);
    expect(await values(matmul.embed(x))).toEqual([0, 0, 1, -1]);
    x.dispose();
    base.dispose();
    matmul.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
