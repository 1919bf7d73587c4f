/**
 * `simulate --mode socket --secure-aggregation`: a real coordinator and real socket clients run
 * SecAgg+ each round, and the run matches the same run without it (quantization error ~1e-6).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Logger } from '../../../shared/core/log.ts';
import { resolveConfig, type SimulationConfig } from '../../../scripts/simulation/presets.ts';
import { runSimulation } from '../../../scripts/simulation/run-simulation.ts';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

const small: Partial<SimulationConfig> = {
  clients: 4,
  rounds: 2,
  trainExamples: 400,
  testExamples: 200,
  head: { hidden: [], activation: 'relu', dropout: 0, classes: 10 },
  fractionFit: 1,
  minClients: 4,
  epochs: 1,
  batchSize: 16,
  learningRate: 0.05,
  dropoutRate: 0,
  stragglerRate: 0,
  mode: 'socket',
  seed: 5,
  baselines: { centralized: false, localOnly: false, scratch: false },
};

describe('simulate --mode socket --secure-aggregation', () => {
  let dir = '';
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('aggregates every round through SecAgg+ and matches the plain socket run', async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedtl-secagg-sim-'));
    const plain = await runSimulation(resolveConfig('mnist-mlp', small), { outDir: join(dir, 'plain'), logger: quiet });
    const secure = await runSimulation(resolveConfig('mnist-mlp', { ...small, secureAggregation: {} }), { outDir: join(dir, 'secure'), logger: quiet });
    expect(secure.report.rounds).toHaveLength(2);
    expect(secure.report.rounds.every((r) => r.participants === 4)).toBe(true);
    // The updates carried zero deltas, so a model that learned got them through the unmasked sum;
    // it follows the plain run to within the quantization error, round by round.
    expect(secure.report.rounds[1]!.loss!).toBeLessThan(secure.report.rounds[0]!.loss!);
    secure.report.rounds.forEach((r, i) => expect(Math.abs(r.loss! - plain.report.rounds[i]!.loss!)).toBeLessThan(1e-3));
    expect(secure.report.notes?.some((n) => n.includes('Secure aggregation'))).toBe(true);
    expect(secure.report.finalAccuracy).not.toBeNull();
    expect(Math.abs(secure.report.finalAccuracy! - plain.report.finalAccuracy!)).toBeLessThanOrEqual(0.02);
  }, 120_000);
});
