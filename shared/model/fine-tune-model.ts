/**
 * Fine-tuning a transfer model: the whole model as one flat buffer, and for each stage of a
 * trainable schedule a split of the base at its deepest frozen layer.
 *
 *     raw input → [frozen bottom] → cached features → [trainable top: base layers + head] → probabilities
 *
 * - The *whole model* (every base weight, moving statistics included, then the head) is one
 *   {@link FlatWeights} with a full manifest: what a coordinator holds, checkpoints and exports.
 * - A *stage* trains some base layers and the head. Its manifest lists exactly their trainable
 *   weights (base layers in topological order, then the head), and deltas cover exactly it.
 * - The *boundary* is the output of the deepest layer below every trainable one through which the
 *   whole rest of the graph flows (a residual block is never cut in the middle). Features are
 *   cached there; layers between the boundary and the first trainable layer run frozen in the top.
 *   The bottom's weights are never trained (stages only widen), so cached features stay valid
 *   until the boundary itself moves, which changes the cache key ({@link TrainableTop.featureKey}).
 * - The top is built from *copies* of the base's layers (same classes, configs and names), so it
 *   owns its variables and disposing it never touches the base. Pretrained BatchNormalization
 *   layers run in inference mode (their moving statistics are not weights that travel), as the
 *   Keras transfer-learning guide advises. An Embedding followed by mean pooling trains as one
 *   matrix product (see training-layers.ts).
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';
import { flattenTensors, manifestFromShapes, type FlatWeights, type WeightManifest } from '../weights/flat-weights.ts';
import type { JointEmbedder } from './feature-cache.ts';
import type { FeatureMatrix } from './feature-matrix.ts';
import type { FrozenBase } from './frozen-base.ts';
import { buildHead, getHeadWeights, setHeadWeights, type HeadSpec } from './head.ts';
import { MeanEmbeddingBag, ParameterFreeLayerNorm } from './training-layers.ts';
import type { TrainableStage } from './trainable-set.ts';
import { exportTransferModel, type ExportOptions, type ExportResult } from './export.ts';

/** Prefix of the head's layer names (as `buildHead` makes them). */
const HEAD_PREFIX = 'head';

/** `layer/weight`: the stable name of a weight in manifests, checkpoints and deltas. */
export function weightName(layerName: string, variable: tf.LayerVariable): string {
  return `${layerName}/${variable.originalName.split('/').pop() ?? variable.originalName}`;
}

/**
 * Weights of a layer that can train, even when the layer is frozen (a frozen layer reports none).
 * tfjs keeps them in `_trainableWeights`; BatchNormalization's moving statistics are never among them.
 */
function trainableCapable(layer: tf.layers.Layer): tf.LayerVariable[] {
  // Read through a narrow structural type: tfjs exposes no public way to ask a frozen layer this.
  return (layer as unknown as { _trainableWeights: tf.LayerVariable[] })._trainableWeights;
}

/** Every weight of a LayersModel (frozen, non-trainable and trainable), named `layer/weight`. */
export function modelWeights(model: tf.LayersModel): FlatWeights {
  const named: Array<{ name: string; tensor: tf.Tensor }> = [];
  for (const layer of model.layers) for (const variable of layer.weights) named.push({ name: weightName(layer.name, variable), tensor: variable.read() });
  return flattenTensors(named);
}

/** The whole model at the start of a run: the base's pretrained weights, then a seeded new head. */
export function initialModelWeights(base: FrozenBase, headSpec: HeadSpec, seed: number): FlatWeights {
  const head = buildHead(base.embeddingSize, headSpec, { seed, namePrefix: HEAD_PREFIX });
  try {
    const headWeights = getHeadWeights(head);
    if (!base.model) return headWeights;
    const baseWeights = modelWeights(base.model);
    const manifest = manifestFromShapes([...baseWeights.manifest.entries, ...headWeights.manifest.entries]);
    const data = new Float32Array(manifest.parameterCount);
    data.set(baseWeights.data, 0);
    data.set(headWeights.data, baseWeights.data.length);
    return { manifest, data };
  } finally {
    head.dispose();
  }
}

