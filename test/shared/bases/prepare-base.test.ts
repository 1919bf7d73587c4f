import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Logger } from '../../../shared/core/log.ts';
import { openBase, prepareBase, verifyBaseDir } from '../../../shared/bases/prepare-base.ts';
import { listBases, registerBase, resolveBase } from '../../../shared/bases/registry.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';

let cacheDir: string;
// Small vocabulary: these tests are about the cache, not about GloVe.
const glove = { vocabularySize: 300, sequenceLength: 16 } as const;

/** A logger that records warnings, so tests can see the cache decisions. */
function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, debug() {}, info() {}, warn: (m) => warnings.push(m), error() {} };
}

beforeAll(async () => {
  await selectBackend({ log: false });
  cacheDir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-prepare-'));
});
afterAll(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});

describe('registry', () => {
  it('lists the built-in bases and refuses duplicates', () => {
    expect(listBases().map((b) => b.name)).toEqual(expect.arrayContaining(['glove-100d', 'mobilenet-v2', 'identity']));
    expect(() => registerBase({ name: 'glove-100d', description: 'again', resolve: () => { throw new Error('unused'); } })).toThrow(
      expect.objectContaining({ code: 'BAD_CONFIG' }),
    );
  });

  it('resolves sized names and validates options', () => {
    expect(resolveBase('mobilenet-v2-128').recipe.key).toBe('mobilenet-v2-128');
    expect(resolveBase('mobilenet-v2').recipe.key).toBe('mobilenet-v2-224');
    expect(resolveBase('identity-784').recipe.key).toBe('identity-784');
    expect(resolveBase('glove-100d').recipe.key).toBe('glove-100d');
    expect(() => resolveBase('mobilenet-v2', { size: 100 })).toThrow(expect.objectContaining({ code: 'BAD_CONFIG' }));
    expect(() => resolveBase('identity')).toThrow(expect.objectContaining({ code: 'BAD_CONFIG' }));
    expect(() => resolveBase('resnet-50')).toThrow(expect.objectContaining({ code: 'BAD_CONFIG', message: expect.stringContaining('glove-100d') }));
  });
});

describe('glove-100d-100000w-512t', () => {
  it('is glove-100d with 100,000 words at 512 tokens, under its own cache key, and refuses other sizes with BAD_CONFIG', () => {
    expect(resolveBase('glove-100d-100000w-512t').recipe.key).toBe('glove-100d-100000w-512t');
    expect(resolveBase('glove-100d', { vocabularySize: 100_000, sequenceLength: 512 }).recipe.key).toBe('glove-100d-100000w-512t');
    expect(() => resolveBase('glove-100d-100000w-512t', { vocabularySize: 20_000 })).toThrow(expect.objectContaining({ code: 'BAD_CONFIG', message: expect.stringContaining('100000 words') }));
    expect(() => resolveBase('glove-100d-100000w-512t', { sequenceLength: 256 })).toThrow(expect.objectContaining({ code: 'BAD_CONFIG', message: expect.stringContaining('512') }));
  });
});

