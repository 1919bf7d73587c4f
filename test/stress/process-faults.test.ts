/**
 * Fault injection in `--mode process`: three real `fedtl client` processes, three rounds, with
 * dropout and straggler rates whose seeded draws (scripts/simulation/process-faults.ts) crash at
 * least one client (SIGKILL mid-round, then a restart with the same identity and cache) and stall at
 * least one (SIGSTOP past the round's deadline). Every round completes, each drops exactly the
 * clients that failed in it, and a crashed client is back for the rounds after its crash.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { processFault, type ProcessFault } from '../../scripts/simulation/process-faults.ts';
import { resolveConfig } from '../../scripts/simulation/presets.ts';
import { runSimulation } from '../../scripts/simulation/run-simulation.ts';
import type { Logger } from '../../shared/core/log.ts';
import { writeResult } from './stress-support.ts';

const CLIENTS = 3;
const ROUNDS = 3;
const RATES = { dropoutRate: 0.2, stragglerRate: 0.2 };

/** Faults the seed draws, round by round (every client is selected every round: fraction 1, minClients 3). */
function plan(seed: number): Array<Array<ProcessFault | null>> {
  return Array.from({ length: ROUNDS }, (_, r) => Array.from({ length: CLIENTS }, (_, i) => processFault(seed, r + 1, i, RATES)));
}

describe('process mode with injected crashes and stalls', () => {
  const dirs: string[] = [];

  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('completes every round, dropping exactly the clients that crashed or stalled in it', async () => {
    // Prepare: the first seed whose draws hold a crash before the last round, a stall, and at least one healthy client per round.
    const seed = Array.from({ length: 500 }, (_, s) => s).find((s) => {
      const faults = plan(s);
      return faults.slice(0, -1).some((round) => round.includes('crash')) && faults.some((round) => round.includes('stall')) && faults.every((round) => round.some((f) => f === null));
    })!;
    const faults = plan(seed);
    const dir = await mkdtemp(join(tmpdir(), 'fedtl-process-faults-'));
    dirs.push(dir);
    const config = resolveConfig('mnist-mlp', {
      mode: 'process',
      clients: CLIENTS,
      rounds: ROUNDS,
      fractionFit: 1,
      minClients: CLIENTS,
      trainExamples: 300,
      testExamples: 200,
      head: { hidden: [32], activation: 'relu', dropout: 0, classes: 10 },
      epochs: 2,
      batchSize: 16,
      seed,
      ...RATES,
      roundTimeoutMs: 15_000,
      baselines: { centralized: false, localOnly: false, scratch: false },
    });
    const logger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

    // Execute.
    const { report } = await runSimulation(config, { outDir: dir, logger });

    // Assert.
    expect(report.rounds).toHaveLength(ROUNDS);
    for (const [r, round] of report.rounds.entries()) {
      const failed = faults[r]!.filter((f) => f !== null).length;
      expect({ round: r + 1, dropped: round.dropped, participants: round.participants }).toEqual({ round: r + 1, dropped: failed, participants: CLIENTS - failed });
    }
    await writeResult('process-faults.json', { seed, rates: RATES, faults, rounds: report.rounds.map((r) => ({ participants: r.participants, dropped: r.dropped })) });
  });
});
