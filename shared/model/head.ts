/**
 * The trainable head: a small dense network on top of a frozen base's embedding.
 *
 * Described by a serializable {@link HeadSpec} so the coordinator can tell clients what to build,
 * and so a checkpoint can rebuild it. The head ends in a softmax; its weights are the only weights
 * that are trained and exchanged.
 */
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';
import { flattenTensors, manifestsEqual, unflattenToTensors, type FlatWeights, type WeightManifest } from '../weights/flat-weights.ts';

export const HEAD_ACTIVATIONS = ['relu', 'tanh', 'sigmoid', 'elu', 'linear'] as const;
export type HeadActivation = (typeof HEAD_ACTIVATIONS)[number];

/** One convolution of a {@link ConvFrontSpec}: square kernel, `same` padding, ReLU. */
export interface ConvLayerSpec {
  filters: number;
  kernelSize: number;
  strides: number;
}

/**
 * Convolutions in front of a head's dense layers, for a model that learns from raw images with no
 * frozen base (the "small CNN from scratch" baseline): the flat input row is reshaped to
 * `inputShape` (height, width, channels), convolved, flattened, then the dense layers follow.
 */
export interface ConvFrontSpec {
  inputShape: [number, number, number];
  layers: ConvLayerSpec[];
}

export interface HeadSpec {
  /** Convolutions applied to the input before the dense layers. @default none */
  conv?: ConvFrontSpec;
  /** Sizes of the hidden dense layers; `[]` is a linear (softmax-regression) head. @default [] */
  hidden: number[];
  /** Activation of the hidden layers. @default 'relu' */
  activation: HeadActivation;
  /** Dropout rate applied after each hidden layer while training. @default 0 */
  dropout: number;
  /** Number of output classes. */
  classes: number;
}

export const DEFAULT_HEAD_SPEC: Omit<HeadSpec, 'classes'> = { hidden: [], activation: 'relu', dropout: 0 };

/** Parses an untrusted head spec (config file, protocol message, checkpoint). */
export function parseHeadSpec(value: unknown, source = 'head spec'): HeadSpec {
  const fail = (why: string): never => {
    throw new FedtlError('BAD_CONFIG', `${source}: ${why}`);
  };
  if (typeof value !== 'object' || value === null) return fail('expected an object like {"hidden":[64],"classes":2}');
  const record = value as Record<string, unknown>;
  const hidden = record['hidden'] ?? DEFAULT_HEAD_SPEC.hidden;
  const activation = record['activation'] ?? DEFAULT_HEAD_SPEC.activation;
  const dropout = record['dropout'] ?? DEFAULT_HEAD_SPEC.dropout;
  const classes = record['classes'];
  if (!Array.isArray(hidden) || hidden.length > 8 || !hidden.every((n) => Number.isSafeInteger(n) && n > 0 && n <= 65536)) {
    return fail('hidden must be a list of up to 8 layer sizes in [1, 65536]');
  }
  if (typeof activation !== 'string' || !(HEAD_ACTIVATIONS as readonly string[]).includes(activation)) {
    return fail(`activation must be one of ${HEAD_ACTIVATIONS.join(', ')}`);
  }
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) return fail('dropout must be a number in [0, 1)');
  if (typeof classes !== 'number' || !Number.isSafeInteger(classes) || classes < 2 || classes > 100_000) {
    return fail('classes must be an integer of at least 2');
  }
  const conv = record['conv'] === undefined ? undefined : parseConvFront(record['conv'], fail);
  return { ...(conv ? { conv } : {}), hidden: [...(hidden as number[])], activation: activation as HeadActivation, dropout, classes };
}

