/**
 * Checkpoints: a torn, edited or missing file is refused with CORRUPT_FILE (never trained on),
 * and an interrupted save leaves the previous complete checkpoint in force.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CHECKPOINT_FILE, loadCheckpoint, saveCheckpoint, type Checkpoint } from '../../server/checkpoint.ts';
import type { FedtlError } from '../../shared/core/errors.ts';
import { manifestFromShapes } from '../../shared/weights/flat-weights.ts';
import { Harness, useHarness } from '../support/hostile.ts';

const manifest = manifestFromShapes([
  { name: 'head/kernel', shape: [4, 3] },
  { name: 'head/bias', shape: [3] },
]);

function checkpoint(round: number): Checkpoint {
  return {
    round,
    runId: 'run-1',
    baseHash: 'a'.repeat(64),
    headSpec: { hidden: [], activation: 'relu', dropout: 0, classes: 3 },
    manifest,
    weights: Float32Array.from({ length: manifest.parameterCount }, (_, i) => round * 100 + i + 0.25),
    history: [],
  };
}

async function loadError(directory: string): Promise<FedtlError> {
  try {
    await loadCheckpoint(directory);
  } catch (error) {
    return error as FedtlError;
  }
  throw new Error('loadCheckpoint accepted a corrupt checkpoint');
}

function bytesOf(weights: Float32Array): Buffer {
  return Buffer.from(weights.buffer, weights.byteOffset, weights.byteLength);
}

describe('checkpoint files', () => {
  let dir = '';

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-ckpt-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('round-trips the last round exactly and removes older weight files', async () => {
    expect(await loadCheckpoint(dir)).toBeNull();
    await saveCheckpoint(dir, checkpoint(1));
    await saveCheckpoint(dir, checkpoint(2));
    const loaded = await loadCheckpoint(dir);
    expect(loaded?.round).toBe(2);
    expect(bytesOf(loaded!.weights).equals(bytesOf(checkpoint(2).weights))).toBe(true);
    expect((await readdir(dir)).sort()).toEqual([CHECKPOINT_FILE, 'head-2.bin']);
  });

  it.each([
    ['a truncated weights file', async () => truncate(path.join(dir, 'head-2.bin'), 10), /does not match its recorded SHA-256/],
    ['an edited weights file', async () => writeFile(path.join(dir, 'head-2.bin'), Buffer.alloc(manifest.parameterCount * 4)), /does not match its recorded SHA-256/],
    ['a missing weights file', async () => rm(path.join(dir, 'head-2.bin')), /weights file head-2.bin is missing/],
    ['a truncated checkpoint.json', async () => {
      const text = await readFile(path.join(dir, CHECKPOINT_FILE), 'utf8');
      await writeFile(path.join(dir, CHECKPOINT_FILE), text.slice(0, text.length / 2));
    }, /not valid JSON/],
    ['garbage in checkpoint.json', async () => writeFile(path.join(dir, CHECKPOINT_FILE), Buffer.from([0xff, 0x00, 0x13, 0x37])), /not valid JSON/],
    ['a JSON null', async () => writeFile(path.join(dir, CHECKPOINT_FILE), 'null'), /not a JSON object/],
    ['a JSON list', async () => writeFile(path.join(dir, CHECKPOINT_FILE), '[1,2]'), /not a JSON object/],
    ['a path-traversing weights file name', async () => editMeta({ weightsFile: '../head-2.bin' }), /bad weights file name/],
    ['a broken manifest', async () => editMeta({ manifest: { entries: 'many', parameterCount: 15 } }), /manifest: entries must be an array/],
    ['a broken head spec', async () => editMeta({ headSpec: { classes: 1 } }), /headSpec: classes/],
    ['a manifest of another size', async () => editMeta({ manifest: manifestFromShapes([{ name: 'w', shape: [2] }]) }), /disagree in size/],
    ['a negative round', async () => editMeta({ round: -1 }), /bad round number/],
    ['checkpoint.json that is a directory', async () => {
      await rm(path.join(dir, CHECKPOINT_FILE));
      await mkdir(path.join(dir, CHECKPOINT_FILE));
    }, /cannot be read/],
  ])('refuses %s with CORRUPT_FILE', async (_what, damage, message) => {
    await saveCheckpoint(dir, checkpoint(1));
    await saveCheckpoint(dir, checkpoint(2));
    await damage();
    const error = await loadError(dir);
    expect(error.code).toBe('CORRUPT_FILE');
    expect(error.message).toMatch(message);
  });

  async function editMeta(fields: Record<string, unknown>): Promise<void> {
    const file = path.join(dir, CHECKPOINT_FILE);
    const meta = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    await writeFile(file, JSON.stringify({ ...meta, ...fields }));
  }

  it('never reads a half-written checkpoint: an interrupted save leaves the previous one in force', async () => {
    await saveCheckpoint(dir, checkpoint(2));
    // A crashed earlier writer left a torn temporary file behind.
    await writeFile(path.join(dir, `${CHECKPOINT_FILE}.99999.tmp`), '{"format":"fedtl-checkpoint/v1","round":9');
    // This writer fails after the new weights file is written, before checkpoint.json is replaced.
    await mkdir(path.join(dir, `${CHECKPOINT_FILE}.${process.pid}.tmp`));
    await expect(saveCheckpoint(dir, checkpoint(3))).rejects.toThrow();
    expect(await readdir(dir)).toContain('head-3.bin');

    const loaded = await loadCheckpoint(dir);
    expect(loaded?.round).toBe(2);
    expect(bytesOf(loaded!.weights).equals(bytesOf(checkpoint(2).weights))).toBe(true);
  });
});

describe('a coordinator over a corrupt checkpoint directory', () => {
  let harness: Harness | undefined;
  const startHarness = useHarness();

  it('refuses to start with CORRUPT_FILE instead of training on it', async () => {
    const checkpointDir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-ckpt-'));
    try {
      harness = await startHarness({ allowed: 2, rounds: 1, checkpointDir });
      await writeFile(path.join(checkpointDir, CHECKPOINT_FILE), '{"format":"fedtl-checkpoint/v1","round":1,"weightsFile":"head-1.bin"');
      await expect(harness.startCoordinator()).rejects.toMatchObject({ code: 'CORRUPT_FILE' });
      // The running coordinator is unaffected.
      const client = await harness.connect(0);
      expect(await client.ready(10)).toEqual({ ok: true });
    } finally {
      await rm(checkpointDir, { recursive: true, force: true });
    }
  });
});
