/**
 * An exported model used outside fedtl: `test/support/stock-tfjs-consumer.mjs` imports only stock
 * @tensorflow/tfjs and Node built-ins and re-implements every preprocessing step from
 * `fedtl-model.json` alone. Its predictions must equal fedtl's own `predict` on real IMDB reviews
 * (HTML breaks, entities, contractions) and on a CSV whose columns are in another order.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCsv } from '../../../client/data/csv.ts';
import { loadImdb } from '../../../client/data/imdb.ts';
import { loadExportedModel, predict } from '../../../client/predict.ts';
import { createIdentityBase } from '../../../shared/bases/identity.ts';
import { openBase } from '../../../shared/bases/prepare-base.ts';
import { Tokenizer, TOKENIZER_VERSION, tokenize } from '../../../shared/bases/tokenizer.ts';
import type { LoadedBase } from '../../../shared/model/base-loader.ts';
import { exportTransferModel, readExportSidecar } from '../../../shared/model/export.ts';
import { buildHead } from '../../../shared/model/head.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';
import { predictCsv, predictTexts } from '../../support/stock-tfjs-consumer.mjs';
import { TEXT_HEAD, maxAbsDiff } from '../../support/text-model.ts';

const CONSUMER = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'support', 'stock-tfjs-consumer.mjs');

let work: string;
let glove: LoadedBase;

beforeAll(async () => {
  await selectBackend({ log: false });
  work = await mkdtemp(path.join(os.tmpdir(), 'fedtl-stock-'));
  glove = await openBase('glove-100d', { cacheDir: path.join(work, 'cache'), vocabularySize: 5000, sequenceLength: 128 });
});
afterAll(async () => {
  glove.dispose();
  await rm(work, { recursive: true, force: true });
});

describe('an exported model with stock TensorFlow.js and no fedtl code', () => {
  it('the consumer imports nothing but @tensorflow/tfjs and Node built-ins', async () => {
    const source = await readFile(CONSUMER, 'utf8');
    const imports = [...source.matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]);
    expect(imports.sort()).toEqual(['@tensorflow/tfjs', 'node:fs/promises', 'node:path'].sort());
  });

  it('re-implements the text preprocessing from fedtl-model.json and predicts exactly as fedtl on 200 IMDB reviews', async () => {
    // Prepare: a text export and 200 real reviews (with <br />, entities and contractions).
    const head = buildHead(glove.embeddingSize, TEXT_HEAD, { seed: 11 });
    const dir = path.join(work, 'text');
    await exportTransferModel(glove, head, dir, { classNames: ['negative', 'positive'] });
    head.dispose();
    const reviews = (await loadImdb({ limit: 200, seed: 4 })).examples;
    if (reviews.kind !== 'text') throw new Error('imdb holds texts');
    const texts = [...reviews.texts, "Don't &amp; won't — it's Shan't<br />O'Neill’s", ''];
    const sidecar = await readExportSidecar(dir);

    // Execute: fedtl's predict, and the stock consumer.
    const model = await loadExportedModel(dir);
    const ours = await predict(model, texts);
    const tensorsBefore = tf.memory().numTensors;
    const stock = await predictTexts(dir, texts);
    const tensorsAfter = tf.memory().numTensors;
    model.dispose();

    // Assert: the description is versioned and complete, ids and probabilities agree exactly.
    expect(sidecar.preprocessing).toMatchObject({ kind: 'text', tokenizer: { name: 'fedtl-words', version: TOKENIZER_VERSION }, sequenceLength: 128, padId: 0, oovId: 1 });
    const tokenizer = new Tokenizer(glove.input.kind === 'text' ? glove.input.vocabulary : [], { sequenceLength: 128 });
    const expectedIds = new Int32Array(texts.length * 128);
    texts.forEach((t, i) => expectedIds.set(tokenizer.encode(t), i * 128));
    expect(Array.from(stock.ids)).toEqual(Array.from(expectedIds));
    expect(maxAbsDiff(stock.probabilities.flat(), ours.flatMap((p) => p.probabilities))).toBeLessThan(1e-6);
    expect(stock.classNames).toEqual(['negative', 'positive']);
    expect(tensorsAfter).toBe(tensorsBefore);

    // The obvious tokenizer (lowercase, split on non-alphanumerics) is not the model's: it differs on most reviews.
    const naive = (text: string) => text.toLowerCase().split(/[^a-z0-9]+/).filter((w) => w !== '');
    const differing = texts.filter((t) => naive(t).join(' ') !== tokenize(t).join(' '));
    expect(differing.length).toBeGreaterThan(100);
  });

  it('matches CSV columns by the names the export records, whatever their order in the file', async () => {
    // Prepare: train-order columns [age, weight], a file with them reversed.
    const base = createIdentityBase(2, { name: 'rows-2' });
    const head = buildHead(2, { hidden: [], activation: 'relu', dropout: 0, classes: 2 }, { seed: 2 });
    const dir = path.join(work, 'csv');
    await exportTransferModel(base, head, dir, { classNames: ['no', 'yes'], featureColumns: ['age', 'weight'] });
    head.dispose();
    const reversed = 'weight,label,age\n70,no,30\n55,yes,80\n90,no,45\n';
    const file = path.join(work, 'reversed.csv');
    await writeFile(file, reversed);

    // Execute: fedtl reads the file by header; the stock consumer picks columns by the recorded names.
    const rows = await loadCsv({ path: file, columns: ['age', 'weight'] });
    if (rows.examples.kind !== 'tensor') throw new Error('csv holds rows');
    const model = await loadExportedModel(dir);
    const values = Array.from({ length: rows.size }, (_, i) => Array.from(rows.examples.kind === 'tensor' ? rows.examples.rows.subarray(i * 2, i * 2 + 2) : []));
    const ours = await predict(model, values);
    model.dispose();
    const stock = await predictCsv(dir, reversed);

    // Assert
    expect(values).toEqual([[30, 70], [80, 55], [45, 90]]);
    expect((await readExportSidecar(dir)).preprocessing).toMatchObject({ kind: 'tensor', size: 2, columns: ['age', 'weight'] });
    expect(maxAbsDiff(stock.probabilities.flat(), ours.flatMap((p) => p.probabilities))).toBeLessThan(1e-6);
  });
});
