/**
 * Exports a trained transfer model (frozen base + head) as ONE standard TF.js LayersModel
 * directory that stock `tf.loadLayersModel` loads, plus a `fedtl-model.json` sidecar saying what
 * the model is and how to feed it.
 *
 * What `model.json` holds depends on the base:
 *
 * | base | `contents` | model input | model output |
 * |------|-----------|-------------|--------------|
 * | LayersModel (`glove-100d`, `mobilenet-v2-*`, a user's LayersModel) | `base+head` | the base's prepared input (token ids, scaled pixels) | class probabilities |
 * | identity (`identity-<n>`) | `base+head` (the base is the identity) | the raw numeric rows | class probabilities |
 * | GraphModel, or any other base without a LayersModel | `head` | the base's embedding | class probabilities |
 *
 * A GraphModel cannot be layers of a LayersModel, so for such a base only the head is exported;
 * the sidecar names the base (name + hash) and `loadExportedModel` in `client/predict.ts` then
 * needs that base passed in to predict on raw inputs.
 *
 * The base and head are composed with the functional API on the *same* layer objects (no weight
 * copies): base input → base layers → head layers. The frozen base keeps `trainable: false` in
 * the saved config, so a user who fine-tunes the export in Python/Keras or TF.js starts from the
 * same frozen/trainable split.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';
import { identityBaseHash } from '../bases/identity.ts';
import { fileSaveHandler, MODEL_FILE, type SidecarInputSpec } from './base-loader.ts';
import type { BaseInputSpec, FrozenBase } from './frozen-base.ts';
import { parseHeadSpec, type HeadSpec } from './head.ts';
import { hashFile, hashModelDir } from './model-hash.ts';
import { describePreprocessing, type PreprocessingDescription } from './preprocessing.ts';

/** Sidecar of an exported model directory. */
export const EXPORT_SIDECAR_FILE = 'fedtl-model.json';
/** Vocabulary of a text model, index = token id (same layout as a base's `vocabulary.json`). */
export const EXPORT_VOCABULARY_FILE = 'vocabulary.json';

/** What `model.json` of an export computes. Closed set. */
export type ExportContents = 'base+head' | 'head';
/** What kind of base the model was trained on. `graph`/`external` bases are not inside `model.json`. */
export type ExportBaseKind = 'layers' | 'identity' | 'graph' | 'external';

const BASE_KINDS: readonly ExportBaseKind[] = ['layers', 'identity', 'graph', 'external'];

/** One layer of the head, as recorded for humans and tools. */
export interface HeadLayerDescription {
  name: string;
  /** TF.js class name, e.g. `Dense`, `Dropout`. */
  type: string;
  units?: number;
  activation?: string;
  rate?: number;
}

/** The head as recorded in the sidecar. */
export interface HeadDescription {
  inputSize: number;
  classes: number;
  /** Trainable parameters of the head (the part that was federated). */
  parameterCount: number;
  layers: HeadLayerDescription[];
  /** The {@link HeadSpec} it was built from, when the exporter was given it. */
  spec?: HeadSpec;
}

/** `fedtl-model.json`: what an exported model is, how to feed it, and how it was made. */
export interface ExportSidecar {
  format: 'fedtl-model';
  version: 1;
  /** Class names, index = output unit. */
  classNames: string[];
  contents: ExportContents;
  base: {
    name: string;
    /** The base's content hash (as in feature caches and the protocol). */
    hash: string;
    kind: ExportBaseKind;
    embeddingSize: number;
    /**
     * Where the base's weights come from (its sidecar's `origin`): for a base fedtl pretrained
     * itself, the source data and the recipe. Absent when the base records none.
     */
    origin?: string;
  };
  /** How raw inputs become the base's input; a text model's vocabulary is in a side file. */
  input: SidecarInputSpec;
  /**
   * Every preprocessing step, exactly (tokenizer rules with their version, CSV columns, image
   * decode/resize/normalisation), so the model can be fed without fedtl. Absent in exports made
   * before it was recorded.
   */
  preprocessing?: PreprocessingDescription;
  /** Shape (batch axis `null`) and dtype of `model.json`'s input. */
  modelInput: { shape: (number | null)[]; dtype: 'float32' | 'int32' };
  head: HeadDescription;
  /** Hash of `model.json` + weights ({@link hashModelDir}); checked by `loadExportedModel`. */
  modelHash: string;
  /** SHA-256 of side files (the vocabulary), checked on load. */
  files: Record<string, string>;
  /** How the model was made. */
  provenance: {
    /** ISO-8601 time of the export. */
    createdAt: string;
    tfjsVersion: string;
    backend: string;
    /** Caller-supplied facts: rounds, strategy, clients, data, metrics… (JSON). */
    extra: Record<string, unknown>;
  };
}

