/**
 * The data of a simulation: the preset's real data set split into train/test, and the features
 * the federation trains on (the frozen base's, computed once and cached) plus the features of the
 * "from scratch" baseline (bag of words for text, raw pixels for images).
 */
import path from 'node:path';
import { createDataset, selectClasses, subset, type LabeledDataset } from '../../client/data/dataset.ts';
import { loadFashionMnistSplits } from '../../client/data/fashion-mnist.ts';
import { loadImdb } from '../../client/data/imdb.ts';
import { loadMnist } from '../../client/data/mnist.ts';
import { splitTrainTest } from '../../client/data/split.ts';
import { computeFeatures, computeJointFeatures } from '../../client/features.ts';
import { createIdentityBase } from '../../shared/bases/identity.ts';
// Registers the fashion-cnn-split base, which the main job opens by name.
import '../bases/fashion-split-cnn.ts';
import { openBase, defaultCacheDir } from '../../shared/bases/prepare-base.ts';
import { Tokenizer, tokenize } from '../../shared/bases/tokenizer.ts';
import { createRandom } from '../../shared/math/random.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import { FeatureCache } from '../../shared/model/feature-cache.ts';
import type { FeatureMatrix } from '../../shared/model/feature-matrix.ts';
import type { FrozenBase } from '../../shared/model/frozen-base.ts';
import { jointFeatureBases } from '../../shared/model/fine-tune-model.ts';
import { resolveTrainableSet, type TrainableSetSpec } from '../../shared/model/trainable-set.ts';
import type { SimulationConfig } from './presets.ts';

export interface SimulationData {
  train: LabeledDataset;
  test: LabeledDataset;
}

/** Loads the preset's data set, split deterministically by the config's seed. */
export async function loadSimulationData(config: SimulationConfig): Promise<SimulationData> {
  const { trainExamples, testExamples, seed } = config;
  switch (config.dataset) {
    case 'imdb': {
      const all = await loadImdb({ limit: trainExamples + testExamples, seed });
      const { train, test } = splitTrainTest(all, { testFraction: testExamples / (trainExamples + testExamples), seed });
      return { train, test };
    }
    case 'mnist': {
      const format = config.base.startsWith('identity') ? 'tensor' : 'image';
      return {
        train: await loadMnist({ split: 'train', limit: Math.min(trainExamples, 60_000), seed, format }),
        test: await loadMnist({ split: 'test', limit: Math.min(testExamples, 10_000), seed, format }),
      };
    }
    case 'fashion-mnist': {
      const format = config.base.startsWith('identity') ? 'tensor' : 'image';
      if (config.classes) {
        // Split-class transfer: sample within the chosen classes only.
        const both = await loadFashionMnistSplits({ split: 'train', seed, format });
        return {
          train: selectClasses(both.train, config.classes, { limit: trainExamples, seed }),
          test: selectClasses(both.test, config.classes, { limit: testExamples, seed }),
        };
      }
      const train = (await loadFashionMnistSplits({ split: 'train', limit: trainExamples, seed, format })).selected;
      const test = (await loadFashionMnistSplits({ split: 'test', limit: testExamples, seed, format })).selected;
      return { train, test };
    }
    default:
      throw new FedtlError('BAD_CONFIG', `unknown data set ${String(config.dataset)}`);
  }
}

/** The frozen base of a config and the directory clients download it from (null for identity). */
export async function openSimulationBase(name: string): Promise<{ base: FrozenBase; directory: string | null }> {
  const identity = /^identity-(\d+)$/.exec(name);
  if (identity) return { base: createIdentityBase(Number(identity[1])), directory: null };
  const base = await openBase(name);
  return { base, directory: base.dir };
}

export function simulationCache(): FeatureCache {
  return new FeatureCache({ directory: path.join(defaultCacheDir(), 'features') });
}

export interface FeatureProgress {
  (label: string, done: number, total: number): void;
}

