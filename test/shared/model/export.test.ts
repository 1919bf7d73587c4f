import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCsv } from '../../../client/data/csv.ts';
import { computeFeatures } from '../../../client/features.ts';
import { loadExportedModel, predict } from '../../../client/predict.ts';
import { createIdentityBase } from '../../../shared/bases/identity.ts';
import { openBase } from '../../../shared/bases/prepare-base.ts';
import { Tokenizer } from '../../../shared/bases/tokenizer.ts';
import { fileLoadHandler, type LoadedBase } from '../../../shared/model/base-loader.ts';
import { EXPORT_SIDECAR_FILE, EXPORT_VOCABULARY_FILE, exportTransferModel, parseExportSidecar, readExportSidecar } from '../../../shared/model/export.ts';
import type { FrozenBase } from '../../../shared/model/frozen-base.ts';
import { buildHead } from '../../../shared/model/head.ts';
import { predictHead } from '../../../shared/model/head-training.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';
import { REVIEWS, SMALL_GLOVE, TEXT_HEAD, maxAbsDiff, reference } from '../../support/text-model.ts';


let work: string;
let glove: LoadedBase;
let textHead: tf.Sequential;

beforeAll(async () => {
  await selectBackend({ log: false });
  work = await mkdtemp(path.join(os.tmpdir(), 'fedtl-export-'));
  glove = await openBase('glove-100d', { cacheDir: path.join(work, 'cache'), ...SMALL_GLOVE });
  textHead = buildHead(glove.embeddingSize, TEXT_HEAD, { seed: 5 });
});
afterAll(async () => {
  glove.dispose();
  textHead.dispose();
  await rm(work, { recursive: true, force: true });
});

/** Probabilities of base.embed → head on prepared inputs: the reference the export must match. */
async function run(model: tf.LayersModel, x: tf.Tensor): Promise<Float32Array> {
  const out = model.predict(x) as tf.Tensor;
  const values = (await out.data()) as Float32Array;
  out.dispose();
  return values;
}

