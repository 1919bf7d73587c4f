/**
 * Prediction on new raw inputs with a model written by `exportTransferModel`
 * (`shared/model/export.ts`).
 *
 * Raw inputs are prepared exactly as training data was: text through the {@link Tokenizer} and
 * the vocabulary saved with the model, image files through the loaders' sharp decode
 * (`decodeImage`) and pixel scaling (`prepareImageBatch`), numeric rows as they are.
 *
 * @example
 * const model = await loadExportedModel('runs/imdb/model');
 * const [p] = await predict(model, ['A moving, beautifully acted film.']);
 * p.className; // 'positive'
 * model.dispose();
 */
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../shared/core/errors.ts';
import { OOV_ID, Tokenizer } from '../shared/bases/tokenizer.ts';
import { fileLoadHandler, readVocabulary } from '../shared/model/base-loader.ts';
import { readExportSidecar, type ExportSidecar } from '../shared/model/export.ts';
import type { BaseInputSpec, FrozenBase, ImageInputSpec } from '../shared/model/frozen-base.ts';
import { hashFile, hashModelArtifacts, resolveShardPath } from '../shared/model/model-hash.ts';
import { decodeImage, type ImageFit } from './data/image-folder.ts';
import { prepareImageBatch } from './data/prepare-inputs.ts';

/** Options of {@link loadExportedModel}. */
export interface LoadExportedModelOptions {
  /**
   * The frozen base, for exports that hold only the head (`contents: 'head'`, i.e. the model was
   * trained on a GraphModel base that cannot be part of a LayersModel). Its hash must match the
   * one recorded in the sidecar. Not owned: the caller disposes it. @default none
   */
  base?: FrozenBase;
  /** Check the model and vocabulary against the hashes in the sidecar. @default true */
  verify?: boolean;
}

/** A loaded export: the stock TF.js LayersModel plus what is needed to feed it raw inputs. */
export interface ExportedModel {
  readonly dir: string;
  readonly sidecar: ExportSidecar;
  /** The model as stock `tf.loadLayersModel` loads it. */
  readonly model: tf.LayersModel;
  readonly classNames: readonly string[];
  /** What raw inputs become before the model (or the base) sees them. */
  readonly input: BaseInputSpec;
  /** The base for head-only exports; `null` when `model` maps prepared inputs to probabilities. */
  readonly base: FrozenBase | null;
  /** Frees the model's weights (not the base's). */
  dispose(): void;
}

/** One prediction. */
export interface Prediction {
  /** Index of the most probable class. */
  label: number;
  className: string;
  /** Probability per class, index = label; sums to 1. */
  probabilities: number[];
  /**
   * Text models: how many of the text's tokens (within the sequence length) are in the
   * vocabulary. 0 means the model saw only padding and answers with its prior.
   */
  knownWords?: number;
}

/** Options of {@link predict}. */
export interface PredictOptions {
  /** Inputs per forward pass. @default 64 */
  batchSize?: number;
  /** How image files are fitted to the model's square input, as in `loadImageFolder`. @default 'cover' */
  fit?: ImageFit;
}

/**
 * Raw inputs: texts (text models), image file paths (image models), or numeric rows such as
 * CSV rows without the label column (tensor models).
 */
export type RawInputs = readonly string[] | readonly ArrayLike<number>[];

/**
 * Loads an exported model directory (`model.json`, `weights.bin`, `fedtl-model.json`, and
 * `vocabulary.json` for text) with stock `tf.loadLayersModel`.
 *
 * @throws FedtlError `HASH_MISMATCH` when the files changed since export or `options.base` is not
 *   the base the model was trained on; `BAD_CONFIG` when a head-only export is loaded without its
 *   base; `CORRUPT_FILE`/`BAD_MODEL` for missing or invalid files.
 */