describe('glove-100d-512t', () => {
  it('is glove-100d at 512 tokens, under its own cache key', () => {
    expect(resolveBase('glove-100d-512t').recipe.key).toBe('glove-100d-512t');
    expect(resolveBase('glove-100d', { sequenceLength: 512 }).recipe.key).toBe('glove-100d-512t');
    expect(resolveBase('glove-100d-512t', { vocabularySize: 300 }).recipe.key).toBe('glove-100d-300w-512t');
    expect(() => resolveBase('glove-100d-512t', { sequenceLength: 256 })).toThrow(expect.objectContaining({ code: 'BAD_CONFIG', message: expect.stringContaining('512') }));
  });

  it('builds reproducibly: two caches give the same hash, verified, and not the 256-token one', async () => {
    const other = await mkdtemp(path.join(os.tmpdir(), 'fedtl-prepare-512-'));
    try {
      const [a, b] = [await prepareBase('glove-100d-512t', { cacheDir, vocabularySize: 300 }), await prepareBase('glove-100d-512t', { cacheDir: other, vocabularySize: 300 })];
      const [sa, sb] = [await verifyBaseDir(a), await verifyBaseDir(b)];
      expect(sa.input).toMatchObject({ kind: 'text', sequenceLength: 512 });
      expect(sa.hash).toBe(sb.hash);
      expect(sa.files).toEqual(sb.files);
      const short = await verifyBaseDir(await prepareBase('glove-100d', { cacheDir, vocabularySize: 300 }));
      expect(short.hash).not.toBe(sa.hash);
      // Same words and vectors: only the input length differs.
      expect(short.files).toEqual(sa.files);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });
});

describe('prepareBase', () => {
  it('builds once, then returns the verified cache without rebuilding it', async () => {
    const dir = await prepareBase('glove-100d', { cacheDir, ...glove });
    expect(dir).toBe(path.join(cacheDir, 'glove-100d-300w-16t'));
    const built = (await stat(path.join(dir, 'weights.bin'))).mtimeMs;
    expect(await prepareBase('glove-100d', { cacheDir, ...glove })).toBe(dir);
    expect((await stat(path.join(dir, 'weights.bin'))).mtimeMs).toBe(built);
    // No temporary directories are left behind.
    expect((await readdir(cacheDir)).filter((name) => name.startsWith('.tmp-'))).toEqual([]);
  });

  it('shares one build between concurrent calls', async () => {
    const [a, b] = await Promise.all([prepareBase('identity-5', { cacheDir }), prepareBase('identity', { cacheDir, size: 5 })]);
    expect(a).toBe(b);
  });

  it.each([
    ['a flipped weight byte', async (dir: string) => {
      const weights = await readFile(path.join(dir, 'weights.bin'));
      weights[100]! ^= 0xff;
      await writeFile(path.join(dir, 'weights.bin'), weights);
    }],
    ['truncated weights', async (dir: string) => truncate(path.join(dir, 'weights.bin'), 1000)],
    ['an edited vocabulary', async (dir: string) => writeFile(path.join(dir, 'vocabulary.json'), '["<pad>","<oov>","evil"]')],
    ['a missing sidecar', async (dir: string) => rm(path.join(dir, 'fedtl-base.json'))],
    ['a truncated model.json', async (dir: string) => truncate(path.join(dir, 'model.json'), 50)],
  ])('detects %s and rebuilds', async (_what, corrupt) => {
    const dir = await prepareBase('glove-100d', { cacheDir, ...glove });
    const sidecar = await verifyBaseDir(dir);
    await corrupt(dir);
    await expect(verifyBaseDir(dir)).rejects.toMatchObject({ code: expect.stringMatching(/HASH_MISMATCH|CORRUPT_FILE|BAD_MODEL/) });
    const logger = recordingLogger();
    expect(await prepareBase('glove-100d', { cacheDir, ...glove, logger })).toBe(dir);
    expect(logger.warnings.join('\n')).toMatch(/invalid.*rebuilding/);
    expect((await verifyBaseDir(dir)).hash).toBe(sidecar.hash);
  });

  it('refuses to load a tampered base directly', async () => {
    const dir = await prepareBase('glove-100d', { cacheDir, ...glove });
    const weights = await readFile(path.join(dir, 'weights.bin'));
    weights[7]! ^= 1;
    await writeFile(path.join(dir, 'weights.bin'), weights);
    await expect(openBase(dir)).rejects.toMatchObject({ code: 'HASH_MISMATCH', message: expect.stringContaining(dir) });
    await prepareBase('glove-100d', { cacheDir, ...glove, logger: recordingLogger() });
  });
});

describe('openBase', () => {
  it('opens by name or by directory, with the same hash', async () => {
    const byName = await openBase('glove-100d', { cacheDir, ...glove });
    const byDir = await openBase(byName.dir);
    expect(byDir.hash).toBe(byName.hash);
    expect(byDir.hash).toBe(byName.sidecar?.hash);
    byName.dispose();
    byDir.dispose();
  });

  it('opens the identity base from the cache', async () => {
    const base = await openBase('identity-4', { cacheDir });
    expect(base.embeddingSize).toBe(4);
    expect(base.input).toEqual({ kind: 'tensor', size: 4 });
    const x = tf.ones([2, 4]);
    const e = base.embed(x);
    expect(e.shape).toEqual([2, 4]);
    tf.dispose([x, e]);
    base.dispose();
  });
});
