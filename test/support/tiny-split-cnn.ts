/**
 * A real split-class CNN base small enough for unit tests: 8×8 grayscale images, two 4-filter
 * convolutions, pretrained for one epoch on a related source task (bright left or right half),
 * and target images of other classes (bright top or bottom half).
 */
import path from 'node:path';
import { createDataset, type LabeledDataset } from '../../client/data/dataset.ts';
import { useTempWork } from './temp-work.ts';
import { buildSplitClassCnnBase } from '../../shared/bases/split-class-cnn.ts';
import type { Logger } from '../../shared/core/log.ts';
import { createRandom } from '../../shared/math/random.ts';
import { loadBase, type LoadedBase } from '../../shared/model/base-loader.ts';
import type { ConvFrontSpec } from '../../shared/model/head.ts';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** The base's convolutions (also the architecture of a from-scratch CNN on the same images). */
export const TINY_CONV: ConvFrontSpec = { inputShape: [8, 8, 1], layers: [{ filters: 4, kernelSize: 3, strides: 1 }, { filters: 4, kernelSize: 3, strides: 2 }] };

/** `count` 8x8 images of two classes: bright top half or bright bottom half, with noise. */
export function tinyImages(count: number, seed: string): LabeledDataset {
  const random = createRandom(seed);
  const pixels = new Uint8Array(count * 64);
  const labels = Int32Array.from({ length: count }, (_, i) => i % 2);
  for (let i = 0; i < count; i++) {
    for (let p = 0; p < 64; p++) pixels[i * 64 + p] = Math.min(255, (p < 32 === (labels[i] === 0) ? 150 : 40) + Math.floor(random.nextFloat() * 80));
  }
  return createDataset({ name: `synthetic-${seed}`, examples: { kind: 'image', pixels, width: 8, height: 8, channels: 1 }, labels, classNames: ['top', 'bottom'] });
}

/** Builds the base into `dir` (pretrained on left/right halves: a related source task with other classes) and loads it. */
export async function buildTinySplitCnn(dir: string): Promise<LoadedBase> {
  const random = createRandom('source');
  const count = 32;
  const pixels = new Uint8Array(count * 64);
  const labels = Int32Array.from({ length: count }, (_, i) => i % 2);
  for (let i = 0; i < count; i++) for (let p = 0; p < 64; p++) pixels[i * 64 + p] = Math.min(255, ((p % 8 < 4) === (labels[i] === 0) ? 180 : 20) + Math.floor(random.nextFloat() * 60));
  await buildSplitClassCnnBase(dir, { pixels, size: 8, channels: 1, labels, classes: 2, description: 'synthetic' }, { name: 'tiny-split', conv: TINY_CONV, epochs: 1, batchSize: 16, pretrainHidden: 8, logger: quiet });
  return loadBase(dir);
}


/**
 * Registers a file's `beforeAll` / `afterAll` for the tiny base: built into a temp folder of the
 * file's own, which also holds every feature cache (FEDTL_CACHE) until the file ends. Returns the
 * object the hook fills: read `base` inside tests, not at collection time.
 */
export function useTinySplitCnn(name: string): { base: LoadedBase } {
  const fixture = {} as { base: LoadedBase };
  useTempWork(
    name,
    async (work) => {
      fixture.base = await buildTinySplitCnn(path.join(work, 'base'));
    },
    () => fixture.base?.dispose(),
    60_000,
  );
  return fixture;
}