function parseConvFront(value: unknown, fail: (why: string) => never): ConvFrontSpec {
  const isSize = (n: unknown, max: number): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n > 0 && n <= max;
  const record = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const shape = record['inputShape'];
  if (!Array.isArray(shape) || shape.length !== 3 || !shape.every((n) => isSize(n, 4096))) return fail('conv.inputShape must be [height, width, channels] of positive integers');
  const layers = record['layers'];
  if (!Array.isArray(layers) || layers.length === 0 || layers.length > 8) return fail('conv.layers must list 1 to 8 convolutions like {"filters":16,"kernelSize":3,"strides":1}');
  return {
    inputShape: [shape[0] as number, shape[1] as number, shape[2] as number],
    layers: layers.map((layer: unknown, i) => {
      const l = (typeof layer === 'object' && layer !== null ? layer : {}) as Record<string, unknown>;
      const { filters, kernelSize, strides } = { filters: l['filters'], kernelSize: l['kernelSize'], strides: l['strides'] };
      if (!isSize(filters, 4096) || !isSize(kernelSize, 15) || !isSize(strides, 8)) return fail(`conv.layers[${i}] needs filters in [1, 4096], kernelSize in [1, 15] and strides in [1, 8]`);
      return { filters, kernelSize, strides };
    }),
  };
}

export interface BuildHeadOptions {
  /** Seed for the initial weights, so every run of a coordinator starts from the same head. @default 0 */
  seed?: number;
  /** Prefix of layer names; export joins base and head, so names must not clash. @default 'head' */
  namePrefix?: string;
}

/** Builds the head for an embedding of `inputSize` values. */
export function buildHead(inputSize: number, spec: HeadSpec, options: BuildHeadOptions = {}): tf.Sequential {
  const seed = options.seed ?? 0;
  const prefix = options.namePrefix ?? 'head';
  const model = tf.sequential({ name: `${prefix}` });
  if (spec.conv) addConvFront(model, inputSize, spec.conv, prefix, seed);
  // After a conv front, the first dense layer's input shape is inferred from the flatten.
  const first = spec.conv ? {} : { inputShape: [inputSize] };
  spec.hidden.forEach((units, i) => {
    model.add(
      tf.layers.dense({
        units,
        activation: spec.activation,
        name: `${prefix}_dense_${i}`,
        kernelInitializer: tf.initializers.glorotUniform({ seed: seed + i }),
        ...(i === 0 ? first : {}),
      }),
    );
    if (spec.dropout > 0) model.add(tf.layers.dropout({ rate: spec.dropout, seed: seed + 100 + i, name: `${prefix}_dropout_${i}` }));
  });
  model.add(
    tf.layers.dense({
      units: spec.classes,
      activation: 'softmax',
      name: `${prefix}_output`,
      kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 99 }),
      ...(spec.hidden.length === 0 ? first : {}),
    }),
  );
  return model;
}

function addConvFront(model: tf.Sequential, inputSize: number, conv: ConvFrontSpec, prefix: string, seed: number): void {
  const [height, width, channels] = conv.inputShape;
  if (height * width * channels !== inputSize) {
    throw new FedtlError('BAD_SHAPE', `conv.inputShape [${conv.inputShape.join(', ')}] holds ${height * width * channels} values but the head's input rows have ${inputSize}`);
  }
  model.add(tf.layers.reshape({ inputShape: [inputSize], targetShape: conv.inputShape, name: `${prefix}_reshape` }));
  for (const layer of convLayers(conv, prefix, seed)) model.add(layer);
}

/**
 * The layers of a {@link ConvFrontSpec}: each convolution (`same` padding, ReLU, seeded Glorot
 * initialisation), then a flatten. Shared by the from-scratch CNN head and the CNN bases that are
 * pretrained with the same architecture, so the two differ only in their starting weights.
 */
export function convLayers(conv: ConvFrontSpec, prefix: string, seed: number): tf.layers.Layer[] {
  return [
    ...conv.layers.map((layer, i) =>
      tf.layers.conv2d({
        filters: layer.filters,
        kernelSize: layer.kernelSize,
        strides: layer.strides,
        padding: 'same',
        activation: 'relu',
        name: `${prefix}_conv_${i}`,
        kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 200 + i }),
      }),
    ),
    tf.layers.flatten({ name: `${prefix}_flatten` }),
  ];
}