/** Options of {@link exportTransferModel}. */
export interface ExportOptions {
  /** Class names, index = head output unit; their count must equal the head's outputs. */
  classNames: readonly string[];
  /**
   * How the model was made, stored under `provenance.extra`: e.g. `{ rounds: 20, strategy:
   * 'fedavg', clients: 5, testAccuracy: 0.75 }`. Must be JSON-serialisable. @default {}
   */
  extra?: Record<string, unknown>;
  /** The spec the head was built from, recorded in the sidecar. @default not recorded */
  headSpec?: HeadSpec;
  /** Feature column names in model order (CSV data), recorded in `preprocessing.columns`. @default not recorded */
  featureColumns?: readonly string[];
  /** How training images were fitted to the square input, recorded in `preprocessing`. @default 'cover' */
  imageFit?: 'cover' | 'fill' | 'contain';
}

/** What {@link exportTransferModel} wrote. */
export interface ExportResult {
  dir: string;
  contents: ExportContents;
  sidecar: ExportSidecar;
}

function isInputLayer(layer: tf.layers.Layer): boolean {
  return layer.getClassName() === 'InputLayer';
}

function describeLayer(layer: tf.layers.Layer): HeadLayerDescription {
  const config = layer.getConfig();
  const units = config['units'];
  const activation = config['activation'];
  const rate = config['rate'];
  return {
    name: layer.name,
    type: layer.getClassName(),
    ...(typeof units === 'number' && { units }),
    ...(typeof activation === 'string' && { activation }),
    ...(typeof rate === 'number' && { rate }),
  };
}

function describeHead(head: tf.LayersModel, inputSize: number, classes: number, spec: HeadSpec | undefined): HeadDescription {
  const parameterCount = head.trainableWeights.reduce((sum, w) => sum + w.shape.reduce<number>((p, d) => p * (d ?? 0), 1), 0);
  return {
    inputSize,
    classes,
    parameterCount,
    layers: head.layers.filter((l) => !isInputLayer(l)).map(describeLayer),
    ...(spec && { spec: parseHeadSpec(spec, 'exportTransferModel headSpec') }),
  };
}

/** The provenance a loaded base carries in its sidecar, if any. */
function baseOrigin(base: FrozenBase): { origin?: string } {
  const origin = 'sidecar' in base ? (base as { sidecar?: { origin?: unknown } }).sidecar?.origin : undefined;
  return typeof origin === 'string' ? { origin } : {};
}

function baseKind(base: FrozenBase): ExportBaseKind {
  if (base.model) return 'layers';
  if (base.input.kind === 'tensor' && base.input.size === base.embeddingSize && base.hash === identityBaseHash(base.name, base.embeddingSize)) return 'identity';
  return 'graphModel' in base && base.graphModel ? 'graph' : 'external';
}

/**
 * Base layers then head layers, as one functional model sharing the layer objects (so the
 * weights are the very same variables). The head must be a linear stack of single-input layers,
 * which is what `buildHead` makes.
 *
 * The returned model must NOT be disposed: it owns no layers of its own, and disposing it would
 * free the base's and the head's weights. Each call adds a (tensor-free) graph node to every layer
 * it applies: a few objects per export, not memory worth managing.
 */
