/**
 * Serving the frozen base to clients: described once (file names, sizes, SHA-256), then read in
 * chunks that clients pull by offset, so a client whose connection drops mid-download asks for
 * the next missing chunk instead of starting over, and no message approaches socket.io's limit.
 */
import { createHash } from 'node:crypto';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { FedtlError } from '../shared/core/errors.ts';
import type { BaseDescriptor, BaseFile, BaseReadRequest } from '../shared/protocol/protocol.ts';

/**
 * The bytes {@link describeBaseDirectory} read and hashed, by the descriptor it returned, for
 * {@link BaseChunks} to serve: each file is then read and hashed once in the coordinator's life.
 */
const describedBytes = new WeakMap<BaseDescriptor, Map<string, Buffer>>();

/** Describes every regular file of a base model directory (model.json, shards, vocabulary, sidecar). */
export async function describeBaseDirectory(directory: string, name: string, hash: string): Promise<BaseDescriptor> {
  const names = (await readdir(directory)).filter((file) => /^[A-Za-z0-9._-]+$/.test(file) && !file.startsWith('.')).sort();
  const files = [];
  const kept = new Map<string, Buffer>();
  let keptBytes = 0;
  for (const file of names) {
    const full = path.join(directory, file);
    if (!(await stat(full)).isFile()) continue;
    const bytes = await readFile(full);
    files.push({ name: file, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
    if (keptBytes + bytes.length <= BASE_CHUNK_DEFAULTS.maxHeldBytes) {
      kept.set(file, bytes);
      keptBytes += bytes.length;
    }
  }
  if (files.length === 0) throw new FedtlError('BAD_MODEL', `base directory ${directory} has no files to serve`);
  const descriptor = { name, hash, files };
  describedBytes.set(descriptor, kept);
  return descriptor;
}

/** Files held in memory by {@link BaseChunks}, in all. @default 1 GiB */
export const BASE_CHUNK_DEFAULTS = { maxHeldBytes: 1024 * 1024 * 1024 } as const;

/**
 * Serves chunks of the described files, held in memory while they stay under `maxHeldBytes`: a
 * chunk is then a view of that memory, with no file open, read or copy per request. The bytes
 * {@link describeBaseDirectory} hashed for this descriptor are used as they are; any other file is
 * read once and checked against the SHA-256 it was described with (a file edited since is refused
 * with HASH_MISMATCH instead of served). Files past the budget are read from disk per chunk.
 */
export class BaseChunks {
  readonly #directory: string;
  readonly #descriptor: BaseDescriptor;
  readonly #held = new Map<string, Promise<Buffer>>();
  #budget: number;

  constructor(directory: string, descriptor: BaseDescriptor, options: { maxHeldBytes?: number } = {}) {
    this.#directory = directory;
    this.#descriptor = descriptor;
    this.#budget = options.maxHeldBytes ?? BASE_CHUNK_DEFAULTS.maxHeldBytes;
    // Bytes already read and hashed to make this very descriptor are served as they are.
    for (const [file, bytes] of describedBytes.get(descriptor) ?? []) {
      if (bytes.length > this.#budget) continue;
      this.#held.set(file, Promise.resolve(bytes));
      this.#budget -= bytes.length;
    }
  }

  /** Reads one requested chunk, refusing anything outside the described files. */
  async read(request: BaseReadRequest): Promise<Uint8Array> {
    const descriptor = this.#descriptor;
    if (request.hash !== descriptor.hash) throw new FedtlError('HASH_MISMATCH', `this coordinator serves base ${descriptor.hash.slice(0, 12)}, not ${request.hash.slice(0, 12)}`);
    const file = descriptor.files.find((f) => f.name === request.file);
    if (!file) throw new FedtlError('BAD_MESSAGE', `base has no file named ${JSON.stringify(request.file)}`);
    if (request.offset >= file.bytes) throw new FedtlError('BAD_MESSAGE', `offset ${request.offset} is past the end of ${file.name} (${file.bytes} bytes)`);
    const length = Math.min(request.length, file.bytes - request.offset);
    const held = this.#heldFile(file);
    if (held) return (await held).subarray(request.offset, request.offset + length);
    const handle = await open(path.join(this.#directory, file.name), 'r');
    try {
      // Not zero-filled: only the bytesRead the file supplied are returned.
      const buffer = Buffer.allocUnsafe(length);
      const { bytesRead } = await handle.read(buffer, 0, length, request.offset);
      return buffer.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  #heldFile(file: BaseFile): Promise<Buffer> | null {
    const known = this.#held.get(file.name);
    if (known) return known;
    if (file.bytes > this.#budget) return null;
    this.#budget -= file.bytes;
    const loading = readFile(path.join(this.#directory, file.name)).then((bytes) => {
      if (createHash('sha256').update(bytes).digest('hex') !== file.sha256) {
        throw new FedtlError('HASH_MISMATCH', `base file ${file.name} changed on disk since the coordinator described it; restart the coordinator`);
      }
      return bytes;
    });
    this.#held.set(file.name, loading);
    // A failed read is not kept: the next request tries again.
    loading.catch(() => {
      this.#held.delete(file.name);
      this.#budget += file.bytes;
    });
    return loading;
  }
}
