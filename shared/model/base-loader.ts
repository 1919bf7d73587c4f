/**
 * Loads a frozen base from a standard TF.js model directory on disk.
 *
 * `@tensorflow/tfjs` has no `file://` handler in Node (that lives in tfjs-node, which most machines
 * here cannot install), so this file carries a small fs-based load and save handler. The save
 * handler is also what model export uses.
 *
 * A base directory holds `model.json` + weight shards and a `fedtl-base.json` sidecar that says
 * what the base expects as input, where it is cut, its embedding size and its content hash. The
 * hash is checked on every load: a base that silently changed would poison feature caches and
 * make clients disagree with the coordinator.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';
import { canonicalJson, hashFile, hashModelArtifacts, resolveShardPath } from './model-hash.ts';
import type { BaseInputSpec, FrozenBase } from './frozen-base.ts';
import { createIdentityBase, identityBaseHash } from '../bases/identity.ts';

/** File names inside a base directory. */
export const MODEL_FILE = 'model.json';
export const WEIGHTS_FILE = 'weights.bin';
export const SIDECAR_FILE = 'fedtl-base.json';

// ---------------------------------------------------------------------------------------------
// File IO handlers

const BYTES_PER_ELEMENT: Record<string, number> = {
  float32: 4,
  int32: 4,
  bool: 1,
  complex64: 8,
  uint8: 1,
  uint16: 2,
  float16: 2,
};

/**
 * Bytes one weight occupies in a shard (quantized weights are stored at their quantized width).
 * `undefined` for string weights, whose size is only known by decoding them.
 */
export function weightSpecByteLength(spec: tf.io.WeightsManifestEntry): number | undefined {
  const stored = spec.quantization?.dtype ?? spec.dtype;
  const width = BYTES_PER_ELEMENT[stored];
  if (width === undefined) return undefined;
  return spec.shape.reduce((product, dim) => product * dim, 1) * width;
}

async function readJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new FedtlError('CORRUPT_FILE', `cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new FedtlError('CORRUPT_FILE', `${file} is not valid JSON (truncated?): ${(error as Error).message}`, { cause: error });
  }
}

/**
 * A TF.js load handler reading `model.json` and its shards from `dir`.
 *
 * Shard sizes are checked against the weight specs before TF.js decodes them, so a truncated file
 * fails as `CORRUPT_FILE` naming the directory instead of as an obscure decode error.
 *
 * @example const model = await tf.loadLayersModel(fileLoadHandler('/path/to/model-dir'));
 */
export function fileLoadHandler(dir: string): tf.io.IOHandler {
  return {
    load: async (): Promise<tf.io.ModelArtifacts> => {
      const json = await readJson(path.join(dir, MODEL_FILE));
      if (json === null || typeof json !== 'object' || !('modelTopology' in json)) {
        throw new FedtlError('BAD_MODEL', `${path.join(dir, MODEL_FILE)} has no "modelTopology"; is this a TF.js model directory?`);
      }
      return tf.io.getModelArtifactsForJSON(json as tf.io.ModelJSON, async (manifest) => {
        const specs: tf.io.WeightsManifestEntry[] = [];
        const buffers: Buffer[] = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const shard of group.paths) {
            const file = resolveShardPath(dir, shard);
            try {
              buffers.push(await readFile(file));
            } catch (error) {
              throw new FedtlError('CORRUPT_FILE', `cannot read weight shard ${file}: ${(error as Error).message}`, { cause: error });
            }
          }
        }
        const actual = buffers.reduce((sum, b) => sum + b.byteLength, 0);
        const sizes = specs.map(weightSpecByteLength);
        if (sizes.every((s) => s !== undefined)) {
          const expected = sizes.reduce<number>((sum, s) => sum + (s ?? 0), 0);
          if (expected !== actual) {
            throw new FedtlError('CORRUPT_FILE', `weights of ${dir} are ${actual} bytes but model.json describes ${expected}; the directory is truncated or corrupt`);
          }
        }
        const joined = Buffer.concat(buffers);
        // Copy out of Node's pooled buffer: TF.js expects an ArrayBuffer that is exactly the data.
        const data = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength);
        return [specs, data as ArrayBuffer];
      });
    },
  };
}

/** Options of {@link fileSaveHandler}. */
export interface FileSaveOptions {
  /** Name of the single weight shard written next to `model.json`. @default 'weights.bin' */
  weightsFileName?: string;
}

/**
 * A TF.js save handler writing `model.json` + one weight shard into `dir` (created if missing).
 * Each file is written to a temporary name and renamed, and the weights land before `model.json`,
 * so a crash never leaves a `model.json` pointing at missing or half-written weights.
 *
 * @example await model.save(fileSaveHandler('/tmp/my-model'));
 */
export function fileSaveHandler(dir: string, options: FileSaveOptions = {}): tf.io.IOHandler {
  const weightsFileName = options.weightsFileName ?? WEIGHTS_FILE;
  return {
    save: async (artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> => {
      if (artifacts.modelTopology instanceof ArrayBuffer) {
        throw new FedtlError('BAD_MODEL', `cannot save a binary (protobuf) topology to ${dir}; only JSON topologies are supported`);
      }
      await mkdir(dir, { recursive: true });
      const weightData = artifacts.weightData === undefined ? new ArrayBuffer(0) : tf.io.CompositeArrayBuffer.join(artifacts.weightData);
      const modelJson: Record<string, unknown> = {
        modelTopology: artifacts.modelTopology,
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        trainingConfig: artifacts.trainingConfig,
        signature: artifacts.signature,
        userDefinedMetadata: artifacts.userDefinedMetadata,
        modelInitializer: artifacts.modelInitializer,
        initializerSignature: artifacts.initializerSignature,
        weightsManifest: [{ paths: [weightsFileName], weights: artifacts.weightSpecs ?? [] }],
      };
      const suffix = `.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
      const weightsFile = path.join(dir, weightsFileName);
      const modelFile = path.join(dir, MODEL_FILE);
      await writeFile(weightsFile + suffix, new Uint8Array(weightData));
      await rename(weightsFile + suffix, weightsFile);
      await writeFile(modelFile + suffix, JSON.stringify(modelJson));
      await rename(modelFile + suffix, modelFile);
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON({ ...artifacts, weightData }) };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Sidecar