describe('exportTransferModel: GloVe text model', () => {
  it('writes one standard LayersModel that stock tf.loadLayersModel loads, from disk and from memory, with identical predictions', async () => {
    // Prepare
    const dir = path.join(work, 'text-model');
    const tokenizer = new Tokenizer(glove.input.kind === 'text' ? glove.input.vocabulary : [], { sequenceLength: 32 });
    const ids = tokenizer.encodeBatch(REVIEWS);
    const expected = await reference(glove, textHead, ids);

    // Execute
    const result = await exportTransferModel(glove, textHead, dir, { classNames: ['negative', 'positive'], headSpec: { ...TEXT_HEAD }, extra: { rounds: 3, strategy: 'fedavg' } });
    const fromDisk = await tf.loadLayersModel(fileLoadHandler(dir));
    const modelJson = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')) as tf.io.ModelJSON;
    const weightBytes = await readFile(path.join(dir, 'weights.bin'));
    const fromMemory = await tf.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: modelJson.modelTopology,
        weightSpecs: modelJson.weightsManifest.flatMap((group) => group.weights),
        weightData: weightBytes.buffer.slice(weightBytes.byteOffset, weightBytes.byteOffset + weightBytes.byteLength),
      }),
    );

    // Assert: one model, base and head inside, one weights file
    expect(result.contents).toBe('base+head');
    expect(modelJson.weightsManifest).toHaveLength(1);
    expect(modelJson.weightsManifest[0]!.paths).toEqual(['weights.bin']);
    const layerNames = fromDisk.layers.map((l) => l.name);
    expect(layerNames).toEqual(expect.arrayContaining(['glove_embedding', 'mean_pool', 'scale_free_norm', 'head_dense_0', 'head_dropout_0', 'head_output']));
    expect(fromDisk.inputs[0]!.dtype).toBe('int32');
    expect(fromDisk.outputs[0]!.shape).toEqual([null, 2]);
    // The frozen base stays frozen in the saved config; the head stays trainable.
    expect(fromDisk.getLayer('glove_embedding').trainable).toBe(false);
    expect(fromDisk.getLayer('head_output').trainable).toBe(true);

    expect(maxAbsDiff(await run(fromDisk, ids), expected)).toBeLessThan(1e-6);
    expect(maxAbsDiff(await run(fromMemory, ids), expected)).toBeLessThan(1e-6);

    // Exporting did not disturb the live base and head.
    expect(maxAbsDiff(await reference(glove, textHead, ids), expected)).toBe(0);

    // Sidecar: class names, base identity, input spec with its vocabulary, head, provenance.
    const sidecar = await readExportSidecar(dir);
    expect(sidecar).toMatchObject({
      format: 'fedtl-model',
      classNames: ['negative', 'positive'],
      contents: 'base+head',
      base: { name: glove.name, hash: glove.hash, kind: 'layers', embeddingSize: 100 },
      input: { kind: 'text', sequenceLength: 32, vocabularyFile: EXPORT_VOCABULARY_FILE },
      modelInput: { shape: [null, 32], dtype: 'int32' },
      head: { inputSize: 100, classes: 2, parameterCount: 100 * 8 + 8 + 8 * 2 + 2, spec: TEXT_HEAD },
      provenance: { extra: { rounds: 3, strategy: 'fedavg' }, tfjsVersion: tf.version.tfjs },
    });
    expect(sidecar.head.layers.map((l) => l.type)).toEqual(['Dense', 'Dropout', 'Dense']);
    const vocabulary = JSON.parse(await readFile(path.join(dir, EXPORT_VOCABULARY_FILE), 'utf8')) as string[];
    expect(vocabulary).toEqual(glove.input.kind === 'text' ? glove.input.vocabulary : null);

    tf.dispose([ids]);
    fromDisk.dispose();
    fromMemory.dispose();
  });

  it('refuses a changed model directory or an invalid sidecar', async () => {
    const dir = path.join(work, 'text-model-tampered');
    await exportTransferModel(glove, textHead, dir, { classNames: ['negative', 'positive'] });
    const weights = await readFile(path.join(dir, 'weights.bin'));
    weights[weights.length - 1] = weights[weights.length - 1]! ^ 0xff;
    await writeFile(path.join(dir, 'weights.bin'), weights);
    await expect(loadExportedModel(dir)).rejects.toMatchObject({ code: 'HASH_MISMATCH' });

    await writeFile(path.join(dir, EXPORT_SIDECAR_FILE), JSON.stringify({ format: 'fedtl-model', version: 1, classNames: ['a'] }));
    await expect(loadExportedModel(dir)).rejects.toMatchObject({ code: 'BAD_MODEL', message: expect.stringContaining('classNames') });
    await expect(loadExportedModel(path.join(work, 'nowhere'))).rejects.toMatchObject({ code: 'CORRUPT_FILE' });
    expect(() => parseExportSidecar({ format: 'fedtl-base' })).toThrow(expect.objectContaining({ code: 'BAD_MODEL' }));
  });

  it('refuses a head that does not fit the base or the class names', async () => {
    const wrongSize = buildHead(50, { ...TEXT_HEAD });
    await expect(exportTransferModel(glove, wrongSize, path.join(work, 'bad-1'), { classNames: ['a', 'b'] })).rejects.toMatchObject({ code: 'BAD_SHAPE' });
    await expect(exportTransferModel(glove, textHead, path.join(work, 'bad-2'), { classNames: ['a', 'b', 'c'] })).rejects.toMatchObject({ code: 'BAD_SHAPE' });
    wrongSize.dispose();
  });
});

describe('exportTransferModel: MobileNetV2 image base', () => {
  it('composes the cut MobileNetV2 and the head into one model that reloads with identical predictions', async () => {
    // Prepare: the real base (uses the shared base cache; built once).
    const base = await openBase('mobilenet-v2-96');
    const head = buildHead(base.embeddingSize, { hidden: [16], activation: 'relu', dropout: 0, classes: 3 }, { seed: 6 });
    const x = tf.randomUniform([3, 96, 96, 3], 0, 1, 'float32', 11);
    const expected = await reference(base, head, x);
    const dir = path.join(work, 'mobilenet-model');

    // Execute
    const result = await exportTransferModel(base, head, dir, { classNames: ['cat', 'dog', 'bird'] });
    const stock = await tf.loadLayersModel(fileLoadHandler(dir));

    // Assert
    expect(result.sidecar).toMatchObject({ contents: 'base+head', base: { kind: 'layers', embeddingSize: 1280 }, input: { kind: 'image', size: 96, channels: 3 } });
    expect(stock.layers.length).toBe(base.model!.layers.length + head.layers.length);
    expect(maxAbsDiff(await run(stock, x), expected)).toBeLessThan(1e-6);

    tf.dispose(x);
    stock.dispose();
    head.dispose();
    base.dispose();
  });
});

