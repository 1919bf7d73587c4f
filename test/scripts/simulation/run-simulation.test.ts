/**
 * End to end in virtual mode on real MNIST digits (a few hundred, a small head): the whole pipeline
 * from data to report.json + report.html, its determinism, and the fault knobs.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIdentityBase } from '../../../shared/bases/identity.ts';
import type { Logger } from '../../../shared/core/log.ts';
import { partition } from '../../../shared/math/partition.ts';
import { createRandom } from '../../../shared/math/random.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';
import { clientOrder, groupByClient } from '../../../scripts/simulation/client-shards.ts';
import { resolveConfig, type SimulationConfig } from '../../../scripts/simulation/presets.ts';
import { VirtualFederation } from '../../../scripts/simulation/run-federated.ts';
import { runSimulation, summaryLines, type SimulationResult } from '../../../scripts/simulation/run-simulation.ts';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

const tiny: Partial<SimulationConfig> = {
  clients: 6,
  rounds: 3,
  trainExamples: 480,
  testExamples: 200,
  head: { hidden: [32], activation: 'relu', dropout: 0, classes: 10 },
  fractionFit: 0.5,
  minClients: 2,
  epochs: 1,
  batchSize: 16,
  learningRate: 0.05,
  dropoutRate: 0.2,
  mode: 'virtual',
  seed: 5,
  centralizedEpochs: 2,
  localOnlyClients: 4,
  // Raw pixels through the identity base: exercises the from-scratch run on the same clients.
  scratchFeatures: ['pixels'],
  baselines: { centralized: true, localOnly: true, scratch: true },
};

/** The numbers of a report, without what legitimately differs between runs (times, memory). */
function numbers(result: SimulationResult) {
  const { report } = result;
  const strip = (rounds: typeof report.rounds) => rounds.map(({ seconds: _seconds, ...rest }) => rest);
  return {
    rounds: strip(report.rounds),
    centralized: report.baselines.centralized,
    localOnly: report.baselines.localOnly,
    scratch: report.baselines.scratch ? strip(report.baselines.scratch.rounds) : null,
    partition: report.partition,
    evaluation: report.evaluation,
    clients: report.clients,
    comparison: report.comparison,
  };
}


