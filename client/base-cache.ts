/**
 * Downloading the frozen base once: files are pulled chunk by chunk into `<file>.part`, resumed from
 * where a dropped connection left them, checked against their SHA-256 and renamed into place. A
 * directory named by the base's content hash that already holds every verified file is used as is,
 * so reconnects and later rounds download nothing.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { FedtlError } from '../shared/core/errors.ts';
import type { BaseDescriptor, BaseFile } from '../shared/protocol/protocol.ts';

/** Reads `length` bytes of `file` at `offset` from the coordinator. */
export type ChunkReader = (file: string, offset: number, length: number) => Promise<Uint8Array>;

export interface EnsureBaseOptions {
  chunkBytes: number;
  /**
   * Chunk requests kept in flight. One request at a time leaves the link idle for a round trip per
   * chunk (and the coordinator idle while the client writes); a few in flight keep both busy.
   * @default 4
   */
  inFlight?: number;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

const DEFAULT_IN_FLIGHT = 4;

/** SHA-256 of a whole file, or null when it cannot be read. */
async function sha256File(file: string): Promise<string | null> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
  } catch {
    return null;
  }
  return hash.digest('hex');
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

/** Hashes the first `bytes` of `file` into `hash` (the part of a `.part` file a resume keeps). */
async function hashPrefix(hash: Hash, file: string, bytes: number): Promise<void> {
  if (bytes === 0) return;
  for await (const chunk of createReadStream(file, { start: 0, end: bytes - 1, highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
}

async function downloadFile(directory: string, file: BaseFile, read: ChunkReader, options: EnsureBaseOptions, progress: () => void, counter: { done: number }): Promise<void> {
  const target = path.join(directory, file.name);
  // A file already in place is the only one hashed from disk: it was verified when it arrived, but
  // the cache may have been altered since.
  if ((await sizeOf(target)) === file.bytes && (await sha256File(target)) === file.sha256) {
    counter.done += file.bytes;
    progress();
    return;
  }
  const partial = `${target}.part`;
  let offset = await sizeOf(partial);
  if (offset > file.bytes) {
    await rm(partial, { force: true });
    offset = 0;
  }
  counter.done += offset;
  // The file is hashed as it arrives (after the kept prefix of a resumed .part): one pass, no re-read.
  const hash = createHash('sha256');
  await hashPrefix(hash, partial, offset);
  const inFlight = Math.max(1, options.inFlight ?? DEFAULT_IN_FLIGHT);
  const handle = await open(partial, 'a');
  // Requests go out up to `inFlight` chunks ahead; replies are written strictly in order, so the
  // .part file is always a prefix of the file and a dropped connection resumes from its end.
  const pending: Promise<Uint8Array>[] = [];
  let requested = offset;
  const requestMore = () => {
    while (pending.length < inFlight && requested < file.bytes) {
      const at = requested;
      const length = Math.min(options.chunkBytes, file.bytes - at);
      const request = read(file.name, at, length).then((chunk) => {
        if (chunk.byteLength !== length) throw new FedtlError('BAD_MESSAGE', `coordinator sent ${chunk.byteLength} bytes of ${file.name} at offset ${at}, expected ${length}`);
        return chunk;
      });
      // Rejections are observed when the request reaches the head of the queue; this only keeps a
      // request that fails behind another failure from being reported as unhandled.
      request.catch(() => undefined);
      pending.push(request);
      requested += length;
    }
  };
  try {
    requestMore();
    while (pending.length > 0) {
      const chunk = await pending.shift()!;
      requestMore();
      // The write runs on the thread pool while this thread hashes the same (unchanged) bytes.
      const writing = handle.write(chunk);
      hash.update(chunk);
      await writing;
      offset += chunk.byteLength;
      counter.done += chunk.byteLength;
      progress();
    }
  } finally {
    await handle.close();
  }
  if (hash.digest('hex') !== file.sha256) {
    await rm(partial, { force: true });
    throw new FedtlError('HASH_MISMATCH', `downloaded ${file.name} does not match its SHA-256; it was discarded and will be fetched again`);
  }
  await rename(partial, target);
}

/** Makes sure `<cacheRoot>/<hash>/` holds the verified base files; returns that directory. */
export async function ensureBase(cacheRoot: string, descriptor: BaseDescriptor, read: ChunkReader, options: EnsureBaseOptions): Promise<string> {
  const directory = path.join(cacheRoot, descriptor.hash);
  await mkdir(directory, { recursive: true });
  const total = descriptor.files.reduce((sum, f) => sum + f.bytes, 0);
  const counter = { done: 0 };
  const progress = () => options.onProgress?.(counter.done, total);
  for (const file of descriptor.files) await downloadFile(directory, file, read, options, progress, counter);
  return directory;
}