/** Stable names `layer/weight` (tfjs may suffix variable names when several models coexist). */
function namedWeights(model: tf.LayersModel): Array<{ name: string; variable: tf.LayerVariable }> {
  const named: Array<{ name: string; variable: tf.LayerVariable }> = [];
  for (const layer of model.layers) {
    for (const variable of layer.trainableWeights) {
      const short = variable.originalName.split('/').pop() ?? variable.originalName;
      named.push({ name: `${layer.name}/${short}`, variable });
    }
  }
  return named;
}

/**
 * A flat head buffer (a drift correction's control vector) as one tensor per weight, keyed by
 * `LayerVariable.name` as `trainHead`'s `gradientCorrection` takes it. The caller disposes them.
 */
export function headTensorsByVariable(model: tf.LayersModel, data: Float32Array): Map<string, tf.Tensor> {
  const named = namedWeights(model).map(({ variable }) => ({ name: variable.name, shape: variable.shape as number[] }));
  const sizes = named.map(({ shape }) => shape.reduce((a, b) => a * b, 1));
  const expected = sizes.reduce((a, b) => a + b, 0);
  if (data.length !== expected) throw new FedtlError('BAD_SHAPE', `the head has ${expected} parameters, got ${data.length}`);
  const out = new Map<string, tf.Tensor>();
  let offset = 0;
  named.forEach(({ name, shape }, i) => {
    out.set(name, tf.tensor(data.subarray(offset, offset + sizes[i]!), shape, 'float32'));
    offset += sizes[i]!;
  });
  return out;
}

/** Per-weight values keyed by `LayerVariable.name` (a `meanGradient`) as one flat head buffer: the inverse of {@link headTensorsByVariable}. */
export function flattenByVariable(model: tf.LayersModel, byName: ReadonlyMap<string, Float32Array>): Float32Array {
  const named = namedWeights(model);
  const parts = named.map(({ variable }) => {
    const values = byName.get(variable.name);
    if (!values) throw new FedtlError('INTERNAL', `no values for weight ${variable.name}`);
    return values;
  });
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export function headManifest(model: tf.LayersModel): WeightManifest {
  return getHeadWeights(model).manifest;
}

/** The head's trainable weights as one flat buffer plus manifest. */
export function getHeadWeights(model: tf.LayersModel): FlatWeights {
  const named = namedWeights(model);
  return flattenTensors(named.map(({ name, variable }) => ({ name, tensor: variable.read() })));
}

/** Loads a flat buffer into the head; the manifest must match the head exactly. */
export function setHeadWeights(model: tf.LayersModel, weights: FlatWeights): void {
  const named = namedWeights(model);
  const expected = flattenManifest(named);
  if (!manifestsEqual(expected, weights.manifest)) {
    throw new FedtlError(
      'BAD_SHAPE',
      `weights do not fit this head: expected ${expected.parameterCount} parameters in ${expected.entries.length} tensors ` +
        `(${expected.entries.map((e) => `${e.name}[${e.shape.join('x')}]`).join(', ')}), got ${weights.manifest.parameterCount}`,
    );
  }
  const tensors = unflattenToTensors(weights);
  try {
    named.forEach(({ variable }, i) => variable.write(tensors[i]!));
  } finally {
    tf.dispose(tensors);
  }
}

function flattenManifest(named: Array<{ name: string; variable: tf.LayerVariable }>): WeightManifest {
  let offset = 0;
  const entries = named.map(({ name, variable }) => {
    // Weight shapes are always fully defined (only activations have a null batch dimension).
    const shape = variable.shape.map((d) => d ?? 0);
    const length = shape.reduce((a, b) => a * b, 1);
    const entry = { name, shape, offset, length };
    offset += length;
    return entry;
  });
  return { entries, parameterCount: offset };
}