describe('runSimulation, virtual mode, end to end', () => {
  let dir: string;
  let first: SimulationResult;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedtl-sim-test-'));
    first = await runSimulation(resolveConfig('mnist-mlp', tiny), { outDir: join(dir, 'a'), logger: quiet });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes report.json and report.html with the expected fields', async () => {
    const json = JSON.parse(await readFile(join(dir, 'a', 'report.json'), 'utf8')) as Record<string, unknown>;
    for (const field of ['title', 'createdAt', 'config', 'seed', 'backend', 'partition', 'labelNames', 'rounds', 'baselines', 'wallSeconds', 'finalAccuracy', 'peakRssMb', 'notes']) {
      expect(json, field).toHaveProperty(field);
    }
    const { report } = first;
    expect(report.seed).toBe(5);
    expect(report.labelNames).toHaveLength(10);
    expect(report.rounds.map((r) => r.round)).toEqual([1, 2, 3]);
    for (const round of report.rounds) {
      expect(round.accuracy).toBeGreaterThanOrEqual(0);
      expect(round.accuracy).toBeLessThanOrEqual(1);
      expect(round.participants + round.dropped).toBe(3); // C = 0.5 of 6 clients
      expect(round.bytesUp).toBeGreaterThan(0);
    }
    expect(report.finalAccuracy).toBe(report.rounds[2]!.accuracy);
    expect(report.baselines.centralized!.accuracy).toBeGreaterThan(0.1);
    expect(report.baselines.localOnly!.clients).toBe(4);
    expect(report.baselines.scratch!.rounds).toHaveLength(3);
    expect(report.peakRssMb).toBeGreaterThan(0);
    const html = await readFile(join(dir, 'a', 'report.html'), 'utf8');
    expect(html).toMatch(/^<!doctype html>/i);
    expect(html).toContain('<svg');
    expect(html).toContain('mnist-mlp');
  });

  it('scores the final model class by class, per client and against every baseline, consistently with the rounds', () => {
    const { report } = first;
    const evaluation = report.evaluation!;
    // The confusion matrix comes from the final weights predicted afresh: its accuracy is the last round's.
    expect(evaluation.examples).toBe(200);
    expect(evaluation.confusion.flat().reduce((a, b) => a + b, 0)).toBe(200);
    expect(evaluation.metrics.accuracy).toBeCloseTo(report.finalAccuracy!, 6);
    // Every client of the partition has a view, numbered as the partition; the 4 local-only clients are compared.
    expect(report.clients!.map((c) => c.client)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(report.clients!.map((c) => c.examples)).toEqual(report.partition.sizes);
    const compared = report.clients!.filter((c) => c.localOnly !== null);
    expect(compared.map((c) => c.client)).toEqual(report.baselines.localOnly!.perClient!.map((c) => c.client));
    expect(compared).toHaveLength(4);
    for (const view of report.clients!) expect(view.federated).toBeGreaterThanOrEqual(0);
    // The local-only mean is the mean of the per-client accuracies the table shows.
    const perClient = report.baselines.localOnly!.perClient!;
    expect(report.baselines.localOnly!.mean).toBeCloseTo(perClient.reduce((a, c) => a + c.accuracy, 0) / perClient.length, 12);
    expect(report.comparison!.map((r) => r.role)).toEqual(['federated', 'centralized', 'local-only', 'from-scratch']);
    expect(report.comparison![0]!.n).toBe(200);
    expect(report.comparison![0]!.interval!.low).toBeLessThanOrEqual(report.finalAccuracy!);
    expect(report.comparison![0]!.interval!.high).toBeGreaterThanOrEqual(report.finalAccuracy!);
    expect(first.reportHtml).toContain('<section id="confusion">');
    expect(first.reportHtml).toContain('<section id="clients">');
    expect(first.reportHtml).toContain('<section id="comparison">');
    expect(summaryLines(first, 'out').join('\n')).toMatch(/federated vs alone \(own label mix\) +better for \d of 4 clients, by [+−]?\d+\.\d pts on average/);
  });

  it('gives identical numbers for the same seed', async () => {
    const again = await runSimulation(resolveConfig('mnist-mlp', tiny), { outDir: join(dir, 'b'), logger: quiet });
    expect(numbers(again)).toEqual(numbers(first));
  });
});

describe('VirtualFederation faults', () => {
  /** 20 clients of a 2-class, 8-feature problem; every client selected every round. */
  async function run(overrides: Partial<SimulationConfig>) {
    await selectBackend({ log: false });
    const random = createRandom('faults');
    const rows = 400;
    const values = new Float32Array(rows * 8).map(() => random.normal());
    const labels = Int32Array.from({ length: rows }, (_, i) => i % 2);
    const config = resolveConfig('imdb-glove', { clients: 20, rounds: 4, fractionFit: 1, minClients: 2, trainExamples: rows, testExamples: 100, epochs: 1, mode: 'virtual', dropoutRate: 0, stragglerRate: 0, trainable: null, ...overrides });
    const shards = groupByClient(clientOrder(partition(labels, { scheme: 'iid', numClients: 20, seed: 1 })), { values, rows, cols: 8 }, labels);
    const federation = new VirtualFederation({
      config,
      base: createIdentityBase(8),
      baseDirectory: null,
      shards,
      testFeatures: { values: values.subarray(0, 100 * 8), rows: 100, cols: 8 },
      testLabels: labels.subarray(0, 100),
      mode: 'virtual',
      label: 'faults',
      logger: quiet,
    });
    try {
      return (await federation.run()).history;
    } finally {
      federation.dispose();
    }
  }

  it('without faults, every selected client contributes', async () => {
    const history = await run({});
    expect(history.map((r) => [r.selected, r.accepted, r.dropped])).toEqual(Array(4).fill([20, 20, 0]));
  });

  it('dropouts and stragglers reduce the participants at about the configured rates', async () => {
    for (const rates of [{ dropoutRate: 0.5 }, { stragglerRate: 0.5 }]) {
      const history = await run(rates);
      const dropped = history.reduce((sum, r) => sum + r.dropped, 0);
      for (const round of history) expect(round.accepted + round.dropped).toBe(round.selected);
      // 80 draws at p = 0.5: outside [20, 60] has probability < 1e-5.
      expect(dropped).toBeGreaterThanOrEqual(20);
      expect(dropped).toBeLessThanOrEqual(60);
    }
  });
});