/** Names of the weights a stage trains: its base layers' trainable weights in order, then the head's. */
export function stageWeightNames(base: FrozenBase, headSpec: HeadSpec, stage: TrainableStage): string[] {
  const names: string[] = [];
  if (stage.layers.length > 0) {
    if (!base.model) throw new FedtlError('BAD_CONFIG', `base ${base.name} has no layers that can train`);
    for (const { name } of stage.layers) {
      const layer = base.model.getLayer(name);
      for (const variable of trainableCapable(layer)) names.push(weightName(layer.name, variable));
    }
  }
  const head = buildHead(base.embeddingSize, headSpec, { namePrefix: HEAD_PREFIX });
  try {
    names.push(...getHeadWeights(head).manifest.entries.map((e) => e.name));
  } finally {
    head.dispose();
  }
  return names;
}

/** The part of a full manifest named by `names`, in that order, with its own offsets. */
export function selectManifest(full: WeightManifest, names: readonly string[]): WeightManifest {
  const byName = new Map(full.entries.map((e) => [e.name, e]));
  return manifestFromShapes(
    names.map((name) => {
      const entry = byName.get(name);
      if (!entry) throw new FedtlError('BAD_SHAPE', `weight "${name}" is not in the model (${full.entries.length} weights)`);
      return { name, shape: entry.shape };
    }),
  );
}

/** Copies the entries of `part.manifest` out of `full` into a new buffer. */
export function gatherWeights(full: FlatWeights, part: WeightManifest): Float32Array {
  const byName = new Map(full.manifest.entries.map((e) => [e.name, e]));
  const out = new Float32Array(part.parameterCount);
  for (const entry of part.entries) {
    const source = byName.get(entry.name);
    if (!source || source.length !== entry.length) throw new FedtlError('BAD_SHAPE', `weight "${entry.name}" does not fit the model`);
    out.set(full.data.subarray(source.offset, source.offset + source.length), entry.offset);
  }
  return out;
}

/** Writes `part` into `full` in place, by name. */
export function scatterWeights(full: FlatWeights, part: FlatWeights): void {
  if (part.data.length !== part.manifest.parameterCount) throw new FedtlError('BAD_SHAPE', `part has ${part.data.length} values, its manifest ${part.manifest.parameterCount}`);
  const byName = new Map(full.manifest.entries.map((e) => [e.name, e]));
  for (const entry of part.manifest.entries) {
    const target = byName.get(entry.name);
    if (!target || target.length !== entry.length) throw new FedtlError('BAD_SHAPE', `weight "${entry.name}" does not fit the model`);
    full.data.set(part.data.subarray(entry.offset, entry.offset + entry.length), target.offset);
  }
}

// ---------------------------------------------------------------------------------------------
// The split

/** Where a stage's features are taken. */
export interface Boundary {
  /** Index in `model.layers` of the layer whose output is the boundary (0 = the input layer). */
  layerIndex: number;
  /** That layer's name; the base's input layer for a boundary at the input. */
  layerName: string;
  /** Feature shape without the batch axis. */
  shape: number[];
  tensor: tf.SymbolicTensor;
}

interface GraphNode {
  inputTensors: tf.SymbolicTensor[];
  outputTensors: tf.SymbolicTensor[];
  callArgs?: Record<string, unknown>;
}

/** The node through which a base layer sits in the base's graph (base layers are applied once). */
function nodeOf(layer: tf.layers.Layer): GraphNode {
  // tfjs keeps the graph in `inboundNodes`; the public API has no accessor for a layer's inputs.
  const nodes = (layer as unknown as { inboundNodes: GraphNode[] }).inboundNodes;
  const node = nodes[0];
  if (!node) throw new FedtlError('BAD_MODEL', `layer "${layer.name}" is not connected in the base's graph`);
  return node;
}

