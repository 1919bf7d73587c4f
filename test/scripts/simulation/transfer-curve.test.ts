import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Logger } from '../../../shared/core/log.ts';
import { resolveConfig, type SimulationConfig } from '../../../scripts/simulation/presets.ts';
import type { RunSimulationOptions, runSimulation } from '../../../scripts/simulation/run-simulation.ts';
import { configAtSize, curveLines, parseCurveSizes, renderCurveHtml, runTransferCurve, type TransferCurve } from '../../../scripts/simulation/transfer-curve.ts';

describe('transfer curve', () => {
  it('parses sizes into increasing distinct integers and refuses anything else', () => {
    expect(parseCurveSizes('2000, 100,500,100')).toEqual([100, 500, 2000]);
    expect(() => parseCurveSizes('100,abc')).toThrow(/"abc" is not a positive integer/);
    expect(() => parseCurveSizes('0')).toThrow(/"0" is not a positive integer/);
    expect(() => parseCurveSizes(' , ')).toThrow(/at least one/);
  });

  it('gives every client at least 5 examples at small sizes and skips the local-only baseline', () => {
    const config = resolveConfig('imdb-glove');
    const small = configAtSize(config, 40);
    expect(small.clients).toBe(8);
    expect(small.minClients).toBe(8);
    expect(small.trainExamples).toBe(40);
    expect(small.baselines.localOnly).toBe(false);
    expect(configAtSize(config, 2000).clients).toBe(config.clients);
  });

  it('draws one chart with a line per method and prints a table', () => {
    const curve: TransferCurve = {
      preset: 'imdb-glove',
      seed: 42,
      fineTune: null,
      points: [
        { trainExamples: 100, clients: 20, featureExtraction: 0.6, fineTuned: 0.7, scratch: 0.55, scratchFeatures: 'tf-idf', centralized: 0.65, centralizedFineTuned: 0.8, wallSeconds: 10 },
        { trainExamples: 500, clients: 20, featureExtraction: 0.68, fineTuned: null, scratch: 0.75, scratchFeatures: 'tf-idf', centralized: 0.72, centralizedFineTuned: null, wallSeconds: 20 },
      ],
    };
    const html = renderCurveHtml(curve);
    expect(html).toContain('<svg');
    expect(html).toContain('federated from scratch (tf-idf)');
    expect(html).toContain('<td>75.0\u00a0% (tf-idf)</td>');
    const text = curveLines(curve, 'out').join('\n');
    expect(text).toMatch(/100\s+20\s+60\.0\s%\s+70\.0\s%\s+55\.0\s%\s+65\.0\s%\s+80\.0\s%/);
    expect(text).toMatch(/500\s+20\s+68\.0\s%\s+—\s+75\.0\s%\s+72\.0\s%/);
    expect(html).toContain('federated, pretrained base (fine-tuned)');
    expect(html).toContain('<td>70.0\u00a0%</td>');
  });

  it('runs feature extraction with its baselines, then the same federation fine-tuning with the preset recipe', async () => {
    const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
    const calls: SimulationConfig[] = [];
    const prefetched: unknown[] = [];
    // Stands in for the whole simulation (tested in run-simulation and fine-tune-modes tests): it
    // records what the curve asks for and answers with a report whose accuracy says which run it was.
    const simulate = (async (config: SimulationConfig, options: RunSimulationOptions) => {
      calls.push(config);
      prefetched.push(options.prefetch);
      const accuracy = (config.trainable ? 0.75 : 0.5) + (config.trainExamples === 100 ? 0 : 0.125); // exact in binary
      const centralized = config.baselines.centralized ? { centralized: { accuracy: config.trainable ? 0.875 : 0.75 } } : {};
      return { report: { finalAccuracy: accuracy, wallSeconds: 1, baselines: { ...centralized, ...(config.baselines.scratch ? { scratch: { features: 'tf-idf', accuracy: 0.6, rounds: [] } } : {}) } } };
    }) as unknown as typeof runSimulation; // a partial report: the curve reads only these fields
    const dir = await mkdtemp(join(tmpdir(), 'fedtl-curve-'));
    try {
      const config = resolveConfig('imdb-glove');
      const curve = await runTransferCurve(config, [100, 2000], { outDir: dir, logger: quiet, simulate });
      expect(calls.map((c) => [c.trainExamples, c.trainable === null ? 'fe' : 'ft', c.baselines.centralized, c.baselines.scratch])).toEqual([
        [100, 'fe', true, true],
        [100, 'ft', true, false],
        [2000, 'fe', true, true],
        [2000, 'ft', true, false],
      ]);
      expect(calls[1]!.trainable).toEqual(config.fineTune);
      // imdb-glove fine-tunes on its own base, so the feature-extraction run prefetches nothing for it.
      expect(prefetched).toEqual([undefined, undefined, undefined, undefined]);
      // A recipe on the preset's own base: the feature-extraction run takes the recipe's boundary
      // features in its own pass of the base.
      prefetched.length = 0;
      const sameBase = { ...config, fineTuneBase: undefined };
      await runTransferCurve(sameBase, [100], { outDir: dir, logger: quiet, simulate });
      expect(prefetched).toEqual([config.fineTune, undefined]);
      // The recipe's own strategy for the fine-tuning run; the preset's for feature extraction.
      expect([calls[0]!.strategy, calls[1]!.strategy]).toEqual([config.strategy, config.fineTuneStrategy!.strategy]);
      // And its own base (imdb-glove fine-tunes at 512 tokens); feature extraction keeps the preset's.
      expect([calls[0]!.base, calls[1]!.base]).toEqual([config.base, config.fineTuneBase]);
      // The fine-tuned run is the same federation: clients, rounds and seed as its feature-extraction run.
      expect([calls[1]!.clients, calls[1]!.rounds, calls[1]!.seed]).toEqual([calls[0]!.clients, calls[0]!.rounds, calls[0]!.seed]);
      // Centralized: feature extraction from the first run, fine-tuning (same schedule, pooled data) from the second.
      expect(curve.points.map((p) => [p.featureExtraction, p.fineTuned, p.centralized, p.centralizedFineTuned, p.scratchFeatures])).toEqual([
        [0.5, 0.75, 0.75, 0.875, 'tf-idf'],
        [0.625, 0.875, 0.75, 0.875, 'tf-idf'],
      ]);
      const saved = JSON.parse(await readFile(join(dir, 'curve.json'), 'utf8')) as TransferCurve;
      expect(saved.fineTune).toEqual(config.fineTune);

      // A shorter run (--rounds 20) drops the rate-decay stages it never reaches instead of refusing the recipe.
      calls.length = 0;
      await runTransferCurve({ ...config, rounds: 20 }, [100], { outDir: dir, logger: quiet, simulate });
      expect(calls[1]!.trainable!.stages.at(-1)!.fromRound).toBe(20);

      // Without a recipe there is no fine-tuning series, and no second run.
      calls.length = 0;
      const plain = await runTransferCurve({ ...config, fineTune: undefined, trainable: null }, [100], { outDir: dir, logger: quiet, simulate });
      expect(calls).toHaveLength(1);
      expect(plain.points[0]!.fineTuned).toBeNull();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
