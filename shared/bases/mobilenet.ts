/**
 * The `mobilenet-v2` base: MobileNetV2 (width 1.0; Sandler et al., 2018,
 * https://arxiv.org/abs/1801.04381) as shipped inside `nsfwjs@4.4.0` (MIT).
 *
 * Origin, to state wherever results are reported: ImageNet-initialised MobileNetV2 (Keras 2.2.4),
 * fine-tuned by nsfwjs as a 5-class adult-content classifier; weights uint8-quantized as shipped.
 * We drop the classifier head and cut at `out_relu` with global average pooling → 1280-d (at
 * 224 px this equals nsfwjs's `flatten_1`, since its 7×7 average pool covers the whole map).
 *
 * nsfwjs bundles the model as UMD modules (`dist/models/mobilenet_v2/model.min.js` returns the
 * model JSON, `group1-shard1of1.min.js` the weight shard as base64). We convert them once to a
 * standard model directory. The network is fully convolutional up to `out_relu`, so other input
 * sizes work by rewriting the input layer's `batch_input_shape`; the head layers (a fixed 7×7
 * pool, then dense layers) only fit 224 px, which is another reason to remove them — and with
 * their weights removed too the model loads in strict mode.
 * Input: RGB in [0, 1] (nsfwjs divides pixels by 255).
 */
import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { fileSaveHandler, weightSpecByteLength, writeSidecar, type BaseSidecar } from '../model/base-loader.ts';
import { hashModelDir } from '../model/model-hash.ts';

export const MOBILENET_BASE_NAME = 'mobilenet-v2';
/** Input sizes offered: multiples of 32 (the network's total stride) that the benchmarks use. */
export const MOBILENET_SIZES = [96, 128, 224] as const;
export type MobilenetSize = (typeof MOBILENET_SIZES)[number];
/** The last layer kept from nsfwjs's model. */
export const MOBILENET_CUT_LAYER = 'out_relu';
const POOL_LAYER = 'global_average_pooling2d';
export const MOBILENET_EMBEDDING_SIZE = 1280;

/** Options of {@link buildMobilenetBase}. */
export interface MobilenetBaseOptions {
  /** Input height and width in pixels. @default 224 */
  size?: MobilenetSize;
  /** Progress goes here. @default createLogger('mobilenet') */
  logger?: Logger;
}

export function isMobilenetSize(value: unknown): value is MobilenetSize {
  return typeof value === 'number' && (MOBILENET_SIZES as readonly number[]).includes(value);
}

/** Name of the base at one size, e.g. `mobilenet-v2-96`. */
export function mobilenetBaseName(size: MobilenetSize): string {
  return `${MOBILENET_BASE_NAME}-${size}`;
}

interface KerasLayer {
  name: string;
  class_name: string;
  config: Record<string, unknown>;
  inbound_nodes: unknown[];
}

interface NsfwjsModule {
  modelTopology: { model_config: { config: { layers: KerasLayer[]; output_layers: unknown[] } } } & Record<string, unknown>;
  weightsManifest: Array<{ paths: string[]; weights: tf.io.WeightsManifestEntry[] }>;
}

/** Loads nsfwjs's UMD model modules (CommonJS, hence `require`). */
function readNsfwjsModel(): { module: NsfwjsModule; shard: Buffer; source: string } {
  const require = createRequire(import.meta.url);
  // nsfwjs exports neither package.json nor the model files; reach them from its CommonJS entry
  // (dist/cjs/index.js).
  const source = path.resolve(path.dirname(require.resolve('nsfwjs')), '..', 'models', 'mobilenet_v2');
  const module = require(path.join(source, 'model.min.js')) as NsfwjsModule;
  const shardBase64 = require(path.join(source, 'group1-shard1of1.min.js')) as unknown;
  if (typeof shardBase64 !== 'string' || !module?.modelTopology?.model_config || !Array.isArray(module.weightsManifest)) {
    throw new FedtlError('BAD_MODEL', `${source} does not hold the expected nsfwjs MobileNetV2 bundle (model JSON + base64 shard)`);
  }
  return { module, shard: Buffer.from(shardBase64, 'base64'), source };
}

/**
 * Converts nsfwjs's MobileNetV2 into the artifacts of the cut base at `size` px: input resized,
 * layers after `out_relu` replaced by global average pooling, their weights dropped, every layer
 * marked non-trainable. Weights stay uint8-quantized exactly as shipped.
 */