export function composeTransferModel(baseModel: tf.LayersModel, head: tf.LayersModel, name = 'fedtl_transfer'): tf.LayersModel {
  if (baseModel.inputs.length !== 1 || baseModel.outputs.length !== 1) {
    throw new FedtlError('BAD_MODEL', `the base model has ${baseModel.inputs.length} inputs and ${baseModel.outputs.length} outputs; export needs one of each`);
  }
  if (head.inputs.length !== 1 || head.outputs.length !== 1) {
    throw new FedtlError('BAD_MODEL', `the head has ${head.inputs.length} inputs and ${head.outputs.length} outputs; export needs one of each`);
  }
  const baseNames = new Set(baseModel.layers.map((l) => l.name));
  const headLayers = head.layers.filter((l) => !isInputLayer(l));
  const clash = headLayers.find((l) => baseNames.has(l.name));
  if (clash) {
    throw new FedtlError('BAD_MODEL', `head layer "${clash.name}" has the same name as a base layer; rebuild the head with buildHead(…, { namePrefix }) so the exported model's layer names are unique`);
  }
  let x = baseModel.outputs[0]!;
  for (const layer of headLayers) {
    const out = layer.apply(x);
    if (Array.isArray(out) || !(out instanceof tf.SymbolicTensor)) {
      throw new FedtlError('BAD_MODEL', `head layer "${layer.name}" does not map one tensor to one tensor; export supports heads that are a linear stack of layers (as buildHead makes)`);
    }
    x = out;
  }
  const expected = head.outputs[0]!.shape;
  if (x.shape.length !== expected.length || x.shape.some((d, i) => d !== expected[i])) {
    throw new FedtlError('BAD_MODEL', `composing the base with the head gave output [${x.shape.join(',')}] instead of the head's [${expected.join(',')}]; is the head a linear stack?`);
  }
  return tf.model({ inputs: baseModel.inputs, outputs: x, name });
}

function sidecarInput(input: BaseInputSpec): SidecarInputSpec {
  if (input.kind === 'text') return { kind: 'text', sequenceLength: input.sequenceLength, vocabularyFile: EXPORT_VOCABULARY_FILE };
  return input.kind === 'image' ? { kind: 'image', size: input.size, channels: input.channels, range: [input.range[0], input.range[1]] } : { kind: 'tensor', size: input.size };
}

function modelInputOf(model: tf.LayersModel): ExportSidecar['modelInput'] {
  const input = model.inputs[0]!;
  return { shape: input.shape.map((d) => (d === null || d < 0 ? null : d)), dtype: input.dtype === 'int32' ? 'int32' : 'float32' };
}

/**
 * Saves base + head as one TF.js LayersModel directory (`model.json`, `weights.bin`) plus
 * `fedtl-model.json` (and `vocabulary.json` for text). See the module doc for what `model.json`
 * holds per base kind: for a GraphModel base only the head is saved (`contents: 'head'`).
 *
 * The base and head are not changed and stay owned by the caller.
 *
 * @throws FedtlError `BAD_SHAPE` when the head does not fit the base or the class names;
 *   `BAD_MODEL` for heads that are not a linear stack or whose layer names clash with the base;
 *   `BAD_CONFIG` for an `extra` that is not JSON.
 * @example
 * await exportTransferModel(base, head, 'runs/imdb/model', { classNames: ['negative', 'positive'], extra: { rounds: 20 } });
 * const model = await tf.loadLayersModel(fileLoadHandler('runs/imdb/model')); // stock TF.js
 */
