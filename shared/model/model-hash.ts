/**
 * Content hash of a TF.js model: SHA-256 over its canonical topology JSON, its weight specs and its
 * weight bytes.
 *
 * The hash names a frozen base everywhere (feature caches, protocol, checkpoints), so it must not
 * depend on anything that does not change what the model computes: key order in `model.json`,
 * how the weights are split into shards, `generatedBy`/`convertedBy` strings or the training
 * config are all left out. The same model hashes the same whether it is a directory on disk or
 * in-memory `tf.io.ModelArtifacts`.
 */
import { createHash, type Hash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';

/** Bumped if the hashed byte layout ever changes, so old and new hashes can never collide. */
const HASH_DOMAIN = 'fedtl-model-hash/v1';

/**
 * JSON with object keys sorted recursively and `undefined` members dropped, so two equal values
 * serialise to the same bytes whatever order their keys were written in.
 *
 * @example canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }] }) // '{"a":[2,{"c":4,"d":3}],"b":1}'
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const text = JSON.stringify(value);
    // JSON.stringify(undefined) is undefined; inside arrays JSON uses null for it, as we do.
    return text === undefined ? 'null' : text;
  }
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item)).join(',')}]`;
  const record = value as Record<string, unknown>;
  const members = Object.keys(record)
    .filter((key) => record[key] !== undefined)
    .sort()
    .map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`);
  return `{${members.join(',')}}`;
}

/** Feeds one length-prefixed part, so the boundary between parts is part of what is hashed. */
function updatePart(hash: Hash, bytes: Uint8Array): void {
  const length = Buffer.alloc(8);
  length.writeBigUInt64BE(BigInt(bytes.byteLength));
  hash.update(length);
  hash.update(bytes);
}

function topologyBytes(topology: unknown): Uint8Array {
  // Graph models may carry a binary GraphDef; hash it as is.
  if (topology instanceof ArrayBuffer) return new Uint8Array(topology);
  return Buffer.from(canonicalJson(topology ?? null), 'utf8');
}

function startHash(topology: unknown, weightSpecs: readonly tf.io.WeightsManifestEntry[]): Hash {
  const hash = createHash('sha256');
  updatePart(hash, Buffer.from(HASH_DOMAIN, 'utf8'));
  updatePart(hash, topologyBytes(topology));
  updatePart(hash, Buffer.from(canonicalJson(weightSpecs), 'utf8'));
  return hash;
}

function weightBuffers(weightData: tf.io.WeightData | undefined): ArrayBuffer[] {
  if (weightData === undefined) return [];
  return Array.isArray(weightData) ? weightData : [weightData];
}

/**
 * Hashes in-memory model artifacts (e.g. what `model.save(tf.io.withSaveHandler(...))` receives,
 * or what a load handler returns).
 *
 * @returns lowercase hex SHA-256
 */
export function hashModelArtifacts(artifacts: tf.io.ModelArtifacts): string {
  const hash = startHash(artifacts.modelTopology, artifacts.weightSpecs ?? []);
  const buffers = weightBuffers(artifacts.weightData);
  const total = buffers.reduce((sum, buffer) => sum + buffer.byteLength, 0);
  const length = Buffer.alloc(8);
  length.writeBigUInt64BE(BigInt(total));
  hash.update(length);
  for (const buffer of buffers) hash.update(new Uint8Array(buffer));
  return hash.digest('hex');
}

/** The parts of `model.json` the hash reads, checked enough to hash them safely. */
interface ManifestForHash {
  modelTopology: unknown;
  weightsManifest: Array<{ paths: string[]; weights: tf.io.WeightsManifestEntry[] }>;
}

function parseManifestForHash(json: unknown, file: string): ManifestForHash {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new FedtlError('BAD_MODEL', `${file} is not a JSON object; expected a TF.js model.json`);
  }
  const record = json as Record<string, unknown>;
  const manifest = record['weightsManifest'] ?? [];
  if (!Array.isArray(manifest)) throw new FedtlError('BAD_MODEL', `${file}: "weightsManifest" must be an array`);
  const groups = manifest.map((group: unknown, index) => {
    const g = group as Record<string, unknown> | null;
    const paths = g?.['paths'];
    const weights = g?.['weights'];
    if (!Array.isArray(paths) || !paths.every((p) => typeof p === 'string') || !Array.isArray(weights)) {
      throw new FedtlError('BAD_MODEL', `${file}: weightsManifest[${index}] needs "paths" (strings) and "weights" (array)`);
    }
    return { paths: paths as string[], weights: weights as tf.io.WeightsManifestEntry[] };
  });
  return { modelTopology: record['modelTopology'], weightsManifest: groups };
}

/**
 * Resolves a shard path from `model.json` inside `dir`, refusing absolute paths and `..` so a
 * hostile manifest cannot make us read (or hash) files outside the model directory.
 */
export function resolveShardPath(dir: string, shard: string): string {
  const resolved = path.resolve(dir, shard);
  const root = path.resolve(dir) + path.sep;
  if (path.isAbsolute(shard) || !resolved.startsWith(root)) {
    throw new FedtlError('BAD_MODEL', `weight shard path "${shard}" in ${dir}/model.json leaves the model directory`);
  }
  return resolved;
}

/**
 * Hashes a TF.js model directory (`model.json` plus the weight shards it lists), streaming the
 * shards so large models are not held in memory twice. Equal to {@link hashModelArtifacts} of the
 * artifacts loaded from the same directory.
 *
 * @throws FedtlError `CORRUPT_FILE` when `model.json` or a shard cannot be read, `BAD_MODEL` when
 *   `model.json` is not a model manifest.
 */
export async function hashModelDir(dir: string): Promise<string> {
  const file = path.join(dir, 'model.json');
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new FedtlError('CORRUPT_FILE', `cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
  const manifest = parseManifestForHash(json, file);
  const specs = manifest.weightsManifest.flatMap((group) => group.weights);
  const hash = startHash(manifest.modelTopology, specs);
  const shardFiles = manifest.weightsManifest.flatMap((group) => group.paths.map((p) => resolveShardPath(dir, p)));
  let total = 0;
  const handles = [];
  try {
    for (const shard of shardFiles) {
      const handle = await open(shard, 'r');
      handles.push(handle);
      total += (await handle.stat()).size;
    }
    const length = Buffer.alloc(8);
    length.writeBigUInt64BE(BigInt(total));
    hash.update(length);
    const chunk = Buffer.alloc(1 << 20);
    for (const handle of handles) {
      for (;;) {
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
        if (bytesRead === 0) break;
        hash.update(chunk.subarray(0, bytesRead));
      }
    }
  } catch (error) {
    if (error instanceof FedtlError) throw error;
    throw new FedtlError('CORRUPT_FILE', `cannot read the weight shards of ${dir}: ${(error as Error).message}`, { cause: error });
  } finally {
    await Promise.all(handles.map((handle) => handle.close()));
  }
  return hash.digest('hex');
}

/** SHA-256 (hex) of one file's bytes; used for side files such as a vocabulary. */
export async function hashFile(file: string): Promise<string> {
  try {
    return createHash('sha256').update(await readFile(file)).digest('hex');
  } catch (error) {
    throw new FedtlError('CORRUPT_FILE', `cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
}
