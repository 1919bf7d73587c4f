/**
 * Downloading the frozen base once: files are pulled chunk by chunk into `<file>.part`, resumed from
 * where a dropped connection left them, checked against their SHA-256 and renamed into place. A
 * directory named by the base's content hash that already holds every verified file is used as is,
 * so reconnects and later rounds download nothing.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { FedtlError } from '../shared/core/errors.ts';
import type { BaseDescriptor, BaseFile } from '../shared/protocol/protocol.ts';
import { PartFileSink } from './part-file-sink.ts';

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
  /**
   * The reader's chunks are memory nobody else holds (as the attachments socket.io decodes from
   * the wire are): each is then moved to the writing thread, not copied, and the view the reader
   * returned is left empty. Leave it off for a reader that returns views of memory it keeps.
   * @default false
   */
  ownsChunks?: boolean;
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

async function downloadFile(directory: string, file: BaseFile, read: ChunkReader, options: EnsureBaseOptions, progress: () => void, counter: { done: number }, sink: () => PartFileSink): Promise<void> {
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
  const inFlight = Math.max(1, options.inFlight ?? DEFAULT_IN_FLIGHT);
  // The file is written and hashed as it arrives, on the sink's worker thread (after the kept
  // prefix of a resumed .part): one pass, no re-read, and this thread only receives.
  const { file: writer, opened } = sink().open(partial, offset);
  opened.catch(() => undefined); // observed below, before the first chunk is awaited
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
  // Chunks handed to the worker and not yet written: at most `inFlight`, so a slow disk holds
  // back the requests instead of letting received chunks pile up in memory.
  const writing: Promise<void>[] = [];
  let sha256: string;
  try {
    requestMore();
    await opened;
    while (pending.length > 0) {
      const chunk = await pending.shift()!;
      requestMore();
      const bytes = chunk.byteLength;
      const written = writer.write(chunk, options.ownsChunks ?? false).then(() => {
        counter.done += bytes;
        progress();
      });
      written.catch(() => undefined); // observed in order below
      writing.push(written);
      while (writing.length >= inFlight) await writing.shift();
    }
    for (const written of writing.splice(0)) await written;
    sha256 = await writer.close();
  } catch (thrown) {
    // Closing waits for every chunk handed over before (the worker handles requests in order),
    // so after a failure the .part file holds exactly the chunks that arrived before it.
    await writer.close().catch(() => undefined);
    throw thrown;
  }
  if (sha256 !== file.sha256) {
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
  // The process's writing thread, held only if some file has to be downloaded.
  let sink: PartFileSink | null = null;
  try {
    for (const file of descriptor.files) await downloadFile(directory, file, read, options, progress, counter, () => (sink ??= PartFileSink.acquire()));
  } finally {
    if (sink) await PartFileSink.release(sink);
  }
  return directory;
}