function concreteShape(tensor: tf.SymbolicTensor, what: string): number[] {
  const shape = tensor.shape.slice(1);
  if (shape.some((d) => d === null || d < 0)) throw new FedtlError('BAD_MODEL', `${what} has an unknown axis [${tensor.shape.join(',')}]; features need a fixed size`);
  return shape as number[];
}

/** True when every layer after `index` reads only the output of `index` or of layers after it. */
function cutsCleanly(layers: readonly tf.layers.Layer[], index: number): boolean {
  const available = new Set<tf.SymbolicTensor>(nodeOf(layers[index]!).outputTensors);
  if (available.size !== 1) return false;
  for (let i = index + 1; i < layers.length; i++) {
    const node = nodeOf(layers[i]!);
    if (!node.inputTensors.every((t) => available.has(t))) return false;
    for (const t of node.outputTensors) available.add(t);
  }
  return true;
}

/**
 * The boundary of a stage: for a linear probe the base's output; else the deepest layer below the
 * first trainable one that cuts the graph cleanly (the input layer always does).
 */
export function findBoundary(model: tf.LayersModel, stage: TrainableStage): Boundary {
  const layers = model.layers;
  let first = layers.length - 1;
  if (stage.layers.length > 0) {
    const names = new Set(stage.layers.map((l) => l.name));
    first = layers.findIndex((l) => names.has(l.name));
    if (first < 0) throw new FedtlError('BAD_CONFIG', `none of ${[...names].join(', ')} is a layer of the base`);
  } else {
    first = layers.length; // the boundary is the output layer itself
  }
  for (let index = first - 1; index >= 0; index--) {
    if (cutsCleanly(layers, index)) {
      const tensor = nodeOf(layers[index]!).outputTensors[0]!;
      return { layerIndex: index, layerName: layers[index]!.name, shape: concreteShape(tensor, `output of "${layers[index]!.name}"`), tensor };
    }
  }
  throw new FedtlError('BAD_MODEL', 'the base graph has no clean cut below its first trainable layer');
}

/**
 * Whether a stage trains from the base's raw input: its boundary is the input layer, so its
 * features are the input itself (an embedding table that trains, or an image model trained whole).
 * Only such stages can be augmented (augmentation.ts) or send token rows.
 */
export function trainsFromInput(model: tf.LayersModel | null, stage: TrainableStage): boolean {
  return model !== null && stage.layers.length > 0 && findBoundary(model, stage).layerIndex === 0;
}

/** Cache key of features taken at `layerName` of a base (the base's own hash at its output). */
export function boundaryFeatureKey(base: FrozenBase, boundary: Boundary | null): string {
  if (!boundary || !base.model || boundary.layerIndex === base.model.layers.length - 1) return base.hash;
  return createHash('sha256').update(`fedtl-boundary/v1|${base.hash}|${boundary.layerName}`).digest('hex');
}

/** A fresh copy of a layer: same class, config and name; new (unbuilt) variables. */
function cloneLayer(layer: tf.layers.Layer): tf.layers.Layer {
  const cls = layer.constructor as unknown as { fromConfig(cls: unknown, config: tf.serialization.ConfigDict): tf.layers.Layer };
  return cls.fromConfig(layer.constructor, layer.getConfig());
}

/** Makes a BatchNormalization copy always use its moving statistics (see the module doc). */
function inferenceOnly(layer: tf.layers.Layer): void {
  const call = layer.call.bind(layer);
  layer.call = (inputs, kwargs) => call(inputs, { ...kwargs, training: false });
}

