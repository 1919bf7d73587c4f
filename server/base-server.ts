/**
 * Serving the frozen base to clients: described once (file names, sizes, SHA-256), then read in
 * chunks that clients pull by offset, so a client whose connection drops mid-download asks for
 * the next missing chunk instead of starting over, and no message approaches socket.io's limit.
 */
import { createHash } from 'node:crypto';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { FedtlError } from '../shared/core/errors.ts';
import type { BaseDescriptor, BaseReadRequest } from '../shared/protocol/protocol.ts';

/** Describes every regular file of a base model directory (model.json, shards, vocabulary, sidecar). */
export async function describeBaseDirectory(directory: string, name: string, hash: string): Promise<BaseDescriptor> {
  const names = (await readdir(directory)).filter((file) => /^[A-Za-z0-9._-]+$/.test(file) && !file.startsWith('.')).sort();
  const files = [];
  for (const file of names) {
    const full = path.join(directory, file);
    if (!(await stat(full)).isFile()) continue;
    const bytes = await readFile(full);
    files.push({ name: file, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
  }
  if (files.length === 0) throw new FedtlError('BAD_MODEL', `base directory ${directory} has no files to serve`);
  return { name, hash, files };
}

/** Reads one requested chunk, refusing anything outside the described files. */
export async function readBaseChunk(directory: string, descriptor: BaseDescriptor, request: BaseReadRequest): Promise<Uint8Array> {
  if (request.hash !== descriptor.hash) throw new FedtlError('HASH_MISMATCH', `this coordinator serves base ${descriptor.hash.slice(0, 12)}, not ${request.hash.slice(0, 12)}`);
  const file = descriptor.files.find((f) => f.name === request.file);
  if (!file) throw new FedtlError('BAD_MESSAGE', `base has no file named ${JSON.stringify(request.file)}`);
  if (request.offset >= file.bytes) throw new FedtlError('BAD_MESSAGE', `offset ${request.offset} is past the end of ${file.name} (${file.bytes} bytes)`);
  const length = Math.min(request.length, file.bytes - request.offset);
  const handle = await open(path.join(directory, file.name), 'r');
  try {
    // Not zero-filled: only the bytesRead the file supplied are returned.
    const buffer = Buffer.allocUnsafe(length);
    const { bytesRead } = await handle.read(buffer, 0, length, request.offset);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