export async function exportTransferModel(base: FrozenBase, head: tf.LayersModel, dir: string, options: ExportOptions): Promise<ExportResult> {
  const classNames = [...options.classNames];
  const headInput = head.inputs[0]?.shape;
  const classes = head.outputs[0]?.shape[1];
  if (headInput?.length !== 2 || headInput[1] !== base.embeddingSize) {
    throw new FedtlError('BAD_SHAPE', `the head takes [${headInput?.join(',') ?? '?'}] but base "${base.name}" embeds to ${base.embeddingSize} values`);
  }
  if (typeof classes !== 'number' || classes !== classNames.length) {
    throw new FedtlError('BAD_SHAPE', `the head has ${String(classes)} outputs but ${classNames.length} class names were given`);
  }
  if (classNames.some((c) => typeof c !== 'string') || new Set(classNames).size !== classNames.length) {
    throw new FedtlError('BAD_CONFIG', `class names must be distinct strings, got [${classNames.join(', ')}]`);
  }
  let extra: Record<string, unknown>;
  try {
    extra = JSON.parse(JSON.stringify(options.extra ?? {})) as Record<string, unknown>;
  } catch (error) {
    throw new FedtlError('BAD_CONFIG', `options.extra must be JSON-serialisable: ${(error as Error).message}`, { cause: error });
  }

  const kind = baseKind(base);
  // Identity and external bases: the head alone. For the identity base that IS the whole model.
  const model = base.model ? composeTransferModel(base.model, head) : head;
  const contents: ExportContents = kind === 'layers' || kind === 'identity' ? 'base+head' : 'head';
  await mkdir(dir, { recursive: true });
  await model.save(fileSaveHandler(dir));

  const files: Record<string, string> = {};
  if (base.input.kind === 'text') {
    const vocabularyFile = path.join(dir, EXPORT_VOCABULARY_FILE);
    await writeFile(vocabularyFile, JSON.stringify(base.input.vocabulary));
    files[EXPORT_VOCABULARY_FILE] = await hashFile(vocabularyFile);
  }
  const sidecar: ExportSidecar = {
    format: 'fedtl-model',
    version: 1,
    classNames,
    contents,
    base: { name: base.name, hash: base.hash, kind, embeddingSize: base.embeddingSize, ...baseOrigin(base) },
    input: sidecarInput(base.input),
    preprocessing: describePreprocessing(base.input, {
      vocabularyFile: EXPORT_VOCABULARY_FILE,
      ...(options.featureColumns ? { columns: options.featureColumns } : {}),
      ...(options.imageFit ? { fit: options.imageFit } : {}),
    }),
    modelInput: modelInputOf(model),
    head: describeHead(head, base.embeddingSize, classes, options.headSpec),
    modelHash: await hashModelDir(dir),
    files,
    provenance: { createdAt: new Date().toISOString(), tfjsVersion: tf.version.tfjs, backend: tf.getBackend(), extra },
  };
  // Written last: a directory with a sidecar is a complete export.
  await writeFile(path.join(dir, EXPORT_SIDECAR_FILE), JSON.stringify(sidecar, null, 2) + '\n');
  return { dir, contents, sidecar };
}

// ---------------------------------------------------------------------------------------------
// Reading the sidecar (untrusted: it comes from disk)