export async function loadExportedModel(dir: string, options: LoadExportedModelOptions = {}): Promise<ExportedModel> {
  const sidecar = await readExportSidecar(dir);
  const verify = options.verify !== false;
  const base = options.base ?? null;
  if (sidecar.contents === 'head') {
    if (!base) {
      throw new FedtlError(
        'BAD_CONFIG',
        `${dir} holds only the head: its base "${sidecar.base.name}" is a ${sidecar.base.kind === 'graph' ? 'GraphModel, which cannot be part of one LayersModel' : 'base without a LayersModel'}. ` +
          `Pass it: loadExportedModel(dir, { base: await openBase('${sidecar.base.name}') })`,
      );
    }
    if (base.hash !== sidecar.base.hash) {
      throw new FedtlError('HASH_MISMATCH', `base "${base.name}" (hash ${base.hash.slice(0, 12)}…) is not the base ${dir} was trained on ("${sidecar.base.name}", ${sidecar.base.hash.slice(0, 12)}…)`);
    }
  }

  const artifacts = await fileLoadHandler(dir).load!();
  if (verify && hashModelArtifacts(artifacts) !== sidecar.modelHash) {
    throw new FedtlError('HASH_MISMATCH', `model in ${dir} does not match the modelHash in its fedtl-model.json; the directory changed or is corrupt — export it again`);
  }
  let input: BaseInputSpec;
  if (sidecar.input.kind === 'text') {
    const file = resolveShardPath(dir, sidecar.input.vocabularyFile);
    if (verify && (await hashFile(file)) !== sidecar.files[sidecar.input.vocabularyFile]) {
      throw new FedtlError('HASH_MISMATCH', `${file} does not match the hash in fedtl-model.json; the vocabulary changed — export the model again`);
    }
    input = { kind: 'text', sequenceLength: sidecar.input.sequenceLength, vocabulary: await readVocabulary(file) };
  } else {
    input = sidecar.input;
  }

  let model: tf.LayersModel;
  try {
    model = await tf.loadLayersModel({ load: async () => artifacts });
  } catch (error) {
    throw new FedtlError('BAD_MODEL', `cannot load the LayersModel in ${dir}: ${(error as Error).message}`, { cause: error });
  }
  const outputs = model.outputs[0]?.shape[1];
  if (model.inputs.length !== 1 || outputs !== sidecar.classNames.length) {
    model.dispose();
    throw new FedtlError('BAD_MODEL', `model in ${dir} has ${model.inputs.length} inputs and ${String(outputs)} outputs; fedtl-model.json lists ${sidecar.classNames.length} classes`);
  }
  let disposed = false;
  return {
    dir: path.resolve(dir),
    sidecar,
    model,
    classNames: sidecar.classNames,
    input,
    base,
    dispose(): void {
      if (disposed) return;
      disposed = true;
      model.dispose();
    },
  };
}

function describeInputs(inputs: readonly unknown[]): string {
  const first = inputs[0];
  if (typeof first === 'string') return 'strings';
  if (first !== null && typeof first === 'object' && 'length' in first) return 'numeric rows';
  return `${typeof first} values`;
}

function expectedInputs(input: BaseInputSpec): string {
  switch (input.kind) {
    case 'text':
      return 'texts (strings)';
    case 'image':
      return 'image file paths (strings)';
    case 'tensor':
      return `numeric rows of ${input.size} values (e.g. CSV rows without the label column)`;
  }
}

/** Raw inputs after {@link checkInputs}: strings (texts or image paths) or numeric rows. */
type CheckedInputs = { kind: 'strings'; values: readonly string[] } | { kind: 'rows'; values: readonly ArrayLike<number>[] };

/** Checks the inputs fit the model's kind and narrows them. */
function checkInputs(model: ExportedModel, inputs: RawInputs): CheckedInputs {
  const wrong = (why: string): never => {
    throw new FedtlError('BAD_DATA', `model in ${model.dir} (base "${model.sidecar.base.name}") predicts on ${expectedInputs(model.input)}, but ${why}`);
  };
  if (!Array.isArray(inputs)) return wrong(`got ${typeof inputs}; pass an array`);
  const values = inputs as readonly unknown[];
  if (model.input.kind === 'tensor') {
    const size = model.input.size;
    values.forEach((row, i) => {
      if (typeof row === 'string') wrong(`input ${i} is a string; give numeric rows (on the command line: --csv <file>)`);
      if (row === null || typeof row !== 'object' || typeof (row as ArrayLike<number>).length !== 'number') wrong(`input ${i} is not an array of numbers`);
      const r = row as ArrayLike<unknown>;
      if (r.length !== size) wrong(`input ${i} has ${r.length} values`);
      for (let k = 0; k < r.length; k++) {
        if (typeof r[k] !== 'number' || !Number.isFinite(r[k])) wrong(`value ${k} of input ${i} is ${String(r[k])}, not a finite number`);
      }
    });
    return { kind: 'rows', values: values as readonly ArrayLike<number>[] };
  }
  values.forEach((item, i) => {
    if (typeof item !== 'string') wrong(`input ${i} is ${describeInputs([item])}`);
  });
  return { kind: 'strings', values: values as readonly string[] };
}