export async function featuresOf(base: FrozenBase, dataset: LabeledDataset, cache: FeatureCache, progress?: FeatureProgress): Promise<FeatureMatrix> {
  return computeFeatures(base, dataset, { cache, batchSize: 128, ...(progress ? { onProgress: (done, total) => progress(`${base.name} features of ${dataset.name}`, done, total) } : {}) });
}

/**
 * Features at the boundaries a fine-tuning schedule will cut the base at, taken in the same pass of
 * the base as its own output features (`jointFeatureBases`) and stored in the cache, so the
 * fine-tuning stages find them there instead of running the frozen bottom over the data again.
 * Does nothing when they are all cached already or no stage cuts inside the base.
 */
export async function prefetchStageFeatures(base: FrozenBase, spec: TrainableSetSpec, datasets: readonly LabeledDataset[], progress?: FeatureProgress): Promise<void> {
  const joint = jointFeatureBases(base, resolveTrainableSet(spec, base.model).stages);
  if (!joint) return;
  for (const dataset of datasets) {
    // A cache object of its own, dropped right away: the runs read these back from disk one at a time.
    await computeJointFeatures(joint, dataset, {
      cache: simulationCache(),
      batchSize: 128,
      ...(progress ? { onProgress: (done: number, total: number) => progress(`${joint.bases.map((b) => b.name).join(' + ')} features of ${dataset.name}`, done, total) } : {}),
    });
  }
}

/** How {@link bagOfWords} weights a word in a text. */
export type BagOfWordsWeighting = 'counts' | 'tf-idf';

/** Options of {@link bagOfWords}. */
export interface BagOfWordsOptions {
  /** Words kept: the most frequent of the training texts. @default 5000 */
  size?: number;
  /**
   * `counts`: how often each word occurs. `tf-idf`: sublinear term frequency 1 + ln(count) times
   * the smoothed inverse document frequency ln((1 + n) / (1 + df)) + 1, the usual strong linear
   * text baseline (Salton & Buckley 1988, "Term-weighting approaches in automatic text retrieval";
   * Manning, Raghavan & Schütze 2008, §6.4). @default 'counts'
   */
  weighting?: BagOfWordsWeighting;
}

/**
 * Bag-of-words rows for the "from scratch" text baselines over the `size` most frequent words of
 * the training texts, L2-normalised. The vocabulary and the document frequencies come from the
 * training texts alone, so nothing of the test set leaks in, and nothing pretrained goes into them.
 */
export function bagOfWords(train: LabeledDataset, others: LabeledDataset[], options: BagOfWordsOptions = {}): LabeledDataset[] {
  const size = options.size ?? 5000;
  const weighting = options.weighting ?? 'counts';
  const textsOf = (dataset: LabeledDataset): string[] => {
    if (dataset.examples.kind !== 'text') throw new FedtlError('BAD_DATA', `a bag of words needs text examples; ${dataset.name} holds ${dataset.examples.kind} examples`);
    return dataset.examples.texts;
  };
  const counts = new Map<string, number>();
  for (const text of textsOf(train)) for (const token of tokenize(text)) counts.set(token, (counts.get(token) ?? 0) + 1);
  const vocabulary = [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, size).map(([word]) => word);
  const index = new Map(vocabulary.map((word, i) => [word, i]));
  const width = vocabulary.length;
  const countRows = (texts: string[]): Float32Array => {
    const rows = new Float32Array(texts.length * width);
    texts.forEach((text, r) => {
      for (const token of tokenize(text)) {
        const column = index.get(token);
        if (column !== undefined) rows[r * width + column]! += 1;
      }
    });
    return rows;
  };
  const trainCounts = countRows(textsOf(train));
  const idf = new Float32Array(width).fill(1);
  if (weighting === 'tf-idf') {
    const documents = new Float64Array(width);
    for (let i = 0; i < trainCounts.length; i++) if (trainCounts[i]! > 0) documents[i % width]! += 1;
    for (let c = 0; c < width; c++) idf[c] = Math.log((1 + train.size) / (1 + documents[c]!)) + 1;
  }
  const vectorize = (dataset: LabeledDataset, rows: Float32Array): LabeledDataset => {
    for (let r = 0; r < dataset.size; r++) {
      const row = rows.subarray(r * width, (r + 1) * width);
      let norm = 0;
      for (let i = 0; i < width; i++) {
        if (weighting === 'tf-idf' && row[i]! > 0) row[i] = (1 + Math.log(row[i]!)) * idf[i]!;
        norm += row[i]! * row[i]!;
      }
      if (norm > 0) {
        const scale = 1 / Math.sqrt(norm);
        for (let i = 0; i < width; i++) row[i]! *= scale;
      }
    }
    const suffix = weighting === 'tf-idf' ? 'tfidf' : 'bow';
    return createDataset({ name: `${dataset.name}-${suffix}${width}`, examples: { kind: 'tensor', rows, rowSize: width }, labels: dataset.labels, classNames: dataset.classNames });
  };
  return [vectorize(train, trainCounts), ...others.map((dataset) => vectorize(dataset, countRows(textsOf(dataset))))];
}

