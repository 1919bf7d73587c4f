import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILTIN_DATA_TYPES, createDefaultRegistry, getLoader, LoaderRegistry, loaderNames, registerLoader, type DataLoader } from '../../../client/data/index.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedtl-registry-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const fake: DataLoader = {
  name: 'fake',
  description: 'test loader',
  needsPath: false,
  load: () => Promise.reject(new Error('not used')),
};

describe('loader registry', () => {
  it('starts with every built-in data type', () => {
    expect(loaderNames()).toEqual([...BUILTIN_DATA_TYPES]);
    for (const name of BUILTIN_DATA_TYPES) expect(getLoader(name).name).toBe(name);
  });

  it('refuses duplicates and lists known names for an unknown one', () => {
    const registry = new LoaderRegistry();
    registry.register(fake);
    expect(() => registry.register(fake)).toThrow(expect.objectContaining({ code: 'BAD_CONFIG', message: expect.stringContaining("'fake' is already registered") }));
    expect(() => registerLoader({ ...fake, name: 'mnist' })).toThrow(expect.objectContaining({ code: 'BAD_CONFIG' }));
    expect(() => getLoader('cifar')).toThrow(expect.objectContaining({ code: 'BAD_CONFIG', message: expect.stringContaining('image-folder, csv, jsonl, imdb, mnist, fashion-mnist') }));
    expect(registry.has('fake')).toBe(true);
  });

  it('loads through the registry with split and limit applied', async () => {
    const registry = createDefaultRegistry();
    const path = join(dir, 'd.csv');
    await writeFile(path, 'f,label\n' + Array.from({ length: 20 }, (_, i) => `${i},${i % 2 ? 'b' : 'a'}`).join('\n'));
    const csv = registry.get('csv');
    expect(csv.needsPath).toBe(true);
    const test = await csv.load({ path, split: 'test', testFraction: 0.2, seed: 1 });
    const train = await csv.load({ path, split: 'train', testFraction: 0.2, seed: 1 });
    expect([train.size, test.size]).toEqual([16, 4]);
    const limited = await csv.load({ path, limit: 5, seed: 1 });
    expect(limited.size).toBe(5);
    await expect(csv.load({})).rejects.toMatchObject({ code: 'BAD_CONFIG', message: expect.stringContaining('--data') });
    await expect(registry.get('image-folder').load({ path: dir })).rejects.toMatchObject({ code: 'BAD_CONFIG' });
    await expect(registry.get('mnist').load({ split: 'all' })).rejects.toMatchObject({ code: 'BAD_CONFIG' });
    const mnist = await registry.get('mnist').load({ split: 'test', limit: 10, format: 'tensor' });
    expect(mnist.examples).toMatchObject({ kind: 'tensor', rowSize: 784 });
  });
});
