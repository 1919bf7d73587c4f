import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { saveCheckpoint } from '../../server/checkpoint.ts';
import { RoundLoop, type RoundLoopOptions } from '../../server/round-loop.ts';
import type { HeadSpec } from '../../shared/model/head.ts';
import { FedAvg } from '../../shared/strategy/fed-avg.ts';
import { manifestFromShapes } from '../../shared/weights/flat-weights.ts';

const SPEC: HeadSpec = { hidden: [], activation: 'relu', dropout: 0, classes: 2 };
const MANIFEST = manifestFromShapes([
  { name: 'head_output/kernel', shape: [3, 2] },
  { name: 'head_output/bias', shape: [2] },
]);

function loop(checkpointDir: string, overrides: Partial<RoundLoopOptions> = {}): RoundLoop {
  return new RoundLoop({
    strategy: new FedAvg({ minClients: 1 }),
    headSpec: SPEC,
    manifest: MANIFEST,
    initialWeights: new Float32Array(MANIFEST.parameterCount),
    baseHash: 'a'.repeat(64),
    rounds: 3,
    openUpdate: () => {
      throw new Error('not used');
    },
    sign: () => 'signature',
    checkpointDir,
    logger: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
    ...overrides,
  });
}

describe('RoundLoop.resume', () => {
  let dir = '';
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('resumes the head, history and round of a checkpoint that fits this run', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-resume-'));
    const weights = Float32Array.from({ length: MANIFEST.parameterCount }, (_, i) => i / 10);
    await saveCheckpoint(dir, { round: 2, runId: 'run1', baseHash: 'a'.repeat(64), headSpec: SPEC, manifest: MANIFEST, weights, history: [] });
    const resumed = loop(dir);
    expect(await resumed.resume()).toBe(2);
    expect(Array.from(resumed.weights)).toEqual(Array.from(weights));
    expect(resumed.completedRounds).toBe(2);
  });

  it('refuses a checkpoint of another base, or of a head with the same size but another spec', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-resume-'));
    const weights = new Float32Array(MANIFEST.parameterCount);
    await saveCheckpoint(dir, { round: 1, runId: 'run1', baseHash: 'a'.repeat(64), headSpec: SPEC, manifest: MANIFEST, weights, history: [] });
    await expect(loop(dir, { baseHash: 'b'.repeat(64) }).resume()).rejects.toThrow(/another base/);
    // Same parameter count, different activation: resuming would silently train a different model.
    await expect(loop(dir, { headSpec: { ...SPEC, activation: 'tanh' } }).resume()).rejects.toThrow(/another head/);
  });
});
