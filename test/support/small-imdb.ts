/**
 * The fixture of the simulation tests that run a small text federation: a small GloVe base and 180
 * IMDB reviews (120 for training, 60 for testing), with the base and every feature cache in a temp
 * folder of the file's own, so runs neither read nor leave anything in the repository's cache.
 */
import path from 'node:path';
import { subset, type LabeledDataset } from '../../client/data/dataset.ts';
import { loadImdb } from '../../client/data/imdb.ts';
import { resolveConfig, type SimulationConfig } from '../../scripts/simulation/presets.ts';
import { featuresOf, simulationCache } from '../../scripts/simulation/simulation-data.ts';
import { openBase } from '../../shared/bases/prepare-base.ts';
import type { LoadedBase } from '../../shared/model/base-loader.ts';
import type { FeatureMatrix } from '../../shared/model/feature-matrix.ts';
import { useTempWork } from './temp-work.ts';
import { SMALL_GLOVE } from './text-model.ts';

export interface SmallImdb {
  glove: LoadedBase;
  train: LabeledDataset;
  test: LabeledDataset;
  /** The test reviews through the base, from the fixture's own cache. */
  testFeatures: FeatureMatrix;
}

/**
 * Registers the fixture's `beforeAll` / `afterAll` (call it at the top of a file) and returns the
 * object they fill: read its fields inside tests or later hooks, not at collection time. `name`
 * names the temp folder and the data sets.
 */
export function useSmallImdb(name: string): SmallImdb {
  const fixture = {} as SmallImdb;
  useTempWork(
    name,
    async (work) => {
      fixture.glove = await openBase('glove-100d', { cacheDir: path.join(work, 'bases'), ...SMALL_GLOVE });
      const reviews = await loadImdb({ limit: 180, seed: 4 });
      fixture.train = subset(reviews, Array.from({ length: 120 }, (_, i) => i), { name: `${name}-train` });
      fixture.test = subset(reviews, Array.from({ length: 60 }, (_, i) => 120 + i), { name: `${name}-test` });
      fixture.testFeatures = await featuresOf(fixture.glove, fixture.test, simulationCache());
    },
    () => fixture.glove?.dispose(),
    120_000,
  );
  return fixture;
}

/**
 * The `imdb-glove` preset cut down to the fixture's data: 2 clients, every client every round,
 * one epoch, no faults, no baselines, seed 5, virtual mode. `overrides` set the rest.
 */
export function smallImdbConfig(overrides: Partial<SimulationConfig>): SimulationConfig {
  return resolveConfig('imdb-glove', {
    mode: 'virtual',
    clients: 2,
    rounds: 4,
    trainExamples: 120,
    testExamples: 60,
    fractionFit: 1,
    minClients: 2,
    epochs: 1,
    batchSize: 16,
    learningRate: 0.05,
    strategy: 'fedavg',
    dropoutRate: 0,
    stragglerRate: 0,
    seed: 5,
    baselines: { centralized: false, localOnly: false, scratch: false },
    ...overrides,
  });
}