function isPositiveInt(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseInputSpec(value: unknown, fail: (why: string) => never): SidecarInputSpec {
  if (!isRecord(value)) return fail('input must be an object');
  switch (value['kind']) {
    case 'text': {
      const sequenceLength = value['sequenceLength'];
      const vocabularyFile = value['vocabularyFile'];
      if (!isPositiveInt(sequenceLength)) return fail('input.sequenceLength must be a positive integer');
      if (typeof vocabularyFile !== 'string' || vocabularyFile === '') return fail('input.vocabularyFile must name a file');
      return { kind: 'text', sequenceLength, vocabularyFile };
    }
    case 'image': {
      const size = value['size'];
      const channels = value['channels'];
      const range = value['range'];
      if (!isPositiveInt(size) || !isPositiveInt(channels)) return fail('input.size and input.channels must be positive integers');
      if (!Array.isArray(range) || range.length !== 2 || !range.every((v) => typeof v === 'number' && Number.isFinite(v))) return fail('input.range must be [low, high]');
      return { kind: 'image', size, channels, range: [range[0] as number, range[1] as number] };
    }
    case 'tensor': {
      const size = value['size'];
      if (!isPositiveInt(size)) return fail('input.size must be a positive integer');
      return { kind: 'tensor', size };
    }
    default:
      return fail(`input.kind must be "text", "image" or "tensor", got ${JSON.stringify(value['kind'])}`);
  }
}

/**
 * Parses an untrusted `fedtl-model.json` value. Checks every field code relies on (class names,
 * contents, base, input, model input, hashes); `head` and `provenance` are descriptive and only
 * checked for shape.
 *
 * @throws FedtlError `BAD_MODEL` naming the source and the field
 */
export function parseExportSidecar(value: unknown, source = EXPORT_SIDECAR_FILE): ExportSidecar {
  const fail = (why: string): never => {
    throw new FedtlError('BAD_MODEL', `${source}: ${why}`);
  };
  if (!isRecord(value)) return fail('expected a JSON object');
  if (value['format'] !== 'fedtl-model') return fail(`format must be "fedtl-model", got ${JSON.stringify(value['format'])}; is this an exported fedtl model?`);
  if (value['version'] !== 1) return fail(`unsupported version ${JSON.stringify(value['version'])}; this fedtl reads version 1`);
  const classNames = value['classNames'];
  if (!Array.isArray(classNames) || classNames.length < 2 || !classNames.every((c) => typeof c === 'string') || new Set(classNames).size !== classNames.length) {
    return fail('classNames must be at least two distinct strings');
  }
  const contents = value['contents'];
  if (contents !== 'base+head' && contents !== 'head') return fail('contents must be "base+head" or "head"');
  const base = value['base'];
  if (!isRecord(base) || typeof base['name'] !== 'string' || typeof base['hash'] !== 'string' || !isPositiveInt(base['embeddingSize']) || !(BASE_KINDS as readonly unknown[]).includes(base['kind'])) {
    return fail(`base must be { name, hash, kind (${BASE_KINDS.join('|')}), embeddingSize }`);
  }
  if (base['origin'] !== undefined && typeof base['origin'] !== 'string') return fail('base.origin must be a string');
  const input = parseInputSpec(value['input'], fail);
  const modelInput = value['modelInput'];
  if (
    !isRecord(modelInput) ||
    !Array.isArray(modelInput['shape']) ||
    !modelInput['shape'].every((d) => d === null || isPositiveInt(d)) ||
    (modelInput['dtype'] !== 'float32' && modelInput['dtype'] !== 'int32')
  ) {
    return fail('modelInput must be { shape: (number|null)[], dtype: "float32"|"int32" }');
  }
  const head = value['head'];
  if (!isRecord(head) || !isPositiveInt(head['inputSize']) || head['classes'] !== classNames.length || !Array.isArray(head['layers'])) {
    return fail(`head must describe a head with inputSize and ${classNames.length} classes`);
  }
  const modelHash = value['modelHash'];
  if (typeof modelHash !== 'string' || !/^[0-9a-f]{64}$/.test(modelHash)) return fail('modelHash must be a SHA-256 hex string');
  const files = value['files'];
  if (!isRecord(files) || !Object.values(files).every((h) => typeof h === 'string')) return fail('files must map file names to SHA-256 hex strings');
  if (input.kind === 'text' && files[input.vocabularyFile] === undefined) return fail(`files must record the hash of ${input.vocabularyFile}`);
  const preprocessing = value['preprocessing'];
  if (preprocessing !== undefined) {
    if (!isRecord(preprocessing) || preprocessing['kind'] !== input.kind) return fail(`preprocessing must describe a ${input.kind} input`);
    const columns = preprocessing['columns'];
    if (columns !== undefined && (!Array.isArray(columns) || columns.length !== (input.kind === 'tensor' ? input.size : -1) || !columns.every((c) => typeof c === 'string'))) {
      return fail('preprocessing.columns must name every input value');
    }
  }
  const provenance = value['provenance'];
  if (!isRecord(provenance) || !isRecord(provenance['extra'])) return fail('provenance must be an object with "extra"');
  return value as unknown as ExportSidecar; // every field read by code was checked above
}

/**
 * Reads and parses `<dir>/fedtl-model.json`.
 *
 * @throws FedtlError `CORRUPT_FILE` when missing or not JSON, `BAD_MODEL` when invalid
 */
export async function readExportSidecar(dir: string): Promise<ExportSidecar> {
  const file = path.join(dir, EXPORT_SIDECAR_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new FedtlError('CORRUPT_FILE', `cannot read ${file}: ${(error as Error).message}; is ${dir} an exported fedtl model (a coordinator writes <out>/model; it needs ${MODEL_FILE} and ${EXPORT_SIDECAR_FILE})?`, { cause: error });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new FedtlError('CORRUPT_FILE', `${file} is not valid JSON (truncated?): ${(error as Error).message}`, { cause: error });
  }
  return parseExportSidecar(json, file);
}