describe('exportTransferModel: identity base and CSV rows', () => {
  it('exports the head with raw rows as input and predicts on number arrays', async () => {
    // Prepare: a real CSV through the loader, an identity base, a trained-looking head
    const csv = path.join(work, 'vitals.csv');
    await writeFile(csv, 'age,pulse,temp,label\n63,88,38.1,sick\n25,60,36.6,well\n47,72,37.0,well\n71,110,39.2,sick\n');
    const data = await loadCsv({ path: csv });
    const base = createIdentityBase(3);
    const head = buildHead(3, { hidden: [], activation: 'relu', dropout: 0, classes: 2 }, { seed: 1 });
    const dir = path.join(work, 'csv-model');
    const features = await computeFeatures(base, data);
    const expected = await predictHead(head, features);

    // Execute
    const result = await exportTransferModel(base, head, dir, { classNames: data.classNames });
    const stock = await tf.loadLayersModel(fileLoadHandler(dir));
    const x = tf.tensor2d(features.values, [features.rows, features.cols]);
    const model = await loadExportedModel(dir);
    const rows = Array.from({ length: data.size }, (_, i) => Array.from(features.values.subarray(i * 3, i * 3 + 3)));
    const predictions = await predict(model, rows);

    // Assert
    expect(result.contents).toBe('base+head');
    expect(result.sidecar.base.kind).toBe('identity');
    expect(result.sidecar.input).toEqual({ kind: 'tensor', size: 3 });
    expect(result.sidecar.modelInput).toEqual({ shape: [null, 3], dtype: 'float32' });
    expect(maxAbsDiff(await run(stock, x), expected)).toBeLessThan(1e-6);
    expect(maxAbsDiff(predictions.flatMap((p) => p.probabilities), expected)).toBeLessThan(1e-6);
    expect(predictions.map((p) => p.className).every((c) => data.classNames.includes(c))).toBe(true);

    await expect(predict(model, ['63,88,38.1'])).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining('numeric rows of 3') });
    await expect(predict(model, [[1, 2]])).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining('has 2 values') });
    await expect(predict(model, [[1, Number.NaN, 3]])).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining('not a finite number') });

    tf.dispose(x);
    stock.dispose();
    model.dispose();
    head.dispose();
  });
});

describe('exportTransferModel: base without a LayersModel (e.g. a GraphModel)', () => {
  it('exports the head alone and needs the same base at load time', async () => {
    // Prepare: a base with no LayersModel (like a GraphModel base): a fixed projection of 4 → 3.
    const projection = tf.tensor2d([[1, 0, 0.5], [0, 1, -0.5], [0.2, 0.3, 0], [0, 0, 1]]);
    const external: FrozenBase = {
      name: 'projection',
      hash: 'a'.repeat(64),
      input: { kind: 'tensor', size: 4 },
      embeddingSize: 3,
      model: null,
      embed: (batch) => tf.matMul(batch as tf.Tensor2D, projection),
      dispose: () => undefined,
    };
    const head = buildHead(3, { hidden: [], activation: 'relu', dropout: 0, classes: 2 }, { seed: 8 });
    const rows = [[1, 2, 3, 4], [0, -1, 0.5, 2]];
    const x = tf.tensor2d(rows);
    const expected = await reference(external, head, x);

    // Execute
    const dir = path.join(work, 'head-only');
    const result = await exportTransferModel(external, head, dir, { classNames: ['no', 'yes'] });

    // Assert
    expect(result.contents).toBe('head');
    expect(result.sidecar.base).toMatchObject({ kind: 'external', hash: external.hash });
    expect(result.sidecar.modelInput.shape).toEqual([null, 3]); // embeddings, not raw rows
    await expect(loadExportedModel(dir)).rejects.toMatchObject({ code: 'BAD_CONFIG', message: expect.stringContaining('holds only the head') });
    await expect(loadExportedModel(dir, { base: createIdentityBase(4) })).rejects.toMatchObject({ code: 'HASH_MISMATCH' });
    const model = await loadExportedModel(dir, { base: external });
    const predictions = await predict(model, rows);
    expect(maxAbsDiff(predictions.flatMap((p) => p.probabilities), expected)).toBeLessThan(1e-6);

    model.dispose();
    head.dispose();
    tf.dispose([x, projection]);
  });
});

describe('export and predict memory', () => {
  it('leaks no tensors across repeated export, load and predict', async () => {
    const run = async (i: number): Promise<void> => {
      const dir = path.join(work, `leak-${i}`);
      await exportTransferModel(glove, textHead, dir, { classNames: ['negative', 'positive'] });
      const model = await loadExportedModel(dir);
      await predict(model, REVIEWS);
      model.dispose();
    };
    await run(0); // warm-up: backends may allocate lazily on first use
    const before = tf.memory().numTensors;
    for (let i = 1; i <= 3; i++) await run(i);
    expect(tf.memory().numTensors).toBe(before);
  });
});
