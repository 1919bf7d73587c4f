/**
 * SIGKILL of a checkpoint writer mid-write: a process saving 8 MB checkpoints in a loop is killed
 * at random moments, again and again; each time the directory holds a complete checkpoint (the
 * last reported or a newer one), byte for byte, and a later writer cleans up what the killed one
 * left. The coordinator writes its checkpoints through the same saveCheckpoint.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadCheckpoint, saveCheckpoint, type Checkpoint } from '../../server/checkpoint.ts';
import { headOfRound } from '../support/checkpoint-writer.ts';
import { REPO_ROOT as ROOT, within, writeResult } from './stress-support.ts';

const PARAMETERS = 2_000_000; // 8 MB per weights file: a write takes long enough to be cut mid-way
const KILLS = 5;

function manifestOf(parameters: number): Checkpoint['manifest'] {
  return { parameterCount: parameters, entries: [{ name: 'dense/kernel', shape: [parameters / 10, 10], offset: 0, length: parameters }] };
}

function checkpointOf(round: number): Omit<Checkpoint, 'weights' | 'manifest'> {
  return { round, runId: 'killed-writer', baseHash: 'b'.repeat(64), headSpec: { hidden: [], activation: 'relu', dropout: 0, classes: 10 }, history: [] };
}

describe('checkpoint writer killed with SIGKILL', () => {
  let dir = '';

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-ckpt-kill-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps a whole checkpoint when its writer is killed with SIGKILL mid-write, again and again', async () => {
    const directory = path.join(dir, 'checkpoint');
    let next = 1;
    let midWrite = 0;
    for (let kill = 0; kill < KILLS; kill++) {
      // A writer saving 8 MB checkpoints in a loop; killed at a random moment after its second save.
      const writer = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/support/checkpoint-writer.ts'), directory, String(PARAMETERS), String(next)], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const exited = new Promise<NodeJS.Signals | null>((resolve) => writer.once('exit', (_code, signal) => resolve(signal)));
      let saved = 0;
      await within(
        new Promise<void>((resolve) =>
          writer.stdout!.setEncoding('utf8').on('data', (text: string) => {
            saved += (text.match(/saved/g) ?? []).length;
            if (saved >= 2) resolve();
          }),
        ),
        'two checkpoints',
        60_000,
      );
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 40));
      writer.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');

      if ((await readdir(directory)).some((name) => name.endsWith('.tmp'))) midWrite++;
      // The checkpoint on disk is a complete one, at least the last reported, byte for byte.
      const loaded = await loadCheckpoint(directory);
      expect(loaded!.round).toBeGreaterThanOrEqual(next + saved - 1);
      expect(Buffer.from(loaded!.weights.buffer).equals(Buffer.from(headOfRound(loaded!.round, PARAMETERS).buffer))).toBe(true);
      next = loaded!.round + 1;
    }
    // The kills did land inside writes (a temporary file was left behind), not only between them.
    expect(midWrite).toBeGreaterThan(0);
    await writeResult('checkpoint-kill.json', { kills: KILLS, parameters: PARAMETERS, killsThatLeftATemporaryFile: midWrite, lastRound: next - 1 });
    // A later writer removes the temporary files the killed ones left.
    await saveCheckpoint(directory, { ...checkpointOf(next), weights: headOfRound(next, PARAMETERS), manifest: manifestOf(PARAMETERS) });
    expect((await readdir(directory)).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

});