/** A trainable-path replacement for a base layer whose tfjs gradient is broken, else null. */
function standIn(layer: tf.layers.Layer, inputRank: number): tf.layers.Layer | null {
  const config = layer.getConfig();
  if (layer.getClassName() === 'LayerNormalization' && config['center'] === false && config['scale'] === false) {
    const axis = config['axis'];
    const lastAxis = axis === -1 || (Array.isArray(axis) && axis.length === 1 && (axis[0] === -1 || axis[0] === inputRank - 1));
    if (lastAxis) return new ParameterFreeLayerNorm({ name: layer.name, epsilon: config['epsilon'] as number });
  }
  return null;
}

function isGap1d(layer: tf.layers.Layer | undefined): boolean {
  return layer?.getClassName() === 'GlobalAveragePooling1D';
}

/** Options of {@link TrainableTop.build}. */
export interface BuildTopOptions {
  /** Seed of layers built before their weights are written (irrelevant to results). @default 0 */
  seed?: number;
  /**
   * Ids of every token the top will see (a client's training and validation data, see
   * {@link tokenIdsOf}): a trained embedding table then holds only those rows, so a training step
   * costs the client's vocabulary rather than the whole table. Other rows read as zero, so never
   * give this to a top that evaluates other data. @default the whole table
   */
  embeddingRows?: Int32Array;
}

/** Sorted distinct token ids (padding excluded) in feature rows of token ids. */
export function tokenIdsOf(features: readonly FeatureMatrix[]): Int32Array {
  const seen = new Set<number>();
  for (const matrix of features) for (const id of matrix.values) if (id !== 0) seen.add(id);
  return Int32Array.from(seen).sort();
}

/**
 * The trainable part of a stage as a LayersModel from flat boundary features to probabilities, with
 * the stage's weight manifest. Feed it what {@link TrainableTop.featureBase} embeds.
 *
 * It plugs into the head's training and evaluation (`trainHead`, `evaluateHead`) as a head does:
 * flat feature rows in, softmax out, `trainableWeights` = the stage's weights.
 */
export class TrainableTop {
  readonly model: tf.LayersModel;
  readonly manifest: WeightManifest;
  readonly stage: TrainableStage;
  readonly boundary: Boundary | null;
  /** Values per feature row. */
  readonly featureSize: number;
  readonly featureKey: string;
  readonly #variables: Map<string, tf.LayerVariable>;
  readonly #multipliers: Map<string, number>;
  /** Embedding tables held as sub-tables: weight name → the rows held. */
  readonly #tables: Map<string, Int32Array>;
  /** The stage's weights as last set: the rows a sub-table does not hold are read from here. */
  #reference: Float32Array;
  #featureBase: FrozenBase | null = null;
  readonly #base: FrozenBase;

  private constructor(
    base: FrozenBase,
    model: tf.LayersModel,
    manifest: WeightManifest,
    stage: TrainableStage,
    boundary: Boundary | null,
    variables: Map<string, tf.LayerVariable>,
    multipliers: Map<string, number>,
    tables: Map<string, Int32Array>,
    reference: Float32Array,
  ) {
    this.#tables = tables;
    this.#reference = reference;
    this.#base = base;
    this.model = model;
    this.manifest = manifest;
    this.stage = stage;
    this.boundary = boundary;
    this.featureSize = boundary ? boundary.shape.reduce((a, b) => a * b, 1) : base.embeddingSize;
    this.featureKey = boundaryFeatureKey(base, boundary);
    this.#variables = variables;
    this.#multipliers = multipliers;
  }

