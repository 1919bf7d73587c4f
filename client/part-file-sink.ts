/**
 * Writing downloaded files to their `.part` files and hashing them, on one worker thread. A client
 * receiving the base spends its thread decoding socket.io frames; SHA-256 of every byte (about
 * 0.8 ms per MB here, with SHA-NI) and the file writes would otherwise queue behind that work on the
 * same thread. The worker receives each chunk by transfer (no copy when the chunk owns its memory),
 * appends it, hashes it, and answers; chunks are handled strictly in the order they were given, so
 * the `.part` file is always a prefix of the file, whatever fails and wherever.
 *
 * The worker is plain JavaScript evaluated from a string: it needs only Node's own `fs` and
 * `crypto`, and a TypeScript entry would first have to load the TypeScript loader inside the
 * worker (about 0.3 s measured, as long as a 40 MB download).
 */
import { Worker } from 'node:worker_threads';
import { FedtlError } from '../shared/core/errors.ts';

/** A request to the worker; each gets exactly one {@link SinkReply}, in order. */
type SinkRequest =
  | { type: 'open'; id: number; path: string; keptBytes: number }
  | { type: 'chunk'; id: number; bytes: Uint8Array }
  | { type: 'close'; id: number };

type SinkReply = { type: 'ok'; sha256?: string } | { type: 'error'; message: string; errno?: string };

// Files are named by an id the main thread picks. `open` hashes the kept prefix of a resumed
// `.part` file (it is read once, as when it was first written); `chunk` appends and hashes; `close`
// closes the file and answers the SHA-256 of everything written since `open`, prefix included.
// After an error that file is closed and its later requests fail; other files go on.
const WORKER_SOURCE = `
'use strict';
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const files = new Map();
const READ_BLOCK = 1024 * 1024;
function drop(id) {
  const file = files.get(id);
  files.delete(id);
  if (file) { try { fs.closeSync(file.fd); } catch {} }
}
function opened(id) {
  const file = files.get(id);
  if (!file) throw new Error('the file is not open (an earlier write failed)');
  return file;
}
function open(id, path, keptBytes) {
  drop(id);
  const hash = createHash('sha256');
  if (keptBytes > 0) {
    const reader = fs.openSync(path, 'r');
    try {
      const block = Buffer.allocUnsafe(Math.min(READ_BLOCK, keptBytes));
      for (let at = 0; at < keptBytes; ) {
        const got = fs.readSync(reader, block, 0, Math.min(block.length, keptBytes - at), at);
        if (got === 0) throw new Error(path + ' is shorter than the ' + keptBytes + ' bytes kept from it');
        hash.update(block.subarray(0, got));
        at += got;
      }
    } finally {
      fs.closeSync(reader);
    }
  }
  files.set(id, { fd: fs.openSync(path, 'a'), hash });
}
function append(id, bytes) {
  const file = opened(id);
  for (let done = 0; done < bytes.byteLength; ) done += fs.writeSync(file.fd, bytes, done, bytes.byteLength - done);
  file.hash.update(bytes);
}
function close(id) {
  const file = opened(id);
  files.delete(id);
  const sha256 = file.hash.digest('hex');
  fs.closeSync(file.fd);
  return sha256;
}
parentPort.on('message', (request) => {
  try {
    if (request.type === 'open') open(request.id, request.path, request.keptBytes);
    else if (request.type === 'chunk') append(request.id, request.bytes);
    else { parentPort.postMessage({ type: 'ok', sha256: close(request.id) }); return; }
    parentPort.postMessage({ type: 'ok' });
  } catch (error) {
    drop(request.id);
    parentPort.postMessage({ type: 'error', message: String(error && error.message), errno: error && error.code });
  }
});
`;

/** One `.part` file open on the sink's worker; see {@link PartFileSink.open}. */
export interface PartFile {
  /**
   * Appends `chunk` and hashes it; resolves once it is written (to the page cache) and hashed. The
   * file takes the chunk: when it alone spans its memory, that memory moves to the worker (the
   * caller's view is left empty); otherwise it is copied first.
   */
  write(chunk: Uint8Array): Promise<void>;
  /** Closes the file once every chunk before is written; the SHA-256 (hex) of the whole file. */
  close(): Promise<string>;
}

/**
 * One worker thread that writes and hashes `.part` files, shared by every download of the process
 * ({@link PartFileSink.acquire}) and stopped when the last one releases it. Requests are handled in
 * the order they were made and each file's chunks are appended in that order.
 */
export class PartFileSink {
  static #shared: { sink: PartFileSink; users: number } | null = null;

  /** The process's sink, started if no download holds it; pair with {@link PartFileSink.release}. */
  static acquire(): PartFileSink {
    const shared = (PartFileSink.#shared ??= { sink: new PartFileSink(), users: 0 });
    shared.users++;
    return shared.sink;
  }

  /** Gives back a sink from {@link PartFileSink.acquire}; the last release stops its worker. */
  static async release(sink: PartFileSink): Promise<void> {
    const shared = PartFileSink.#shared;
    if (shared?.sink !== sink || --shared.users > 0) return;
    PartFileSink.#shared = null;
    await sink.#worker.terminate();
  }

  readonly #worker: Worker;
  readonly #waiting: { resolve: (reply: SinkReply & { type: 'ok' }) => void; reject: (error: Error) => void }[] = [];
  #nextId = 0;
  #dead: Error | null = null;

  private constructor() {
    this.#worker = new Worker(WORKER_SOURCE, { eval: true });
    this.#worker.on('message', (reply: SinkReply) => {
      const waiter = this.#waiting.shift();
      if (!waiter) return;
      if (reply.type === 'ok') waiter.resolve(reply);
      else waiter.reject(new FedtlError('STORAGE', `base download: ${reply.message}`, { cause: reply.errno }));
    });
    const fail = (error: Error) => {
      this.#dead ??= error;
      for (const waiter of this.#waiting.splice(0)) waiter.reject(error);
    };
    this.#worker.on('error', (error) => fail(new FedtlError('INTERNAL', `base download: the writing thread failed: ${error.message}`, { cause: error })));
    this.#worker.on('exit', () => fail(new FedtlError('INTERNAL', 'base download: the writing thread has stopped')));
  }

  /**
   * Opens `path` for appending after its first `keptBytes` bytes, which are hashed first. The
   * returned file can be written at once: its requests queue behind the opening, and fail if it
   * failed (as does the returned promise).
   */
  open(path: string, keptBytes: number): { file: PartFile; opened: Promise<void> } {
    const id = this.#nextId++;
    const opened = this.#send({ type: 'open', id, path, keptBytes }).then(() => undefined);
    const file: PartFile = {
      write: async (chunk) => {
        const owned = chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength && chunk.buffer instanceof ArrayBuffer ? chunk : chunk.slice();
        await this.#send({ type: 'chunk', id, bytes: owned }, [owned.buffer as ArrayBuffer]);
      },
      close: async () => {
        const reply = await this.#send({ type: 'close', id });
        if (reply.sha256 === undefined) throw new FedtlError('INTERNAL', 'base download: the writing thread sent no hash');
        return reply.sha256;
      },
    };
    return { file, opened };
  }

  #send(request: SinkRequest, transfer: ArrayBuffer[] = []): Promise<SinkReply & { type: 'ok' }> {
    if (this.#dead) return Promise.reject(this.#dead);
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      this.#worker.postMessage(request, transfer);
    });
  }
}
