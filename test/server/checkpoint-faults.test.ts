/**
 * Checkpoints under faults at the file-system boundary (a writer killed with SIGKILL mid-write is in
 * test/stress/checkpoint-kill.test.ts): a full disk (ENOSPC, from the kernel's /dev/full), a directory that cannot be written (EACCES for
 * an unprivileged user; ENOTDIR), and a coordinator whose checkpoint write fails mid-run. Each
 * time the error is clear and the last good checkpoint stays in force.
 */
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadCheckpoint, saveCheckpoint, temporaryName, type Checkpoint } from '../../server/checkpoint.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import { headOfRound } from '../support/checkpoint-writer.ts';
import { Harness, makeDelta, useHarness, within } from '../support/hostile.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function checkpoint(round: number, parameters = 30): Checkpoint {
  return {
    round,
    runId: 'faults',
    baseHash: 'b'.repeat(64),
    headSpec: { hidden: [], activation: 'relu', dropout: 0, classes: 10 },
    manifest: { parameterCount: parameters, entries: [{ name: 'dense/kernel', shape: [parameters / 10, 10], offset: 0, length: parameters }] },
    weights: headOfRound(round, parameters),
    history: [],
  };
}

async function storageError(promise: Promise<unknown>): Promise<FedtlError> {
  try {
    await promise;
  } catch (error) {
    return error as FedtlError;
  }
  throw new Error('the checkpoint write succeeded');
}

describe('checkpoints under file-system faults', () => {
  let dir = '';

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-ckpt-faults-'));
  });

  afterEach(async () => {
    await chmod(dir, 0o700).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('reports a full disk (ENOSPC) clearly and keeps the last good checkpoint', async () => {
    await saveCheckpoint(dir, checkpoint(1));
    // The kernel's /dev/full answers every write with ENOSPC: the next weights file "lands" there.
    await symlink('/dev/full', temporaryName(path.join(dir, 'head-2.bin')));
    const error = await storageError(saveCheckpoint(dir, checkpoint(2)));
    expect(error).toMatchObject({ code: 'STORAGE' });
    expect(error.message).toMatch(/round 2 .*ENOSPC.*previous checkpoint there is kept/);
    expect((await loadCheckpoint(dir))?.round).toBe(1);
    expect((await readdir(dir)).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    // Space back: the next save works.
    await saveCheckpoint(dir, checkpoint(2));
    expect((await loadCheckpoint(dir))?.round).toBe(2);
  });

  it('reports a directory it cannot write (EACCES as an unprivileged user, ENOTDIR) clearly', async () => {
    // A checkpoint directory below a regular file.
    await writeFile(path.join(dir, 'not-a-directory'), 'x');
    const notDirectory = await storageError(saveCheckpoint(path.join(dir, 'not-a-directory', 'checkpoint'), checkpoint(1)));
    expect(notDirectory).toMatchObject({ code: 'STORAGE' });
    expect(notDirectory.message).toMatch(/ENOTDIR|EEXIST/);

    // A read-only directory. Root ignores file modes, so as root the write runs in a child process
    // with the uid of `nobody`, where the kernel enforces them.
    const readOnly = path.join(dir, 'read-only');
    await mkdir(readOnly);
    await saveCheckpoint(readOnly, checkpoint(1));
    await chmod(dir, 0o755);
    await chmod(readOnly, 0o555);
    const message = process.getuid?.() === 0 ? await saveAsNobody(readOnly, 2) : (await storageError(saveCheckpoint(readOnly, checkpoint(2)))).message;
    expect(message).toMatch(/STORAGE: cannot write the checkpoint of round 2 .*EACCES/);
    expect((await loadCheckpoint(readOnly))?.round).toBe(1);
  });
});

/** Runs saveCheckpoint(round) in a child process as uid/gid 65534; resolves with its error line. */
async function saveAsNobody(directory: string, round: number): Promise<string> {
  const script = `
    import { saveCheckpoint } from ${JSON.stringify(path.join(ROOT, 'server/checkpoint.ts'))};
    import { headOfRound } from ${JSON.stringify(path.join(ROOT, 'test/support/checkpoint-writer.ts'))};
    const weights = headOfRound(${round}, 30);
    saveCheckpoint(${JSON.stringify(directory)}, { round: ${round}, runId: 'faults', baseHash: 'b'.repeat(64),
      headSpec: { hidden: [], activation: 'relu', dropout: 0, classes: 10 },
      manifest: { parameterCount: 30, entries: [{ name: 'dense/kernel', shape: [3, 10], offset: 0, length: 30 }] },
      weights, history: [] }).then(() => console.log('saved'), (e) => console.log(e.code + ': ' + e.message));
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: '/tmp' } });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (out += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (out += text));
  await within(new Promise((resolve) => child.once('exit', resolve)), 'the unprivileged writer', 60_000);
  return out.trim();
}

describe('a coordinator whose checkpoint write fails', () => {
  let harness: Harness | undefined;
  const startHarness = useHarness();
  let dir = '';

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('stops with STORAGE at the round whose checkpoint failed and keeps the last good one', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-ckpt-run-'));
    const checkpointDir = path.join(dir, 'checkpoint');
    harness = await startHarness({ allowed: 2, rounds: 3, checkpointDir });
    const h = harness;
    const clients = await h.ready([0, 1]);
    for (const [i, client] of clients.entries()) client.answerFits((fit) => ({ delta: makeDelta(h.parameterCount, fit.round * 10 + i), examples: 100 }));
    // After round 1's checkpoint, round 2's weights file will hit a full disk.
    h.onRound = (record) => {
      if (record.round === 1) void symlink('/dev/full', temporaryName(path.join(checkpointDir, 'head-2.bin')));
    };
    const error = await storageError(h.coordinator.run());
    expect(error).toMatchObject({ code: 'STORAGE' });
    expect(error.message).toMatch(/round 2 to .*checkpoint: ENOSPC/);
    const kept = await loadCheckpoint(checkpointDir);
    expect(kept?.round).toBe(1);
    expect(Buffer.from(kept!.weights.buffer).equals(Buffer.from(h.roundWeights[0]!.buffer))).toBe(true);
  });
});