  /**
   * Builds the top of `stage` and loads its weights (trained and frozen alike) from `model`, the
   * whole model's weights.
   */
  static build(base: FrozenBase, headSpec: HeadSpec, stage: TrainableStage, model: FlatWeights, options: BuildTopOptions = {}): TrainableTop {
    const baseModel = base.model;
    if (!baseModel && stage.layers.length > 0) throw new FedtlError('BAD_CONFIG', `base ${base.name} has no layers that can train; only the head trains`);
    const boundary = baseModel ? findBoundary(baseModel, stage) : null;
    const featureShape = boundary ? boundary.shape : [base.embeddingSize];
    const size = featureShape.reduce((a, b) => a * b, 1);
    const trained = new Map(stage.layers.map((l) => [l.name, l.lrMultiplier]));
    const created: tf.layers.Layer[] = [];
    const input = tf.input({ shape: [size], name: 'fedtl_features' });
    let x: tf.SymbolicTensor = input;
    const head = buildHead(base.embeddingSize, headSpec, { seed: options.seed ?? 0, namePrefix: HEAD_PREFIX });
    try {
      if (featureShape.length > 1) x = tf.layers.reshape({ targetShape: featureShape, name: 'fedtl_unflatten' }).apply(x) as tf.SymbolicTensor;
      if (baseModel && boundary) {
        const mapped = new Map<tf.SymbolicTensor, tf.SymbolicTensor>([[boundary.tensor, x]]);
        const layers = baseModel.layers;
        for (let i = boundary.layerIndex + 1; i < layers.length; i++) {
          const layer = layers[i]!;
          const node = nodeOf(layer);
          const inputs = node.inputTensors.map((t) => mapped.get(t));
          if (inputs.some((t) => t === undefined)) throw new FedtlError('INTERNAL', `layer "${layer.name}" reads a tensor from below the boundary "${boundary.layerName}"`);
          const next = layers[i + 1];
          if (layer.getClassName() === 'Embedding' && isGap1d(next) && nodeOf(next!).inputTensors[0] === node.outputTensors[0] && inputs[0] === input) {
            const config = layer.getConfig();
            const bag = new MeanEmbeddingBag({
              name: layer.name,
              inputDim: config['inputDim'] as number,
              outputDim: config['outputDim'] as number,
              trainable: trained.has(layer.name),
              ...(options.embeddingRows ? { rows: options.embeddingRows } : {}),
            });
            created.push(bag);
            mapped.set(nodeOf(next!).outputTensors[0]!, bag.apply(inputs[0]!) as tf.SymbolicTensor);
            i++;
            continue;
          }
          const copy = standIn(layer, node.inputTensors[0]?.rank ?? 0) ?? cloneLayer(layer);
          copy.trainable = trained.has(layer.name);
          if (copy.getClassName() === 'BatchNormalization') inferenceOnly(copy);
          created.push(copy);
          const out = copy.apply(inputs.length === 1 ? inputs[0]! : (inputs as tf.SymbolicTensor[]), node.callArgs ?? {});
          const outs = Array.isArray(out) ? out : [out];
          node.outputTensors.forEach((t, k) => mapped.set(t, outs[k] as tf.SymbolicTensor));
        }
        const output = mapped.get(baseModel.outputs[0]!);
        if (!output) throw new FedtlError('INTERNAL', 'the base output was not reached from the boundary');
        x = output;
      }
      for (const layer of head.layers) {
        if (layer.getClassName() === 'InputLayer') continue;
        const copy = cloneLayer(layer);
        created.push(copy);
        x = copy.apply(x) as tf.SymbolicTensor;
      }
    } finally {
      head.dispose();
    }
    const top = tf.model({ inputs: input, outputs: x, name: `fedtl_top_stage_${stage.index}` });
    try {
      const byName = new Map(model.manifest.entries.map((e) => [e.name, e]));
      const variables = new Map<string, tf.LayerVariable>();
      const multipliers = new Map<string, number>();
      const tables = new Map<string, Int32Array>();
      for (const layer of top.layers) {
        for (const variable of layer.weights) {
          const name = weightName(layer.name, variable);
          const entry = byName.get(name);
          if (!entry) throw new FedtlError('BAD_SHAPE', `the model has no weight "${name}"; was it built for another base or head?`);
          const held = layer instanceof MeanEmbeddingBag ? layer.rows : null;
          if (held) tables.set(name, held);
          else if (entry.shape.join(',') !== variable.shape.join(',')) throw new FedtlError('BAD_SHAPE', `weight "${name}" is [${entry.shape.join(',')}] in the model but [${variable.shape.join(',')}] in the layer`);
          const value = held ? heldRows(model.data, entry, held) : tf.tensor(model.data.subarray(entry.offset, entry.offset + entry.length), entry.shape, 'float32');
          variable.write(value);
          value.dispose();
        }
        for (const variable of layer.trainableWeights) {
          const name = weightName(layer.name, variable);
          variables.set(name, variable);
          multipliers.set(variable.name, layer.name.startsWith(`${HEAD_PREFIX}_`) ? stage.headLrMultiplier : (trained.get(layer.name) ?? 1));
        }
      }
      const manifest = selectManifest(model.manifest, stageWeightNames(base, headSpec, stage));
      if (manifest.entries.length !== variables.size || manifest.entries.some((e) => !variables.has(e.name))) {
        throw new FedtlError('INTERNAL', `the top trains ${[...variables.keys()].join(', ')} but the stage names ${manifest.entries.map((e) => e.name).join(', ')}`);
      }
      return new TrainableTop(base, top, manifest, stage, boundary, variables, multipliers, tables, gatherWeights(model, manifest));
    } catch (error) {
      top.dispose();
      throw error;
    }
  }

