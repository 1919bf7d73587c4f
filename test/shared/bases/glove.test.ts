import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GLOVE_LN_EPSILON, readGloveVectors } from '../../../shared/bases/glove.ts';
import { openBase } from '../../../shared/bases/prepare-base.ts';
import { Tokenizer } from '../../../shared/bases/tokenizer.ts';
import type { LoadedBase } from '../../../shared/model/base-loader.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';

let cacheDir: string;
let base: LoadedBase;
let tokenizer: Tokenizer;
let table: Float32Array; // the embedding matrix, [vocabulary, 100]

beforeAll(async () => {
  await selectBackend({ log: false });
  cacheDir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-glove-'));
  base = await openBase('glove-100d', { cacheDir, vocabularySize: 2000, sequenceLength: 32 });
  if (base.input.kind !== 'text') throw new Error('glove must be a text base');
  tokenizer = new Tokenizer(base.input.vocabulary, { sequenceLength: base.input.sequenceLength });
  const [weights] = base.model!.getLayer('glove_embedding').getWeights();
  table = (await weights!.data()) as Float32Array;
});
afterAll(async () => {
  base.dispose();
  await rm(cacheDir, { recursive: true, force: true });
});

async function embedTexts(texts: string[]): Promise<number[][]> {
  const ids = tokenizer.encodeBatch(texts);
  const out = base.embed(ids);
  const rows = (await out.array()) as number[][];
  tf.dispose([ids, out]);
  return rows;
}

/** LayerNormalization without parameters, in float64. */
function layerNorm(v: number[]): number[] {
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length;
  return v.map((x) => (x - mean) / Math.sqrt(variance + GLOVE_LN_EPSILON));
}

function cosine(a: number[], b: number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  a.forEach((x, i) => {
    dot += x * b[i]!;
    na += x * x;
    nb += b[i]! ** 2;
  });
  return dot / Math.sqrt(na * nb);
}

describe('glove-100d base', () => {
  it('has the frequency-ordered vocabulary with reserved ids 0 and 1', () => {
    if (base.input.kind !== 'text') throw new Error('unreachable');
    expect(base.input.vocabulary.slice(0, 8)).toEqual(['<pad>', '<oov>', 'the', 'of', 'to', 'and', 'in', 'for']);
    expect(base.input.vocabulary).toHaveLength(2002);
    expect(base.input.sequenceLength).toBe(32);
    expect(base.embeddingSize).toBe(100);
    expect(base.name).toBe('glove-100d-2000w-32t');
    // Padding and OOV rows are zero.
    expect(Array.from(table.subarray(0, 200)).every((x) => x === 0)).toBe(true);
    expect(base.model!.trainableWeights).toHaveLength(0);
  });

  it('outputs LayerNorm(mean of the real tokens) whatever the padding', async () => {
    const text = 'The government said the police were in the city';
    const ids = Array.from(tokenizer.encode(text)).filter((id) => id !== 0);
    expect(ids.length).toBeGreaterThan(5);
    expect(ids.length).toBeLessThan(32);
    const mean = Array.from({ length: 100 }, (_, d) => ids.reduce((sum, id) => sum + table[id * 100 + d]!, 0) / ids.length);
    const expected = layerNorm(mean);
    const [got] = await embedTexts([text]);
    got!.forEach((v, d) => expect(v).toBeCloseTo(expected[d]!, 3));
    // Twice the text = same mean over real tokens = same embedding, though GAP's sum/L doubled.
    const [doubled] = await embedTexts([`${text} ${text}`]);
    doubled!.forEach((v, d) => expect(v).toBeCloseTo(got![d]!, 4));
  });

  it('keeps an all-padding input finite', async () => {
    const [empty] = await embedTexts(['']);
    expect(empty!.every((x) => Number.isFinite(x))).toBe(true);
  });

  it('puts similar words closer than unrelated ones (real GloVe vectors)', async () => {
    const [monday, tuesday, water, good, great, government] = await embedTexts(['monday', 'tuesday', 'water', 'good', 'great', 'government']);
    for (const word of ['monday', 'tuesday', 'water', 'good', 'great', 'government']) expect(tokenizer.idOf(word)).toBeGreaterThan(1);
    expect(cosine(monday!, tuesday!)).toBeGreaterThan(cosine(monday!, water!) + 0.2);
    expect(cosine(good!, great!)).toBeGreaterThan(cosine(good!, government!) + 0.2);
  });

  it('does not leak tensors across repeated embeds', async () => {
    const ids = tokenizer.encodeBatch(['a good film', 'a bad film']);
    base.embed(ids).dispose();
    const steady = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) base.embed(ids).dispose();
    expect(tf.memory().numTensors).toBe(steady);
    ids.dispose();
  });

  it('reads the default 20,000 words from the start of the file only', async () => {
    const glove = await readGloveVectors({ logger: { debug() {}, info() {}, warn() {}, error() {} } });
    expect(glove.words).toHaveLength(20_000);
    expect(glove.vectors).toHaveLength(20_000 * 100);
    expect(glove.words.slice(0, 3)).toEqual(['the', 'of', 'to']);
    expect(glove.vectors.every((x) => Number.isFinite(x))).toBe(true);
  });
});