/** Input spec as stored on disk: a text base keeps its vocabulary in a side file. */
export type SidecarInputSpec =
  | { kind: 'text'; sequenceLength: number; vocabularyFile: string }
  | Exclude<BaseInputSpec, { kind: 'text' }>;

/** Where a LayersModel is cut and how its output is reduced to a vector. */
export interface LayersCut {
  kind: 'layers';
  /** Layer whose output is the embedding. @default the model's own output */
  cutLayer?: string;
  /**
   * How an output of rank > 2 becomes a vector: `avg` = global average pooling over the spatial
   * (or time) axes, `none` = flatten. Ignored for rank-2 outputs. @default 'avg'
   */
  pooling?: 'avg' | 'none';
}

/** Where a GraphModel is evaluated. */
export interface GraphCut {
  kind: 'graph';
  /** Node evaluated with `execute`, e.g. `.../Logits/AvgPool`. */
  node: string;
  /** As in {@link LayersCut.pooling}. @default 'avg' */
  pooling?: 'avg' | 'none';
}

/**
 * `fedtl-base.json`: what a base directory is. Written by `prepareBase`; may be hand-written for a
 * user's own model (only `format`, `version`, `name`, `kind`, `input` are required).
 */
export interface BaseSidecar {
  format: 'fedtl-base';
  version: 1;
  /** e.g. `glove-100d`, `mobilenet-v2-96`. */
  name: string;
  kind: 'layers' | 'graph' | 'identity';
  input: SidecarInputSpec;
  /** Length of the embedding; checked against the model when present. */
  embeddingSize?: number;
  /** Default cut, used when `loadBase` is given none. */
  cut?: LayersCut | GraphCut;
  /** Model hash ({@link hashModelDir}); verified on load when present. */
  hash?: string;
  /** SHA-256 of side files (e.g. the vocabulary), verified on load. */
  files?: Record<string, string>;
  /** Where the weights come from, licence, and what was changed. Free text for humans. */
  origin?: string;
}

function fail(dir: string, message: string): never {
  throw new FedtlError('BAD_MODEL', `${path.join(dir, SIDECAR_FILE)}: ${message}`);
}

function isPositiveInt(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}