  /** Learning-rate multiplier per `tf.Variable` name, for `trainHead`'s `learningRateMultipliers`. */
  get learningRateMultipliers(): ReadonlyMap<string, number> {
    return this.#multipliers;
  }

  /** The stage's trainable weights as one flat buffer. */
  getWeights(): FlatWeights {
    const data = this.#scatter(this.#reference.slice(), (entry) => this.#variables.get(entry.name)!.read().dataSync() as Float32Array);
    return { manifest: this.manifest, data };
  }

  /** `data` with each entry's values written at its place; a sub-table's rows at their rows, the rest of `data` kept. */
  #scatter(data: Float32Array, valuesOf: (entry: WeightManifest['entries'][number]) => Float32Array): Float32Array {
    for (const entry of this.manifest.entries) {
      const values = valuesOf(entry);
      const held = this.#tables.get(entry.name);
      if (!held) {
        data.set(values, entry.offset);
        continue;
      }
      const cols = entry.shape[1]!;
      held.forEach((row, k) => data.set(values.subarray(k * cols, (k + 1) * cols), entry.offset + row * cols));
    }
    return data;
  }

  /** Loads the stage's trainable weights (a buffer on {@link manifest}). */
  setWeights(data: Float32Array): void {
    if (data.length !== this.manifest.parameterCount) {
      throw new FedtlError('BAD_SHAPE', `stage ${this.stage.index} trains ${this.manifest.parameterCount} values, got ${data.length}`);
    }
    this.#reference = data.slice();
    for (const entry of this.manifest.entries) {
      const held = this.#tables.get(entry.name);
      const value = held ? heldRows(data, entry, held) : tf.tensor(data.subarray(entry.offset, entry.offset + entry.length), entry.shape, 'float32');
      this.#variables.get(entry.name)!.write(value);
      value.dispose();
    }
  }

  /**
   * A buffer on {@link manifest} (a drift correction's control vector) as one tensor per trainable
   * weight, keyed by `LayerVariable.name` as `trainHead`'s `gradientCorrection` takes it; a held
   * sub-table gets only its rows. The caller disposes the tensors.
   */
  tensorsOf(data: Float32Array): Map<string, tf.Tensor> {
    if (data.length !== this.manifest.parameterCount) {
      throw new FedtlError('BAD_SHAPE', `stage ${this.stage.index} trains ${this.manifest.parameterCount} values, got ${data.length}`);
    }
    const out = new Map<string, tf.Tensor>();
    for (const entry of this.manifest.entries) {
      const held = this.#tables.get(entry.name);
      out.set(this.#variables.get(entry.name)!.name, held ? heldRows(data, entry, held) : tf.tensor(data.subarray(entry.offset, entry.offset + entry.length), entry.shape, 'float32'));
    }
    return out;
  }

  /**
   * Per-weight values keyed by `LayerVariable.name` (a `meanGradient`) as one buffer on
   * {@link manifest}: the inverse of {@link tensorsOf}, zero in the rows a sub-table does not hold.
   */
  flatten(byName: ReadonlyMap<string, Float32Array>): Float32Array {
    return this.#scatter(new Float32Array(this.manifest.parameterCount), (entry) => {
      const values = byName.get(this.#variables.get(entry.name)!.name);
      if (!values) throw new FedtlError('INTERNAL', `no values for weight ${entry.name}`);
      return values;
    });
  }

  /**
   * A base that embeds raw inputs into this top's features: the base itself for a linear probe,
   * else the base cut at the boundary. Its `hash` is {@link featureKey}, so a `FeatureCache`
   * keeps features per boundary. Disposing it is a no-op: it shares the base's layers.
   */
  get featureBase(): FrozenBase {
    this.#featureBase ??= makeFeatureBase(this.#base, this.boundary, this.featureKey, this.featureSize);
    return this.#featureBase;
  }

  dispose(): void {
    this.model.dispose();
  }
}

