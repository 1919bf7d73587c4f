import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadImageFolder } from '../../client/data/image-folder.ts';
import { computeFeatures } from '../../client/features.ts';
import { loadExportedModel, predict } from '../../client/predict.ts';
import { openBase } from '../../shared/bases/prepare-base.ts';
import { Tokenizer } from '../../shared/bases/tokenizer.ts';
import { fileSaveHandler, loadBase, writeSidecar, type LoadedBase } from '../../shared/model/base-loader.ts';
import { exportTransferModel } from '../../shared/model/export.ts';
import { buildHead } from '../../shared/model/head.ts';
import { predictHead } from '../../shared/model/head-training.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { REVIEWS, SMALL_GLOVE, TEXT_HEAD, maxAbsDiff, reference } from '../support/text-model.ts';


let work: string;
let glove: LoadedBase;
let textHead: tf.Sequential;

beforeAll(async () => {
  await selectBackend({ log: false });
  work = await mkdtemp(path.join(os.tmpdir(), 'fedtl-predict-'));
  glove = await openBase('glove-100d', { cacheDir: path.join(work, 'cache'), ...SMALL_GLOVE });
  textHead = buildHead(glove.embeddingSize, TEXT_HEAD, { seed: 5 });
  await exportTransferModel(glove, textHead, path.join(work, 'text-model'), { classNames: ['negative', 'positive'] });
});
afterAll(async () => {
  glove.dispose();
  textHead.dispose();
  await rm(work, { recursive: true, force: true });
});

/** Probabilities of base.embed → head on prepared inputs: what predict must reproduce. */
describe('predict: text model', () => {
  it('predicts on raw strings with the saved vocabulary, matching base → head', async () => {
    const dir = path.join(work, 'text-model');
    const tokenizer = new Tokenizer(glove.input.kind === 'text' ? glove.input.vocabulary : [], { sequenceLength: 32 });
    const ids = tokenizer.encodeBatch(REVIEWS);
    const expected = await reference(glove, textHead, ids);
    ids.dispose();

    const model = await loadExportedModel(dir);
    const predictions = await predict(model, REVIEWS, { batchSize: 2 }); // several batches

    expect(predictions).toHaveLength(REVIEWS.length);
    predictions.forEach((p, i) => {
      const row = [expected[2 * i]!, expected[2 * i + 1]!];
      expect(maxAbsDiff(p.probabilities, row)).toBeLessThan(1e-6);
      expect(p.label).toBe(row[1]! > row[0]! ? 1 : 0);
      expect(p.className).toBe(['negative', 'positive'][p.label]);
      expect(p.probabilities[0]! + p.probabilities[1]!).toBeCloseTo(1, 5);
    });
    expect(await predict(model, [])).toEqual([]);
    model.dispose();
  });

  it('refuses the wrong kind of input, naming what the model expects', async () => {
    const dir = path.join(work, 'text-model');
    const model = await loadExportedModel(dir);
    await expect(predict(model, [[1, 2, 3]])).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining('texts (strings)') });
    await expect(predict(model, ['fine', 3] as unknown as string[])).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining('input 1') });
    model.dispose();
  });

});

describe('predict: image model', () => {
  it('predicts on image file paths decoded like loadImageFolder, matching the training path', async () => {
    // Prepare: a tiny convolutional LayersModel saved as a base directory with an image input spec.
    const baseDir = path.join(work, 'tiny-cnn');
    const input = tf.input({ shape: [8, 8, 3], name: 'pixels' });
    const conv = tf.layers.conv2d({ filters: 4, kernelSize: 3, activation: 'relu', name: 'conv', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }).apply(input) as tf.SymbolicTensor;
    const pooled = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(conv) as tf.SymbolicTensor;
    const cnn = tf.model({ inputs: input, outputs: pooled });
    await cnn.save(fileSaveHandler(baseDir));
    cnn.dispose();
    await writeSidecar(baseDir, { format: 'fedtl-base', version: 1, name: 'tiny-cnn', kind: 'layers', input: { kind: 'image', size: 8, channels: 3, range: [-1, 1] } });
    const base = await loadBase(baseDir);
    const head = buildHead(4, { hidden: [], activation: 'relu', dropout: 0, classes: 2 }, { seed: 4 });

    const folder = path.join(work, 'photos');
    const files: string[] = [];
    for (const [cls, colours] of Object.entries({ dark: [[20, 30, 40], [0, 90, 10]], light: [[250, 200, 180], [120, 240, 255]] })) {
      await mkdir(path.join(folder, cls), { recursive: true });
      for (const [i, [r, g, b]] of colours.entries()) {
        const file = path.join(folder, cls, `${i}.png`);
        // Non-square and larger than 8 px, so the decode really resizes and crops.
        await sharp({ create: { width: 20, height: 12, channels: 3, background: { r: r!, g: g!, b: b! } } }).png().toFile(file);
        files.push(file);
      }
    }
    const data = await loadImageFolder({ path: folder, size: 8, channels: 3 });
    const expected = await predictHead(head, await computeFeatures(base, data));

    // Execute
    const dir = path.join(work, 'image-model');
    const result = await exportTransferModel(base, head, dir, { classNames: data.classNames });
    const model = await loadExportedModel(dir);
    const predictions = await predict(model, files);

    // Assert
    expect(result.sidecar.input).toEqual({ kind: 'image', size: 8, channels: 3, range: [-1, 1] });
    expect(result.sidecar.modelInput).toEqual({ shape: [null, 8, 8, 3], dtype: 'float32' });
    expect(maxAbsDiff(predictions.flatMap((p) => p.probabilities), expected)).toBeLessThan(1e-6);
    await expect(predict(model, [path.join(folder, 'missing.png')])).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining('missing.png') });
    await expect(predict(model, [[0, 1]])).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining('image file paths') });

    model.dispose();
    head.dispose();
    base.dispose();
  });
});

describe('predict memory', () => {
  it('leaks no tensors across repeated load and predict', async () => {
    const once = async (): Promise<void> => {
      const model = await loadExportedModel(path.join(work, 'text-model'));
      await predict(model, REVIEWS, { batchSize: 2 });
      await expect(predict(model, [[1]])).rejects.toMatchObject({ code: 'BAD_DATA' });
      model.dispose();
    };
    await once(); // warm-up: backends may allocate lazily on first use
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await once();
    expect(tf.memory().numTensors).toBe(before);
  });
});