/**
 * The text base's architecture with its pretrained weights replaced by random ones: the same
 * tokenizer and vocabulary, the same mean pooling and layer normalisation, but each word's vector
 * drawn from N(0, 1) (seeded) instead of GloVe. This is the "same model without pretraining"
 * ablation, so the difference to the GloVe run is what the pretrained weights buy.
 */
export function randomEmbeddingRows(base: FrozenBase, datasets: LabeledDataset[], seed: number): LabeledDataset[] {
  if (base.input.kind !== 'text') throw new FedtlError('BAD_CONFIG', 'random-embedding rows need a text base');
  const tokenizer = new Tokenizer(base.input.vocabulary, { sequenceLength: base.input.sequenceLength });
  const dims = base.embeddingSize;
  const random = createRandom(`random-embedding-${seed}`);
  const table = new Float32Array(base.input.vocabulary.length * dims);
  // Ids 0 (padding) and 1 (unknown word) stay zero, as in the pretrained base.
  for (let i = 2 * dims; i < table.length; i++) table[i] = random.normal();
  return datasets.map((dataset) => {
    if (dataset.examples.kind !== 'text') throw new FedtlError('BAD_DATA', 'random-embedding rows need text examples');
    const rows = new Float32Array(dataset.size * dims);
    dataset.examples.texts.forEach((text, r) => {
      const row = rows.subarray(r * dims, (r + 1) * dims);
      const ids = tokenizer.encode(text);
      let count = 0;
      for (const id of ids) {
        if (id === 0) continue;
        count++;
        for (let d = 0; d < dims; d++) row[d]! += table[id * dims + d]!;
      }
      if (count === 0) return;
      let mean = 0;
      for (let d = 0; d < dims; d++) mean += row[d]! / dims;
      let variance = 0;
      for (let d = 0; d < dims; d++) variance += (row[d]! - mean) ** 2 / dims;
      const scale = 1 / Math.sqrt(variance + 1e-12);
      for (let d = 0; d < dims; d++) row[d] = (row[d]! - mean) * scale;
    });
    return createDataset({ name: `${dataset.name}-random-embedding`, examples: { kind: 'tensor', rows, rowSize: dims }, labels: dataset.labels, classNames: dataset.classNames });
  });
}

/** Raw pixels as rows (the "from scratch" image baseline). */
export function pixelRows(dataset: LabeledDataset): LabeledDataset {
  const examples = dataset.examples;
  if (examples.kind === 'tensor') return dataset;
  if (examples.kind !== 'image') throw new FedtlError('BAD_DATA', 'pixel rows need image examples');
  const size = examples.width * examples.height * examples.channels;
  const rows = new Float32Array(examples.pixels.length);
  for (let i = 0; i < rows.length; i++) rows[i] = examples.pixels[i]! / 255;
  return createDataset({ name: `${dataset.name}-pixels`, examples: { kind: 'tensor', rows, rowSize: size }, labels: dataset.labels, classNames: dataset.classNames });
}

export { subset };