/** Rows `held` of a table entry of `data`, as a `held.length × cols` tensor. */
function heldRows(data: Float32Array, entry: { offset: number; shape: number[] }, held: Int32Array): tf.Tensor {
  const cols = entry.shape[1]!;
  const out = new Float32Array(Math.max(1, held.length) * cols);
  held.forEach((row, k) => out.set(data.subarray(entry.offset + row * cols, entry.offset + (row + 1) * cols), k * cols));
  return tf.tensor2d(out, [Math.max(1, held.length), cols]);
}

/** The feature base of a stage without building its top (see {@link TrainableTop.featureBase}). */
export function stageFeatureBase(base: FrozenBase, stage: TrainableStage): FrozenBase {
  const boundary = base.model ? findBoundary(base.model, stage) : null;
  const size = boundary ? boundary.shape.reduce((a, b) => a * b, 1) : base.embeddingSize;
  return makeFeatureBase(base, boundary, boundaryFeatureKey(base, boundary), size);
}

/**
 * The base's own features and those at every boundary of `stages` inside the base, from one pass:
 * a boundary lies on the way to the base's output, so taking its features while the output's are
 * computed costs a copy instead of another run of the frozen bottom (for MobileNetV2's top two
 * blocks, ~95 % of the base's work). Boundaries at the input are left out (their features are the
 * input itself). `null` when no stage cuts inside the base, or the base is not a LayersModel whose
 * output is its embedding.
 */
export function jointFeatureBases(base: FrozenBase, stages: readonly TrainableStage[]): JointEmbedder | null {
  const model = base.model;
  const output = model?.outputs.length === 1 ? model.outputs[0]! : null;
  if (!model || !output || output.shape.length !== 2 || output.shape[1] !== base.embeddingSize) return null;
  const inner = new Map<string, Boundary>();
  for (const stage of stages) {
    if (stage.layers.length === 0) continue;
    const boundary = findBoundary(model, stage);
    if (boundary.layerIndex > 0 && boundary.layerIndex < model.layers.length - 1) inner.set(boundary.layerName, boundary);
  }
  if (inner.size === 0) return null;
  const boundaries = [...inner.values()];
  const bases = [base, ...boundaries.map((b) => makeFeatureBase(base, b, boundaryFeatureKey(base, b), b.shape.reduce((x, y) => x * y, 1)))];
  // Shares the base's layers: never disposed (that would free the base's weights).
  const joint = tf.model({ inputs: model.inputs, outputs: [output, ...boundaries.map((b) => b.tensor)], name: `${base.name}_joint_features` });
  return {
    bases,
    embed(batch: tf.Tensor): tf.Tensor2D[] {
      return tf.tidy(() => {
        const outs = joint.predict(base.input.kind === 'text' ? tf.cast(batch, 'int32') : batch) as tf.Tensor[];
        return outs.map((out, i) => tf.reshape(out, [out.shape[0]!, bases[i]!.embeddingSize]) as tf.Tensor2D);
      });
    },
  };
}

