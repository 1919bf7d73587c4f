/**
 * A coordinator whose trainable schedule is wrong stops at start with exit code 2 and a message
 * naming the problem — a real `fedtl coordinator` process, a real config file, the GloVe base.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'fedtl.js');

function fedtl(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, FEDTL_LOG: 'info' } });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
}

describe('fedtl coordinator with a bad trainable schedule', () => {
  let dir = '';
  let key = '';
  let allow = '';

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-ft-config-'));
    key = path.join(dir, 'coordinator.key');
    allow = path.join(dir, 'allow.txt');
    expect((await fedtl(['keygen', '--out', key])).code).toBe(0);
    await writeFile(allow, '');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const head = { fromRound: 1, groups: [{ select: 'head' }] };
  const cases: Array<[string, unknown, RegExp]> = [
    ['a pattern that matches no layer', { stages: [head, { fromRound: 3, groups: [{ select: 'pattern', pattern: '^block_16_' }] }] }, /pattern "\^block_16_" matches no layer with weights; layers are glove_embedding/],
    ['a multiplier of 0', { stages: [{ fromRound: 1, groups: [{ select: 'head', lrMultiplier: 0 }] }] }, /lrMultiplier must be a finite number > 0, got 0/],
    ['a negative multiplier', { stages: [{ fromRound: 1, groups: [{ select: 'top', count: 1, lrMultiplier: -0.1 }] }] }, /lrMultiplier must be a finite number > 0/],
    ['a schedule that narrows', { stages: [{ fromRound: 1, groups: [{ select: 'top', count: 1 }] }, { fromRound: 3, groups: [{ select: 'head' }] }] }, /no longer trains "glove_embedding".*may only widen/],
    ['a stage past the last round', { stages: [head, { fromRound: 12, groups: [{ select: 'top', count: 1 }] }] }, /starts at round 12, past the last round \(10\)/],
  ];

  it('refuses a pattern that matches no layer, a multiplier <= 0, a narrowing schedule and a stage past the last round, each with exit code 2', async () => {
    // Execute: one coordinator process per bad config, all at once
    const results = await Promise.all(
      cases.map(async ([name, trainable], i) => {
        const config = path.join(dir, `config-${i}.json`);
        await writeFile(config, JSON.stringify({ identity: key, allow, classes: 2, rounds: 10, base: 'glove-100d', port: 0, out: path.join(dir, `run-${i}`), trainable }));
        return { name, ...(await fedtl(['coordinator', '--config', config])) };
      }),
    );

    // Assert
    results.forEach(({ name, code, output }, i) => {
      expect(output, name).toMatch(cases[i]![2]);
      expect(code, name).toBe(2);
    });
  });
});
