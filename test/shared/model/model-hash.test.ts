import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileSaveHandler } from '../../../shared/model/base-loader.ts';
import { canonicalJson, hashModelArtifacts, hashModelDir } from '../../../shared/model/model-hash.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';

let tmp: string;

beforeAll(async () => {
  await selectBackend({ log: false });
  tmp = await mkdtemp(path.join(os.tmpdir(), 'fedtl-hash-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function tinyModel(units = 3): tf.LayersModel {
  // Fixed weights so the model is the same on every run, whatever the initialiser's seed.
  const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [4], units, name: 'dense', kernelInitializer: 'ones', biasInitializer: 'zeros' })] });
  return model;
}

async function captureArtifacts(model: tf.LayersModel): Promise<tf.io.ModelArtifacts> {
  let captured: tf.io.ModelArtifacts | undefined;
  await model.save(tf.io.withSaveHandler(async (artifacts) => {
    captured = artifacts;
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
  return captured!;
}

describe('canonicalJson', () => {
  it('sorts keys recursively and drops undefined members', () => {
    expect(canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }], u: undefined })).toBe('{"a":[2,{"c":4,"d":3}],"b":1}');
    expect(canonicalJson({ x: { z: 1, y: 2 } })).toBe(canonicalJson({ x: { y: 2, z: 1 } }));
  });
});

describe('model hash', () => {
  it('is the same for a directory and the in-memory artifacts, and stable across saves', async () => {
    const model = tinyModel();
    const artifacts = await captureArtifacts(model);
    await model.save(fileSaveHandler(path.join(tmp, 'a')));
    await model.save(fileSaveHandler(path.join(tmp, 'b')));
    model.dispose();
    const fromMemory = hashModelArtifacts(artifacts);
    expect(fromMemory).toMatch(/^[0-9a-f]{64}$/);
    expect(await hashModelDir(path.join(tmp, 'a'))).toBe(fromMemory);
    expect(await hashModelDir(path.join(tmp, 'b'))).toBe(fromMemory);
  });

  it('ignores key order, generatedBy and how weights are split into shards', async () => {
    const model = tinyModel();
    const dir = path.join(tmp, 'reshard');
    await model.save(fileSaveHandler(dir));
    model.dispose();
    const before = await hashModelDir(dir);
    const json = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')) as Record<string, unknown> & { weightsManifest: Array<{ paths: string[] }> };
    const weights = await readFile(path.join(dir, 'weights.bin'));
    await writeFile(path.join(dir, 'part1.bin'), weights.subarray(0, 7));
    await writeFile(path.join(dir, 'part2.bin'), weights.subarray(7));
    json.weightsManifest[0]!.paths = ['part1.bin', 'part2.bin'];
    const reordered = Object.fromEntries(Object.entries({ ...json, generatedBy: 'someone else' }).reverse());
    await writeFile(path.join(dir, 'model.json'), JSON.stringify(reordered));
    expect(await hashModelDir(dir)).toBe(before);
  });

  it('changes when one weight byte or the topology changes', async () => {
    const model = tinyModel();
    const artifacts = await captureArtifacts(model);
    model.dispose();
    const base = hashModelArtifacts(artifacts);
    const flipped = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData!).slice(0));
    flipped[5]! ^= 1;
    expect(hashModelArtifacts({ ...artifacts, weightData: flipped.buffer })).not.toBe(base);

    const other = tinyModel(4);
    const otherArtifacts = await captureArtifacts(other);
    other.dispose();
    expect(hashModelArtifacts(otherArtifacts)).not.toBe(base);
    // Same bytes, different specs (a renamed weight) must also differ.
    const renamed = artifacts.weightSpecs!.map((spec, i) => (i === 0 ? { ...spec, name: 'renamed/kernel' } : spec));
    expect(hashModelArtifacts({ ...artifacts, weightSpecs: renamed })).not.toBe(base);
  });

  it('fails with CORRUPT_FILE when a shard is missing', async () => {
    const model = tinyModel();
    const dir = path.join(tmp, 'missing');
    await model.save(fileSaveHandler(dir));
    model.dispose();
    await rm(path.join(dir, 'weights.bin'));
    await expect(hashModelDir(dir)).rejects.toMatchObject({ code: 'CORRUPT_FILE' });
  });

  it('refuses shard paths that leave the directory', async () => {
    const dir = path.join(tmp, 'escape');
    await fileSaveHandler(dir).save!({ modelTopology: {}, weightSpecs: [], weightData: new ArrayBuffer(0) });
    const json = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')) as { weightsManifest: Array<{ paths: string[] }> };
    json.weightsManifest[0]!.paths = ['../../etc/passwd'];
    await writeFile(path.join(dir, 'model.json'), JSON.stringify(json));
    await expect(hashModelDir(dir)).rejects.toMatchObject({ code: 'BAD_MODEL' });
  });
});