function makeFeatureBase(base: FrozenBase, boundary: Boundary | null, key: string, size: number): FrozenBase {
  const baseModel = base.model;
  if (!baseModel || !boundary || key === base.hash) return base;
  const atInput = boundary.layerIndex === 0 && boundary.tensor === baseModel.inputs[0];
  // Shares the base's layers: never disposed (that would free the base's weights).
  const bottom = atInput ? null : tf.model({ inputs: baseModel.inputs, outputs: boundary.tensor, name: `${base.name}_to_${boundary.layerName}` });
  return {
    name: `${base.name}@${boundary.layerName}`,
    hash: key,
    input: base.input,
    embeddingSize: size,
    model: null,
    embed(batch: tf.Tensor): tf.Tensor2D {
      return tf.tidy(() => {
        const out = bottom ? (bottom.predict(base.input.kind === 'text' ? tf.cast(batch, 'int32') : batch) as tf.Tensor) : tf.cast(batch, 'float32');
        return tf.reshape(out, [out.shape[0]!, size]) as tf.Tensor2D;
      });
    },
    dispose(): void {
      // Nothing of its own to free (see above).
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Export

/** Options of {@link exportFineTunedModel}. */
export interface FineTunedExportOptions extends ExportOptions {
  /** Base layers that were fine-tuned; marked trainable in the saved model. @default [] */
  trainedLayers?: readonly string[];
}

/**
 * Exports the whole model (base weights as trained, then the head) as one stock LayersModel, the
 * same layout as {@link exportTransferModel}. The base is rebuilt from its own topology with the
 * trained weights, so the file holds only standard layers.
 */
export async function exportFineTunedModel(base: FrozenBase, headSpec: HeadSpec, model: FlatWeights, dir: string, options: FineTunedExportOptions): Promise<ExportResult> {
  const head = buildHead(base.embeddingSize, headSpec, { namePrefix: HEAD_PREFIX });
  let clone: tf.LayersModel | null = null;
  try {
    const headManifest = getHeadWeights(head).manifest;
    setHeadWeights(head, { manifest: headManifest, data: gatherWeights(model, headManifest) });
    if (!base.model) return await exportTransferModel(base, head, dir, options);
    clone = await tf.models.modelFromJSON({ modelTopology: base.model.toJSON(null, false) as tf.io.ModelJSON['modelTopology'] });
    const trained = new Set(options.trainedLayers ?? []);
    const byName = new Map(model.manifest.entries.map((e) => [e.name, e]));
    for (const layer of clone.layers) {
      const values = layer.weights.map((variable) => {
        const entry = byName.get(weightName(layer.name, variable));
        if (!entry) throw new FedtlError('BAD_SHAPE', `the model has no weight "${weightName(layer.name, variable)}"`);
        return tf.tensor(model.data.subarray(entry.offset, entry.offset + entry.length), entry.shape, 'float32');
      });
      if (values.length > 0) layer.setWeights(values);
      tf.dispose(values);
      layer.trainable = trained.has(layer.name);
    }
    const fineTunedBase: FrozenBase = { name: base.name, hash: base.hash, input: base.input, embeddingSize: base.embeddingSize, model: clone, embed: (batch) => base.embed(batch), dispose: () => undefined };
    return await exportTransferModel(fineTunedBase, head, dir, { ...options, extra: { ...options.extra, fineTunedLayers: [...trained] } });
  } finally {
    head.dispose();
    clone?.dispose();
  }
}