export function convertNsfwjsMobilenet(size: MobilenetSize): tf.io.ModelArtifacts {
  const { module, shard, source } = readNsfwjsModel();
  // Deep copy: `require` caches the module object, and we edit the topology.
  const topology = structuredClone(module.modelTopology);
  const config = topology.model_config.config;
  const cutAt = config.layers.findIndex((layer) => layer.name === MOBILENET_CUT_LAYER);
  const inputLayer = config.layers[0];
  if (cutAt < 0 || inputLayer?.class_name !== 'InputLayer') {
    throw new FedtlError('BAD_MODEL', `${source}: expected an InputLayer first and a "${MOBILENET_CUT_LAYER}" layer`);
  }
  inputLayer.config['batch_input_shape'] = [null, size, size, 3];
  const kept = config.layers.slice(0, cutAt + 1);
  const keptNames = new Set(kept.map((layer) => layer.name));
  kept.push({
    name: POOL_LAYER,
    class_name: 'GlobalAveragePooling2D',
    config: { name: POOL_LAYER, trainable: false, data_format: 'channels_last' },
    inbound_nodes: [[[MOBILENET_CUT_LAYER, 0, 0, {}]]],
  });
  for (const layer of kept) layer.config['trainable'] = false;
  config.layers = kept;
  config.output_layers = [[POOL_LAYER, 0, 0]];
  // A frozen base has no use for nsfwjs's optimizer settings.
  delete topology['training_config'];

  const specs: tf.io.WeightsManifestEntry[] = [];
  const pieces: Buffer[] = [];
  let offset = 0;
  for (const spec of module.weightsManifest.flatMap((group) => group.weights)) {
    const length = weightSpecByteLength(spec);
    if (length === undefined) throw new FedtlError('BAD_MODEL', `${source}: weight ${spec.name} has an unsupported dtype`);
    const layerName = spec.name.split('/')[0] ?? '';
    if (keptNames.has(layerName)) {
      specs.push(spec);
      pieces.push(shard.subarray(offset, offset + length));
    }
    offset += length;
  }
  if (offset !== shard.byteLength) {
    throw new FedtlError('BAD_MODEL', `${source}: weight specs describe ${offset} bytes but the shard has ${shard.byteLength}`);
  }
  const data = Buffer.concat(pieces);
  return {
    modelTopology: topology,
    format: 'layers-model',
    generatedBy: 'keras v2.2.4',
    convertedBy: 'fedtl mobilenet.ts from nsfwjs@4.4.0',
    weightSpecs: specs,
    weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer,
  };
}

/**
 * Builds the `mobilenet-v2-<size>` base directory (`model.json`, `weights.bin`,
 * `fedtl-base.json`). Input: `[n, size, size, 3]` RGB in [0, 1]; embedding 1280-d.
 *
 * @returns the sidecar written
 * @example await buildMobilenetBase('/tmp/mnv2-96', { size: 96 });
 */
export async function buildMobilenetBase(dir: string, options: MobilenetBaseOptions = {}): Promise<BaseSidecar> {
  const size = options.size ?? 224;
  if (!isMobilenetSize(size)) throw new FedtlError('BAD_CONFIG', `mobilenet-v2 size must be one of ${MOBILENET_SIZES.join(', ')}, got ${String(size)}`);
  const log = options.logger ?? createLogger('mobilenet');
  log.info(`mobilenet-v2: converting nsfwjs MobileNetV2 to a ${size}px base`);
  await mkdir(dir, { recursive: true });
  await fileSaveHandler(dir).save!(convertNsfwjsMobilenet(size));
  const sidecar: BaseSidecar = {
    format: 'fedtl-base',
    version: 1,
    name: mobilenetBaseName(size),
    kind: 'layers',
    input: { kind: 'image', size, channels: 3, range: [0, 1] },
    embeddingSize: MOBILENET_EMBEDDING_SIZE,
    hash: await hashModelDir(dir),
    origin:
      'MobileNetV2 (width 1.0, Sandler et al. 2018), ImageNet-initialised and fine-tuned by nsfwjs@4.4.0 (MIT) as a 5-class ' +
      `adult-content classifier; uint8-quantized weights as shipped. Classifier head removed; input set to ${size}x${size}x3 RGB in [0,1]; ` +
      `cut at ${MOBILENET_CUT_LAYER} + global average pooling (1280-d; equals nsfwjs's flatten_1 at 224 px). All layers frozen.`,
  };
  await writeSidecar(dir, sidecar);
  return sidecar;
}
