/**
 * Bad privacy settings stop `fedtl simulate` and `fedtl coordinator` at start with exit code 2
 * and a message that says what to change (real child processes, before any data is loaded).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'fedtl.js');

function fedtl(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, FEDTL_LOG: 'info' } });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.on('close', (code) => resolve({ code, output }));
  });
}

describe('privacy settings checked at start', () => {
  // t > n and S <= 0 here; the ring and ε checks have unit tests (test/shared/secagg, test/shared/privacy).
  it('refuses t > n and S <= 0 with exit 2', async () => {
    const sim = ['simulate', '--preset', 'imdb-glove', '--mode', 'virtual', '--no-baselines', '--out', path.join('/tmp', 'fedtl-never-written')];
    const [threshold, clip] = await Promise.all([
      fedtl([...sim, '--clients', '20', '--secure-aggregation', '--secagg-threshold', '25']),
      fedtl([...sim, '--dp-clip', '0', '--dp-epsilon', '8']),
    ]);
    expect(threshold.code).toBe(2);
    expect(threshold.output).toMatch(/threshold t = 25 exceeds the 20 clients per round/);
    expect(clip.code).toBe(2);
    expect(clip.output).toMatch(/--dp-clip S must be a finite number > 0/);
  }, 120_000);

  it('refuses drift correction (strategy scaffold) with λ ≤ 0, or with secure aggregation or DP, with exit 2', async () => {
    const sim = ['simulate', '--preset', 'imdb-glove', '--mode', 'virtual', '--no-baselines', '--strategy', 'scaffold', '--out', path.join('/tmp', 'fedtl-never-written')];
    const [range, secure, dp] = await Promise.all([
      fedtl([...sim, '--drift-correction', '0']),
      fedtl([...sim, '--secure-aggregation']),
      fedtl([...sim, '--dp-clip', '1', '--dp-epsilon', '8']),
    ]);
    expect(range.code).toBe(2);
    expect(range.output).toMatch(/driftCorrection \(--drift-correction\) of strategy scaffold must be > 0, got 0/);
    expect(secure.code).toBe(2);
    expect(secure.output).toMatch(/strategy scaffold \(drift correction\) cannot be combined with secure aggregation/);
    expect(dp.code).toBe(2);
    expect(dp.output).toMatch(/strategy scaffold \(drift correction\) cannot be combined with differential privacy/);
  }, 120_000);

  it('refuses per-row averaging out of range, or with secure aggregation or DP, with exit 2', async () => {
    const sim = ['simulate', '--preset', 'imdb-glove', '--mode', 'virtual', '--no-baselines', '--strategy', 'fedavg', '--out', path.join('/tmp', 'fedtl-never-written')];
    const [range, secure, dp] = await Promise.all([
      fedtl([...sim, '--row-averaging', '2']),
      fedtl([...sim, '--row-averaging', '1', '--secure-aggregation']),
      fedtl([...sim, '--row-averaging', '1', '--dp-clip', '1', '--dp-epsilon', '8']),
    ]);
    expect(range.code).toBe(2);
    expect(range.output).toMatch(/rowAveraging \(--row-averaging\) of strategy fedavg must be an integer ≥ 0 and < 2, got 2/);
    expect(secure.code).toBe(2);
    expect(secure.output).toMatch(/rowAveraging \(--row-averaging 1\) cannot be combined with secure aggregation: .*run with --row-averaging 0/);
    expect(dp.code).toBe(2);
    expect(dp.output).toMatch(/cannot be combined with differential privacy/);
  }, 120_000);

  it('refuses secure aggregation with DP over sockets with exit 2', async () => {
    const result = await fedtl(['coordinator', '--identity', 'x', '--allow', 'x', '--classes', '2', '--secure-aggregation', '--dp-clip', '1', '--dp-epsilon', '8', '--out', path.join('/tmp', 'fedtl-never-written')]);
    expect(result.code).toBe(2);
    expect(result.output).toMatch(/secure aggregation with differential privacy over sockets is not available yet/);
  }, 60_000);
});