async function decodeImages(files: readonly string[], spec: ImageInputSpec, fit: ImageFit): Promise<Float32Array> {
  const { size, channels } = spec;
  if (channels !== 1 && channels !== 3) throw new FedtlError('BAD_MODEL', `image models with ${channels} channels are not supported; images decode to 1 or 3 channels`);
  const step = size * size * channels;
  const pixels = new Uint8Array(files.length * step);
  const decoded = await Promise.all(files.map((file) => decodeImage(file, size, channels, fit)));
  decoded.forEach((data, i) => pixels.set(data, i * step));
  const indices = Array.from({ length: files.length }, (_, i) => i);
  // Same scaling as training batches; the size already matches, so no resampling happens here.
  return prepareImageBatch({ kind: 'image', pixels, width: size, height: size, channels }, spec, indices);
}

/** Builds the input tensor of one batch (the caller disposes it). */
async function prepareBatch(model: ExportedModel, batch: CheckedInputs, tokenizer: Tokenizer | null, fit: ImageFit): Promise<tf.Tensor> {
  const input = model.input;
  const n = batch.values.length;
  if (batch.kind === 'rows') {
    if (input.kind !== 'tensor') throw new FedtlError('INTERNAL', 'rows for a non-tensor model');
    const data = new Float32Array(n * input.size);
    batch.values.forEach((row, i) => data.set(Array.from(row), i * input.size));
    return tf.tensor2d(data, [n, input.size]);
  }
  if (input.kind === 'text') {
    if (!tokenizer) throw new FedtlError('INTERNAL', 'text model without a tokenizer');
    return tokenizer.encodeBatch(batch.values);
  }
  if (input.kind !== 'image') throw new FedtlError('INTERNAL', 'strings for a tensor model');
  const data = await decodeImages(batch.values, input, fit);
  return tf.tensor4d(data, [n, input.size, input.size, input.channels]);
}

function countKnown(ids: Int32Array): number {
  let known = 0;
  for (const id of ids) if (id > OOV_ID) known++;
  return known;
}

/**
 * Predicts classes of new raw inputs: texts for a text model, image file paths for an image
 * model, numeric rows for a tensor (CSV / identity-base) model.
 *
 * @returns one {@link Prediction} per input, in order
 * @throws FedtlError `BAD_DATA` when the inputs are of the wrong kind for the model (naming what it
 *   expects) or an image cannot be decoded
 * @example
 * const rows = await predict(csvModel, [[5.1, 3.5, 1.4, 0.2]]);
 * rows[0].className; // 'setosa'
 */
export async function predict(model: ExportedModel, inputs: RawInputs, options: PredictOptions = {}): Promise<Prediction[]> {
  const batchSize = options.batchSize ?? 64;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new FedtlError('BAD_CONFIG', `batchSize must be a positive integer, got ${batchSize}`);
  const checked = checkInputs(model, inputs);
  const tokenizer = model.input.kind === 'text' ? new Tokenizer(model.input.vocabulary, { sequenceLength: model.input.sequenceLength }) : null;
  const classes = model.classNames.length;
  const results: Prediction[] = [];
  for (let start = 0; start < checked.values.length; start += batchSize) {
    const end = start + batchSize;
    const batch: CheckedInputs = checked.kind === 'rows' ? { kind: 'rows', values: checked.values.slice(start, end) } : { kind: 'strings', values: checked.values.slice(start, end) };
    const x = await prepareBatch(model, batch, tokenizer, options.fit ?? 'cover');
    let probabilities: tf.Tensor;
    try {
      probabilities = tf.tidy(() => {
        const features = model.base ? model.base.embed(x) : x;
        return model.model.predict(features) as tf.Tensor;
      });
    } finally {
      x.dispose();
    }
    let values: Float32Array;
    try {
      values = (await probabilities.data()) as Float32Array;
    } finally {
      probabilities.dispose();
    }
    for (let i = 0; i < batch.values.length; i++) {
      const row = Array.from(values.subarray(i * classes, (i + 1) * classes));
      let label = 0;
      for (let c = 1; c < classes; c++) if (row[c]! > row[label]!) label = c;
      const text = batch.kind === 'strings' && tokenizer ? batch.values[i]! : null;
      results.push({ label, className: model.classNames[label]!, probabilities: row, ...(text !== null && tokenizer ? { knownWords: countKnown(tokenizer.encode(text)) } : {}) });
    }
  }
  return results;
}
