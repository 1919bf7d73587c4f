/**
 * The base download (client/base-cache.ts) without sockets: a ChunkReader that fails part-way
 * leaves a `.part` file that the next attempt resumes from (no byte written twice); a corrupted
 * chunk is caught by the SHA-256 check (HASH_MISMATCH), the `.part` is discarded, and the next
 * attempt fetches the file whole; a verified cache downloads nothing.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureBase, type ChunkReader } from '../../client/base-cache.ts';
import type { BaseDescriptor } from '../../shared/protocol/protocol.ts';

const CHUNK = 64 * 1024;
const hex = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Serves `files` from memory, counting bytes; `fault` may throw or alter a chunk. */
function reader(files: Record<string, Buffer>, fault?: (call: number, chunk: Buffer) => Buffer): ChunkReader & { bytes: number; calls: number } {
  const read = Object.assign(
    async (file: string, offset: number, length: number): Promise<Uint8Array> => {
      const call = read.calls++;
      let chunk: Buffer = Buffer.from(files[file]!.subarray(offset, offset + length));
      if (fault) chunk = fault(call, chunk);
      read.bytes += chunk.length;
      return chunk;
    },
    { bytes: 0, calls: 0 },
  );
  return read;
}

describe('ensureBase', () => {
  let dir = '';
  let files: Record<string, Buffer>;
  let descriptor: BaseDescriptor;
  let total = 0;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-base-cache-'));
    // 10.5 chunks of weights (the last chunk is short) and a small model.json.
    files = { 'model.json': Buffer.from(JSON.stringify({ format: 'layers-model' })), 'weights.bin': randomBytes(10 * CHUNK + CHUNK / 2) };
    descriptor = {
      name: 'test-base',
      hash: 'c'.repeat(64),
      files: Object.entries(files).map(([name, bytes]) => ({ name, bytes: bytes.length, sha256: hex(bytes) })),
    };
    total = Object.values(files).reduce((sum, b) => sum + b.length, 0);
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('resumes a download that failed part-way from its .part file, fetching each byte once', async () => {
    // Prepare: the connection "drops" on the 5th chunk request (model.json + 3 chunks of weights done).
    const failing = reader(files, (call, chunk) => {
      if (call === 4) throw new Error('socket has been disconnected');
      return chunk;
    });
    const progress: number[] = [];

    // Execute
    await expect(ensureBase(dir, descriptor, failing, { chunkBytes: CHUNK })).rejects.toThrow('disconnected');
    const partial = path.join(dir, descriptor.hash, 'weights.bin.part');
    const partialSize = (await stat(partial)).size;
    const healthy = reader(files);
    const out = await ensureBase(dir, descriptor, healthy, { chunkBytes: CHUNK, onProgress: (done) => progress.push(done) });

    // Assert: the second attempt fetched only what was missing. The first had up to 3 more chunk
    // requests in flight (4 by default) when the 5th failed; their replies were dropped, never written.
    expect(partialSize).toBe(3 * CHUNK);
    expect(healthy.bytes).toBe(files['weights.bin']!.length - partialSize);
    expect(failing.bytes).toBeGreaterThanOrEqual(total - healthy.bytes);
    expect(failing.bytes).toBeLessThanOrEqual(total - healthy.bytes + 3 * CHUNK);
    expect((await readFile(path.join(out, 'weights.bin'))).equals(files['weights.bin']!)).toBe(true);
    expect((await readdir(out)).sort()).toEqual(['model.json', 'weights.bin']);
    expect(progress.at(-1)).toBe(total);
    // Progress counts the resumed bytes as done from the start; it never goes backwards.
    expect(progress.every((value, i) => i === 0 || value >= progress[i - 1]!)).toBe(true);
  });

  it('discards the .part and reports HASH_MISMATCH when a chunk arrives corrupted, then fetches the file whole', async () => {
    const corrupting = reader(files, (call, chunk) => {
      if (call === 3) chunk[17]! ^= 0xff;
      return chunk;
    });

    await expect(ensureBase(dir, descriptor, corrupting, { chunkBytes: CHUNK })).rejects.toMatchObject({ code: 'HASH_MISMATCH' });
    const afterFailure = await readdir(path.join(dir, descriptor.hash));
    const healthy = reader(files);
    const out = await ensureBase(dir, descriptor, healthy, { chunkBytes: CHUNK });

    expect(afterFailure.sort()).toEqual(['model.json']);
    expect(healthy.bytes).toBe(files['weights.bin']!.length);
    expect((await readFile(path.join(out, 'weights.bin'))).equals(files['weights.bin']!)).toBe(true);
  });

  it('keeps several chunk requests in flight and still writes them in order', async () => {
    // Prepare: replies come back in reverse order of the requests (later chunks first).
    let inFlightNow = 0;
    let inFlightMost = 0;
    const slow: ChunkReader = async (file, offset, length) => {
      inFlightNow++;
      inFlightMost = Math.max(inFlightMost, inFlightNow);
      await new Promise((resolve) => setTimeout(resolve, 20 - (offset / CHUNK) * 1.5));
      inFlightNow--;
      return Buffer.from(files[file]!.subarray(offset, offset + length));
    };

    const out = await ensureBase(dir, descriptor, slow, { chunkBytes: CHUNK, inFlight: 3 });

    expect(inFlightMost).toBe(3);
    expect((await readFile(path.join(out, 'weights.bin'))).equals(files['weights.bin']!)).toBe(true);
  });

  it('moves chunks the reader owns to the writing thread and copies the others, verifying both', async () => {
    // Prepare: a reader that keeps what it returned, to see which chunks were moved.
    const returned: Uint8Array[] = [];
    const keeping: ChunkReader = async (file, offset, length) => {
      const chunk = Buffer.from(files[file]!.subarray(offset, offset + length));
      returned.push(chunk);
      return chunk;
    };
    const copyDir = path.join(dir, 'copied');
    const moveDir = path.join(dir, 'moved');

    const copied = await ensureBase(copyDir, descriptor, keeping, { chunkBytes: CHUNK });
    const copiedViews = returned.splice(0);
    const moved = await ensureBase(moveDir, descriptor, keeping, { chunkBytes: CHUNK, ownsChunks: true });

    for (const out of [copied, moved]) expect((await readFile(path.join(out, 'weights.bin'))).equals(files['weights.bin']!)).toBe(true);
    expect(copiedViews.every((chunk) => chunk.byteLength > 0)).toBe(true);
    // Every chunk of weights spans its own memory and was moved; model.json (a view of Node's
    // shared pool) was copied.
    const movedWeights = returned.filter((chunk) => chunk.byteLength === 0);
    expect(movedWeights).toHaveLength(Math.ceil(files['weights.bin']!.length / CHUNK));
  });

  it('refuses a chunk of the wrong length (BAD_MESSAGE) and keeps only the chunks before it', async () => {
    const short = reader(files, (call, chunk) => (call === 2 ? chunk.subarray(1) : chunk));
    await expect(ensureBase(dir, descriptor, short, { chunkBytes: CHUNK })).rejects.toMatchObject({ code: 'BAD_MESSAGE' });
    expect((await stat(path.join(dir, descriptor.hash, 'weights.bin.part'))).size).toBe(CHUNK);
  });

  it('starts a .part longer than its file over, and downloads nothing once the cache is verified', async () => {
    const target = path.join(dir, descriptor.hash);
    await ensureBase(dir, { ...descriptor, files: [] }, reader(files), { chunkBytes: CHUNK });
    await writeFile(path.join(target, 'weights.bin.part'), randomBytes(files['weights.bin']!.length + 1));

    const first = reader(files);
    await ensureBase(dir, descriptor, first, { chunkBytes: CHUNK });
    const again = reader(files);
    await ensureBase(dir, descriptor, again, { chunkBytes: CHUNK });

    expect(first.bytes).toBe(total);
    expect(again.calls).toBe(0);
  });

  it('detects a corrupted file in a complete cache (a flipped bit on disk) and downloads that file, and only it, again', async () => {
    await ensureBase(dir, descriptor, reader(files), { chunkBytes: CHUNK });
    const cached = path.join(dir, descriptor.hash, 'weights.bin');
    const bytes = await readFile(cached);
    bytes[12_345] = bytes[12_345]! ^ 0x10;
    await writeFile(cached, bytes);

    const repair = reader(files);
    await ensureBase(dir, descriptor, repair, { chunkBytes: CHUNK });

    expect(repair.bytes).toBe(files['weights.bin']!.length);
    expect(hex(await readFile(cached))).toBe(descriptor.files.find((f) => f.name === 'weights.bin')!.sha256);
  });
});