function parseCut(dir: string, value: unknown): LayersCut | GraphCut | undefined {
  if (value === undefined) return undefined;
  const cut = value as Record<string, unknown> | null;
  const pooling = cut?.['pooling'];
  if (pooling !== undefined && pooling !== 'avg' && pooling !== 'none') fail(dir, `cut.pooling must be "avg" or "none", got ${JSON.stringify(pooling)}`);
  if (cut?.['kind'] === 'layers') {
    const cutLayer = cut['cutLayer'];
    if (cutLayer !== undefined && typeof cutLayer !== 'string') fail(dir, 'cut.cutLayer must be a string');
    return { kind: 'layers', ...(cutLayer !== undefined && { cutLayer }), ...(pooling !== undefined && { pooling }) };
  }
  if (cut?.['kind'] === 'graph') {
    const node = cut['node'];
    if (typeof node !== 'string' || node === '') fail(dir, 'cut.node must be a non-empty string');
    return { kind: 'graph', node, ...(pooling !== undefined && { pooling }) };
  }
  return fail(dir, `cut.kind must be "layers" or "graph", got ${JSON.stringify(cut?.['kind'])}`);
}

function parseInput(dir: string, value: unknown): SidecarInputSpec {
  const input = value as Record<string, unknown> | null;
  switch (input?.['kind']) {
    case 'text': {
      const { sequenceLength, vocabularyFile } = { sequenceLength: input['sequenceLength'], vocabularyFile: input['vocabularyFile'] };
      if (!isPositiveInt(sequenceLength)) fail(dir, 'input.sequenceLength must be a positive integer');
      if (typeof vocabularyFile !== 'string' || vocabularyFile === '') fail(dir, 'input.vocabularyFile must name a file');
      return { kind: 'text', sequenceLength, vocabularyFile };
    }
    case 'image': {
      const { size, channels, range } = { size: input['size'], channels: input['channels'], range: input['range'] };
      if (!isPositiveInt(size) || !isPositiveInt(channels)) fail(dir, 'input.size and input.channels must be positive integers');
      if (!Array.isArray(range) || range.length !== 2 || !range.every((v) => typeof v === 'number' && Number.isFinite(v))) {
        fail(dir, 'input.range must be [low, high]');
      }
      return { kind: 'image', size, channels, range: [range[0] as number, range[1] as number] };
    }
    case 'tensor': {
      const size = input['size'];
      if (!isPositiveInt(size)) fail(dir, 'input.size must be a positive integer');
      return { kind: 'tensor', size };
    }
    default:
      return fail(dir, `input.kind must be "text", "image" or "tensor", got ${JSON.stringify(input?.['kind'])}`);
  }
}

/** Parses an untrusted sidecar value; throws `BAD_MODEL` naming the file and the bad field. */
export function parseSidecar(dir: string, json: unknown): BaseSidecar {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail(dir, 'not a JSON object');
  const record = json as Record<string, unknown>;
  if (record['format'] !== 'fedtl-base') fail(dir, `format must be "fedtl-base"`);
  if (record['version'] !== 1) fail(dir, `version ${JSON.stringify(record['version'])} is not supported (expected 1)`);
  const name = record['name'];
  if (typeof name !== 'string' || name === '') fail(dir, 'name must be a non-empty string');
  const kind = record['kind'];
  if (kind !== 'layers' && kind !== 'graph' && kind !== 'identity') fail(dir, `kind must be "layers", "graph" or "identity"`);
  const embeddingSize = record['embeddingSize'];
  if (embeddingSize !== undefined && !isPositiveInt(embeddingSize)) fail(dir, 'embeddingSize must be a positive integer');
  const hash = record['hash'];
  if (hash !== undefined && (typeof hash !== 'string' || !/^[0-9a-f]{64}$/.test(hash))) fail(dir, 'hash must be 64 lowercase hex digits');
  const files = record['files'];
  if (files !== undefined) {
    if (files === null || typeof files !== 'object' || Array.isArray(files)) fail(dir, 'files must map file names to SHA-256 hex');
    for (const [file, digest] of Object.entries(files)) {
      if (typeof digest !== 'string' || !/^[0-9a-f]{64}$/.test(digest)) fail(dir, `files["${file}"] must be 64 lowercase hex digits`);
    }
  }
  const origin = record['origin'];
  if (origin !== undefined && typeof origin !== 'string') fail(dir, 'origin must be a string');
  const cut = parseCut(dir, record['cut']);
  return {
    format: 'fedtl-base',
    version: 1,
    name,
    kind,
    input: parseInput(dir, record['input']),
    ...(embeddingSize !== undefined && { embeddingSize }),
    ...(cut !== undefined && { cut }),
    ...(hash !== undefined && { hash }),
    ...(files !== undefined && { files: files as Record<string, string> }),
    ...(origin !== undefined && { origin }),
  };
}

