/**
 * Serving the base (server/base-server.ts) from a real directory: chunks are the files' bytes,
 * whether held in memory or read from disk; requests outside the described files are refused; a
 * file changed on disk after the coordinator described it is refused instead of served; and a
 * client's ensureBase downloads a verified copy through it.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureBase } from '../../client/base-cache.ts';
import { BaseChunks, describeBaseDirectory } from '../../server/base-server.ts';
import type { BaseDescriptor } from '../../shared/protocol/protocol.ts';

describe('BaseChunks', () => {
  let dir = '';
  let shard: Buffer;
  let descriptor: BaseDescriptor;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-base-server-'));
    shard = randomBytes(300_000);
    await writeFile(path.join(dir, 'weights.bin'), shard);
    await writeFile(path.join(dir, 'model.json'), '{"format":"test"}');
    descriptor = await describeBaseDirectory(path.join(dir), 'test-base', 'c'.repeat(64));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each([
    ['held in memory', undefined],
    ['read from disk (over the memory budget)', 0],
  ])('serves exactly the files\' bytes, %s', async (_how, maxHeldBytes) => {
    const chunks = new BaseChunks(dir, descriptor, maxHeldBytes === undefined ? {} : { maxHeldBytes });
    const read = async (offset: number, length: number) => Buffer.from(await chunks.read({ hash: descriptor.hash, file: 'weights.bin', offset, length }));
    expect((await read(0, 65_536)).equals(shard.subarray(0, 65_536))).toBe(true);
    expect((await read(250_000, 65_536)).equals(shard.subarray(250_000))).toBe(true); // the last chunk is short
    expect(Buffer.from(await chunks.read({ hash: descriptor.hash, file: 'model.json', offset: 3, length: 6 })).toString()).toBe('ormat"');
  });

  it('refuses another base, an unknown file and an offset past the end', async () => {
    const chunks = new BaseChunks(dir, descriptor);
    await expect(chunks.read({ hash: 'd'.repeat(64), file: 'weights.bin', offset: 0, length: 10 })).rejects.toMatchObject({ code: 'HASH_MISMATCH' });
    await expect(chunks.read({ hash: descriptor.hash, file: 'other.bin', offset: 0, length: 10 })).rejects.toMatchObject({ code: 'BAD_MESSAGE' });
    await expect(chunks.read({ hash: descriptor.hash, file: 'weights.bin', offset: 300_000, length: 10 })).rejects.toMatchObject({ code: 'BAD_MESSAGE' });
  });

  it('serves the bytes it described even if the file changes on disk afterwards', async () => {
    const chunks = new BaseChunks(dir, descriptor);
    await writeFile(path.join(dir, 'weights.bin'), randomBytes(300_000));
    expect(Buffer.from(await chunks.read({ hash: descriptor.hash, file: 'weights.bin', offset: 0, length: 1000 })).equals(shard.subarray(0, 1000))).toBe(true);
  });

  it('refuses to serve a file that no longer matches its description (HASH_MISMATCH), until it is restored', async () => {
    // A descriptor made elsewhere (a copy): the file is read from disk and checked against it.
    const chunks = new BaseChunks(dir, { ...descriptor, files: [...descriptor.files] });
    const tampered = Buffer.from(shard);
    tampered[5] = tampered[5]! ^ 1;
    await writeFile(path.join(dir, 'weights.bin'), tampered);
    await expect(chunks.read({ hash: descriptor.hash, file: 'weights.bin', offset: 0, length: 10 })).rejects.toMatchObject({ code: 'HASH_MISMATCH' });
    await writeFile(path.join(dir, 'weights.bin'), shard);
    expect(Buffer.from(await chunks.read({ hash: descriptor.hash, file: 'weights.bin', offset: 0, length: 10 })).equals(shard.subarray(0, 10))).toBe(true);
  });

  it('gives a client a verified copy through ensureBase', async () => {
    const chunks = new BaseChunks(dir, descriptor);
    const cache = await mkdtemp(path.join(os.tmpdir(), 'fedtl-base-client-'));
    try {
      const where = await ensureBase(cache, descriptor, (file, offset, length) => chunks.read({ hash: descriptor.hash, file, offset, length }), { chunkBytes: 64 * 1024 });
      expect((await readFile(path.join(where, 'weights.bin'))).equals(shard)).toBe(true);
    } finally {
      await rm(cache, { recursive: true, force: true });
    }
  });
});
