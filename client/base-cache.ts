/**
 * Downloading the frozen base once: files are pulled chunk by chunk into `<file>.part`, resumed from
 * where a dropped connection left them, checked against their SHA-256 and renamed into place. A
 * directory named by the base's content hash that already holds every verified file is used as is,
 * so reconnects and later rounds download nothing.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { FedtlError } from '../shared/core/errors.ts';
import type { BaseDescriptor, BaseFile } from '../shared/protocol/protocol.ts';

/** Reads `length` bytes of `file` at `offset` from the coordinator. */
export type ChunkReader = (file: string, offset: number, length: number) => Promise<Uint8Array>;

export interface EnsureBaseOptions {
  chunkBytes: number;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

async function sha256File(file: string): Promise<string | null> {
  try {
    return createHash('sha256').update(await readFile(file)).digest('hex');
  } catch {
    return null;
  }
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

async function downloadFile(directory: string, file: BaseFile, read: ChunkReader, options: EnsureBaseOptions, progress: () => void, counter: { done: number }): Promise<void> {
  const target = path.join(directory, file.name);
  if ((await sha256File(target)) === file.sha256) {
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
  const handle = await open(partial, 'a');
  try {
    while (offset < file.bytes) {
      const chunk = await read(file.name, offset, Math.min(options.chunkBytes, file.bytes - offset));
      if (chunk.byteLength === 0) throw new FedtlError('BAD_MESSAGE', `coordinator sent an empty chunk of ${file.name} at ${offset}`);
      await handle.write(chunk);
      offset += chunk.byteLength;
      counter.done += chunk.byteLength;
      progress();
    }
  } finally {
    await handle.close();
  }
  if ((await sha256File(partial)) !== file.sha256) {
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