/** Reads `fedtl-base.json` from `dir`, or `undefined` when the directory has none. */
export async function readSidecar(dir: string): Promise<BaseSidecar | undefined> {
  const file = path.join(dir, SIDECAR_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FedtlError('CORRUPT_FILE', `cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new FedtlError('CORRUPT_FILE', `${file} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  return parseSidecar(dir, json);
}

/** Writes `fedtl-base.json` (pretty-printed, it is meant to be read by people too). */
export async function writeSidecar(dir: string, sidecar: BaseSidecar): Promise<void> {
  await writeFile(path.join(dir, SIDECAR_FILE), JSON.stringify(sidecar, null, 2) + '\n');
}

/** Reads a vocabulary file: a JSON array of strings, index = token id. */
export async function readVocabulary(file: string): Promise<string[]> {
  const json = await readJson(file);
  if (!Array.isArray(json) || !json.every((w) => typeof w === 'string')) {
    throw new FedtlError('CORRUPT_FILE', `${file} must be a JSON array of strings (the vocabulary)`);
  }
  return json as string[];
}

// ---------------------------------------------------------------------------------------------
// Loading

/** Options shared by both model kinds. */
export interface CommonLoadOptions {
  /** Overrides the sidecar's input spec (required when the directory has no sidecar and the input is not a flat vector). */
  input?: BaseInputSpec;
  /** Overrides the base's name. @default sidecar name, else the directory's name */
  name?: string;
  /** Check the model hash against the sidecar's. Turning this off is for debugging only. @default true */
  verifyHash?: boolean;
  /**
   * Require every weight the topology needs to be present in the shards, and no others. Off only
   * for models that carry extra weights; a missing weight would otherwise stay at its random
   * initial value, which is never what a frozen base wants. @default true
   */
  strict?: boolean;
}

/**
 * Options of {@link loadBase}: a cut ({@link LayersCut} / {@link GraphCut}; `kind` defaults to the
 * sidecar's, then to the `format` in `model.json`) plus {@link CommonLoadOptions}.
 */
export type LoadBaseOptions = CommonLoadOptions & (Partial<LayersCut> | GraphCut);

/** A base loaded from a directory: the {@link FrozenBase} plus where it came from. */
export interface LoadedBase extends FrozenBase {
  /** The directory it was loaded from. */
  readonly dir: string;
  /** Hash of the model directory (topology + weights) before any cut; equals `hash` when uncut. */
  readonly modelHash: string;
  /** The GraphModel for graph bases (`model` is then `null`). */
  readonly graphModel: tf.GraphModel | null;
  readonly sidecar: BaseSidecar | undefined;
}

/** Hash of a cut model: what it computes depends on the cut, so the cut is part of its name. */
export function cutBaseHash(modelHash: string, cut: LayersCut | GraphCut): string {
  return createHash('sha256').update(`fedtl-cut/v1\n${modelHash}\n${canonicalJson(cut)}`).digest('hex');
}

function shapeText(shape: readonly (number | null)[]): string {
  return `[${shape.map((d) => (d === null || d < 0 ? '?' : String(d))).join(',')}]`;
}

/** Throws `BAD_SHAPE` unless `batch` fits `expected` (batch axis and unknown axes free). */
function checkBatchShape(name: string, batch: tf.Tensor, expected: readonly (number | null)[]): void {
  const ok =
    batch.rank === expected.length &&
    expected.every((dim, axis) => axis === 0 || dim === null || dim < 0 || batch.shape[axis] === dim);
  if (!ok) {
    throw new FedtlError('BAD_SHAPE', `base "${name}" expects a batch of shape ${shapeText(expected)}, got ${shapeText(batch.shape)}`);
  }
}

/** Reduces a rank > 2 output to a vector per example. */
function reduceToVector(output: tf.Tensor, pooling: 'avg' | 'none'): tf.Tensor2D {
  if (output.rank === 2) return output as tf.Tensor2D;
  if (pooling === 'avg') return tf.mean(output, Array.from({ length: output.rank - 2 }, (_, i) => i + 1)) as tf.Tensor2D;
  return tf.reshape(output, [output.shape[0] ?? -1, -1]);
}

function poolingLayer(rank: number, pooling: 'avg' | 'none', name: string): tf.layers.Layer {
  if (pooling === 'none') return tf.layers.flatten({ name: `${name}_flatten` });
  if (rank === 3) return tf.layers.globalAveragePooling1d({ name: `${name}_gap` });
  if (rank === 4) return tf.layers.globalAveragePooling2d({ name: `${name}_gap`, dataFormat: 'channelsLast' });
  throw new FedtlError('BAD_MODEL', `cannot average-pool an output of rank ${rank}; use pooling: 'none' to flatten it`);
}

async function verifySideFiles(dir: string, sidecar: BaseSidecar | undefined, verify: boolean): Promise<void> {
  if (!verify || !sidecar?.files) return;
  for (const [file, expected] of Object.entries(sidecar.files)) {
    const actual = await hashFile(resolveShardPath(dir, file));
    if (actual !== expected) {
      throw new FedtlError('HASH_MISMATCH', `${path.join(dir, file)} has SHA-256 ${actual.slice(0, 12)}… but ${SIDECAR_FILE} records ${expected.slice(0, 12)}…; the base directory ${dir} changed or is corrupt — rebuild it with prepareBase`);
    }
  }
}

async function resolveInput(dir: string, sidecar: BaseSidecar | undefined, options: CommonLoadOptions, modelInputShape: readonly (number | null)[] | undefined): Promise<BaseInputSpec> {
  if (options.input) return options.input;
  const spec = sidecar?.input;
  if (spec?.kind === 'text') {
    return { kind: 'text', sequenceLength: spec.sequenceLength, vocabulary: await readVocabulary(resolveShardPath(dir, spec.vocabularyFile)) };
  }
  if (spec) return spec;
  const size = modelInputShape?.[1];
  if (modelInputShape?.length === 2 && typeof size === 'number' && size > 0) return { kind: 'tensor', size };
  throw new FedtlError('BAD_CONFIG', `${dir} has no ${SIDECAR_FILE} and its input ${modelInputShape ? shapeText(modelInputShape) : '(unknown)'} is not a flat vector; pass options.input`);
}

/**
 * Loads a frozen base from a TF.js model directory.
 *
 * - `kind: 'layers'` (default for `layers-model` directories): a LayersModel, optionally cut at
 *   `cutLayer` (`tf.model({ inputs, outputs: layer.output })`) and pooled to a vector; every layer
 *   is made non-trainable.
 * - `kind: 'graph'`: a GraphModel evaluated at `node` with `execute`.
 * - a sidecar with `kind: 'identity'`: {@link createIdentityBase}.
 *
 * Without a cut in `options`, the sidecar's cut applies. `hash` is the model hash when the base is
 * the whole model, else {@link cutBaseHash} of it and the cut.
 *
 * @throws FedtlError `HASH_MISMATCH` (naming the directory) when the model or a side file does not
 *   match the sidecar's hash; `CORRUPT_FILE` for unreadable or truncated files; `BAD_CONFIG` for
 *   an unknown cut layer; `BAD_MODEL` for an invalid sidecar or model.
 * @example
 * const base = await loadBase('.fedtl-cache/mobilenet-v2-96');
 * const features = base.embed(images); // [n, 1280]
 */
export async function loadBase(dir: string, options: LoadBaseOptions = {}): Promise<LoadedBase> {
  const sidecar = await readSidecar(dir);
  const verify = options.verifyHash !== false;
  const name = options.name ?? sidecar?.name ?? path.basename(path.resolve(dir));

  if (sidecar?.kind === 'identity') {
    if (sidecar.input.kind !== 'tensor') fail(dir, 'an identity base needs a tensor input');
    const base = createIdentityBase(sidecar.input.size, { name });
    if (verify && sidecar.hash !== undefined && sidecar.hash !== identityBaseHash(name, sidecar.input.size)) {
      base.dispose();
      throw new FedtlError('HASH_MISMATCH', `identity base in ${dir}: recorded hash does not match its name and size; rebuild it with prepareBase`);
    }
    // The identity base is a plain object, so spreading keeps its methods.
    return { ...base, dir, modelHash: base.hash, graphModel: null, sidecar };
  }

  const artifacts = await fileLoadHandler(dir).load!();
  const modelHash = hashModelArtifacts(artifacts);
  if (verify && sidecar?.hash !== undefined && sidecar.hash !== modelHash) {
    throw new FedtlError('HASH_MISMATCH', `model in ${dir} has hash ${modelHash.slice(0, 12)}… but ${SIDECAR_FILE} records ${sidecar.hash.slice(0, 12)}…; the directory changed or is corrupt — rebuild it with prepareBase`);
  }
  await verifySideFiles(dir, sidecar, verify);

  const kind = options.kind ?? sidecar?.kind ?? (artifacts.format === 'graph-model' ? 'graph' : 'layers');
  const memoryHandler: tf.io.IOHandler = { load: async () => artifacts };
  if (kind === 'graph') {
    const cut = options.kind === 'graph' ? options : sidecar?.cut?.kind === 'graph' ? sidecar.cut : undefined;
    if (!cut) throw new FedtlError('BAD_CONFIG', `graph base ${dir} needs a node to evaluate: pass { kind: 'graph', node }`);
    return loadGraphBase(dir, name, sidecar, options, memoryHandler, modelHash, cut);
  }
  const layersOptions = options as CommonLoadOptions & Partial<LayersCut>;
  const fromOptions = layersOptions.cutLayer !== undefined || layersOptions.pooling !== undefined;
  const sidecarCut = sidecar?.cut?.kind === 'layers' ? sidecar.cut : undefined;
  const cut: LayersCut = fromOptions
    ? { kind: 'layers', ...(layersOptions.cutLayer !== undefined && { cutLayer: layersOptions.cutLayer }), ...(layersOptions.pooling !== undefined && { pooling: layersOptions.pooling }) }
    : (sidecarCut ?? { kind: 'layers' });
  return loadLayersBase(dir, name, sidecar, options, memoryHandler, modelHash, cut);
}

async function loadLayersBase(
  dir: string,
  name: string,
  sidecar: BaseSidecar | undefined,
  options: CommonLoadOptions,
  handler: tf.io.IOHandler,
  modelHash: string,
  cut: LayersCut,
): Promise<LoadedBase> {
  let full: tf.LayersModel;
  try {
    full = await tf.loadLayersModel(handler, { strict: options.strict ?? true });
  } catch (error) {
    throw new FedtlError('BAD_MODEL', `cannot load the LayersModel in ${dir}: ${(error as Error).message}`, { cause: error });
  }
  let model = full;
  try {
    let output: tf.SymbolicTensor;
    if (cut.cutLayer !== undefined) {
      let layer: tf.layers.Layer;
      try {
        layer = full.getLayer(cut.cutLayer);
      } catch {
        const names = full.layers.map((l) => l.name);
        throw new FedtlError('BAD_CONFIG', `layer "${cut.cutLayer}" is not in ${dir} (${names.length} layers, last: ${names.slice(-5).join(', ')})`);
      }
      if (Array.isArray(layer.output)) throw new FedtlError('BAD_CONFIG', `layer "${cut.cutLayer}" has several outputs; cut at a single-output layer`);
      output = layer.output;
    } else {
      if (full.outputs.length !== 1) throw new FedtlError('BAD_MODEL', `model in ${dir} has ${full.outputs.length} outputs; cut it at one layer with cutLayer`);
      output = full.outputs[0]!;
    }
    const pooling = cut.pooling ?? 'avg';
    if (output.rank > 2) output = poolingLayer(output.rank, pooling, cut.cutLayer ?? 'output').apply(output) as tf.SymbolicTensor;
    if (output !== full.outputs[0]) {
      model = tf.model({ inputs: full.inputs, outputs: output, name: `${name}_cut` });
      // Free the layers the cut leaves out (e.g. a classifier head) now: nothing can reach them.
      // The kept layers belong to the cut model, and disposing `full` would free them too.
      const kept = new Set(model.layers);
      for (const layer of full.layers) if (!kept.has(layer)) layer.dispose();
    }
    // Frozen: a head built on top must never move these weights, even if someone calls fit.
    model.trainable = false;
    for (const layer of model.layers) layer.trainable = false;

    const embeddingSize = output.shape[output.shape.length - 1];
    if (typeof embeddingSize !== 'number' || embeddingSize <= 0) throw new FedtlError('BAD_MODEL', `embedding of ${dir} has unknown size ${shapeText(output.shape)}`);
    if (sidecar?.embeddingSize !== undefined && (cut === sidecar.cut || (cut.cutLayer === undefined && cut.pooling === undefined)) && sidecar.embeddingSize !== embeddingSize) {
      throw new FedtlError('BAD_MODEL', `${dir}: ${SIDECAR_FILE} says embeddingSize ${sidecar.embeddingSize} but the model gives ${embeddingSize}`);
    }
    if (full.inputs.length !== 1) throw new FedtlError('BAD_MODEL', `model in ${dir} has ${full.inputs.length} inputs; a base takes one`);
    const inputShape = full.inputs[0]!.shape;
    const input = await resolveInput(dir, sidecar, options, inputShape);
    const isWhole = model === full;
    const hash = isWhole ? modelHash : cutBaseHash(modelHash, cut);
    const cutModel = model;
    let disposed = false;
    return {
      name,
      hash,
      input,
      embeddingSize,
      model: cutModel,
      dir,
      modelHash,
      graphModel: null,
      sidecar,
      embed(batch: tf.Tensor): tf.Tensor2D {
        if (disposed) throw new FedtlError('BAD_CONFIG', `base "${name}" was disposed`);
        checkBatchShape(name, batch, inputShape);
        return tf.tidy(() => {
          const x = input.kind === 'text' && batch.dtype !== 'int32' ? tf.cast(batch, 'int32') : batch;
          return cutModel.predict(x) as tf.Tensor2D;
        });
      },
      dispose(): void {
        if (disposed) return;
        disposed = true;
        cutModel.dispose();
      },
    };
  } catch (error) {
    // `model` is the cut model once it exists (owning the kept layers), else still `full`.
    model.dispose();
    throw error;
  }
}

async function loadGraphBase(
  dir: string,
  name: string,
  sidecar: BaseSidecar | undefined,
  options: CommonLoadOptions,
  handler: tf.io.IOHandler,
  modelHash: string,
  cut: GraphCut,
): Promise<LoadedBase> {
  let graph: tf.GraphModel;
  try {
    graph = await tf.loadGraphModel(handler);
  } catch (error) {
    throw new FedtlError('BAD_MODEL', `cannot load the GraphModel in ${dir}: ${(error as Error).message}`, { cause: error });
  }
  try {
    const graphInput = graph.inputs[0];
    if (graph.inputs.length !== 1 || !graphInput) throw new FedtlError('BAD_MODEL', `graph model in ${dir} has ${graph.inputs.length} inputs; a base takes one`);
    const inputShape = (graphInput.shape ?? []).map((d) => (d < 0 ? null : d));
    const pooling = cut.pooling ?? 'avg';
    const run = (batch: tf.Tensor): tf.Tensor2D =>
      tf.tidy(() => {
        let out: tf.Tensor;
        try {
          out = graph.execute(batch, cut.node) as tf.Tensor;
        } catch (error) {
          throw new FedtlError('BAD_CONFIG', `cannot evaluate node "${cut.node}" of ${dir}: ${(error as Error).message}`, { cause: error });
        }
        return reduceToVector(out, pooling);
      });
    let embeddingSize = sidecar?.embeddingSize;
    if (embeddingSize === undefined) {
      // Probe once with a zero example: a GraphDef does not carry output shapes reliably.
      if (inputShape.slice(1).some((d) => d === null)) throw new FedtlError('BAD_CONFIG', `${dir}: input ${shapeText(inputShape)} has unknown axes; record embeddingSize in ${SIDECAR_FILE}`);
      const probe = tf.zeros([1, ...(inputShape.slice(1) as number[])], graphInput.dtype);
      const out = run(probe);
      embeddingSize = out.shape[1];
      tf.dispose([probe, out]);
    }
    const input = await resolveInput(dir, sidecar, options, inputShape);
    let disposed = false;
    return {
      name,
      hash: cutBaseHash(modelHash, cut),
      input,
      embeddingSize,
      model: null,
      dir,
      modelHash,
      graphModel: graph,
      sidecar,
      embed(batch: tf.Tensor): tf.Tensor2D {
        if (disposed) throw new FedtlError('BAD_CONFIG', `base "${name}" was disposed`);
        checkBatchShape(name, batch, inputShape);
        return run(batch);
      },
      dispose(): void {
        if (disposed) return;
        disposed = true;
        graph.dispose();
      },
    };
  } catch (error) {
    graph.dispose();
    throw error;
  }
}
