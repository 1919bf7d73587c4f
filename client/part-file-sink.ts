/**
 * Writing downloaded files to their `.part` files and hashing them, on one worker thread. A client
 * receiving the base spends its thread decoding socket.io frames; SHA-256 of every byte (about
 * 0.8 ms per MB here, with SHA-NI) and the file writes would otherwise queue behind that work on the
 * same thread. The worker receives each chunk by transfer (no copy when the chunk owns its memory)
 * and hashes it while the libuv thread pool appends it to the file; chunks that arrive during a
 * write go out together in the next one (one `writev`). A file's chunks are hashed and written
 * strictly in the order they were given, and nothing after a failed write is written, so the
 * `.part` file is always a prefix of the file, whatever fails and wherever.
 *
 * The worker is plain JavaScript evaluated from a string: it needs only Node's own `fs` and
 * `crypto`, and a TypeScript entry would first have to load the TypeScript loader inside the
 * worker (about 0.3 s measured, as long as a 40 MB download).
 */
import { Worker } from 'node:worker_threads';
import { FedtlError } from '../shared/core/errors.ts';
import { ownsWholeBuffer } from '../shared/core/transfer.ts';

/** A request to the worker; each gets exactly one {@link SinkReply}, with the same `seq`. */
type SinkRequest = { seq: number } & (
  | { type: 'open'; id: number; path: string; keptBytes: number }
  | { type: 'chunk'; id: number; bytes: Uint8Array }
  | { type: 'close'; id: number }
);

type SinkOk = { seq: number; type: 'ok'; sha256?: string };
type SinkReply = SinkOk | { seq: number; type: 'error'; message: string; errno?: string };
type Waiter = { resolve: (reply: SinkOk) => void; reject: (error: Error) => void };
/** A request as {@link PartFileSink} makes it, before it is numbered. */
type Unnumbered<T> = T extends unknown ? Omit<T, 'seq'> : never;

// Files are named by an id the main thread picks; every request carries a sequence number that
// its reply repeats. `open` hashes the kept prefix of a resumed `.part` file (it is read once, as
// when it was first written); `chunk` hashes the bytes on this thread while the libuv thread pool
// appends them (a file's writes strictly one after another, in order, batched while one runs);
// `close` waits for the file's writes, closes it and answers the SHA-256 of everything since
// `open`, prefix included.
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
  if (!file) return;
  if (file.writing) file.idle.push(() => fs.close(file.fd, () => {}));
  else fs.close(file.fd, () => {});
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
  files.set(id, { fd: fs.openSync(path, 'a'), hash, queue: [], writing: null, failed: null, idle: [] });
}
// Chunks that arrive while a write runs are written together by the next one (one writev), so
// a busy disk gets fewer, larger writes.
function flush(file) {
  const batch = file.queue.splice(0);
  let buffers = batch.map((entry) => entry.bytes);
  const settle = (error) => {
    for (const entry of batch) (error ? entry.reject : entry.resolve)(error);
    if (error) file.failed = error;
    if (file.queue.length > 0 && !file.failed) flush(file);
    else {
      file.writing = null;
      if (file.failed) for (const entry of file.queue.splice(0)) entry.reject(file.failed);
      for (const wake of file.idle.splice(0)) wake();
    }
  };
  file.writing = batch;
  const next = () => fs.writev(file.fd, buffers, null, (error, written) => {
    if (error) return settle(error);
    while (written > 0 && buffers.length > 0) {
      const first = buffers[0];
      if (written >= first.byteLength) { written -= first.byteLength; buffers.shift(); }
      else { buffers[0] = first.subarray(written); written = 0; }
    }
    if (buffers.length > 0) next();
    else settle(null);
  });
  next();
}
function append(id, bytes) {
  const file = opened(id);
  if (file.failed) throw file.failed;
  file.hash.update(bytes);
  return new Promise((resolve, reject) => {
    file.queue.push({ bytes, resolve, reject });
    if (!file.writing) flush(file);
  });
}
async function close(id) {
  const file = opened(id);
  if (file.writing) await new Promise((wake) => file.idle.push(wake));
  // A write that failed while we waited has its chunk's error path drop (and close) the file
  // too: whichever of the two runs first closes it, so the descriptor is closed once.
  if (files.get(id) === file) {
    files.delete(id);
    fs.closeSync(file.fd);
  }
  if (file.failed) throw file.failed;
  return { sha256: file.hash.digest('hex') };
}
function handle(request) {
  if (request.type === 'open') return open(request.id, request.path, request.keptBytes);
  if (request.type === 'chunk') return append(request.id, request.bytes);
  return close(request.id);
}
parentPort.on('message', (request) => {
  let result;
  try {
    result = Promise.resolve(handle(request));
  } catch (error) {
    result = Promise.reject(error);
  }
  result.then(
    (value) => parentPort.postMessage({ seq: request.seq, type: 'ok', ...value }),
    (error) => {
      drop(request.id);
      parentPort.postMessage({ seq: request.seq, type: 'error', message: String(error && error.message), errno: error && error.code });
    },
  );
});
`;

/** One `.part` file open on the sink's worker; see {@link PartFileSink.open}. */
export interface PartFile {
  /**
   * Appends `chunk` and hashes it; resolves once it is written (to the page cache) and hashed.
   * With `take`, a chunk that alone spans its memory moves to the worker (the caller's view is
   * left empty); any other chunk is copied.
   */
  write(chunk: Uint8Array, take: boolean): Promise<void>;
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

  /** Worker threads running for downloads: 1 while a download holds the sink, else 0. */
  static get threads(): number {
    return PartFileSink.#shared ? 1 : 0;
  }

  /** Gives back a sink from {@link PartFileSink.acquire}; the last release stops its worker. */
  static async release(sink: PartFileSink): Promise<void> {
    const shared = PartFileSink.#shared;
    if (shared?.sink !== sink || --shared.users > 0) return;
    PartFileSink.#shared = null;
    await sink.#worker.terminate();
  }

  readonly #worker: Worker;
  readonly #waiting = new Map<number, Waiter>();
  #nextId = 0;
  #nextSeq = 0;
  #dead: Error | null = null;

  private constructor() {
    this.#worker = new Worker(WORKER_SOURCE, { eval: true });
    this.#worker.on('message', (reply: SinkReply) => {
      const waiter = this.#waiting.get(reply.seq);
      if (!waiter) return;
      this.#waiting.delete(reply.seq);
      if (reply.type === 'ok') waiter.resolve(reply);
      else waiter.reject(new FedtlError('STORAGE', `base download: ${reply.message}`, { cause: reply.errno }));
    });
    const fail = (error: Error) => {
      this.#dead ??= error;
      for (const waiter of this.#waiting.values()) waiter.reject(error);
      this.#waiting.clear();
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
      write: async (chunk, take) => {
        // A copy with memory of its own (Buffer#slice would be a view of the same memory).
        const owned = take && ownsWholeBuffer(chunk) ? chunk : new Uint8Array(chunk);
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

  #send(request: Unnumbered<SinkRequest>, transfer: ArrayBuffer[] = []): Promise<SinkOk> {
    if (this.#dead) return Promise.reject(this.#dead);
    const seq = this.#nextSeq++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(seq, { resolve, reject });
      this.#worker.postMessage({ ...request, seq } satisfies SinkRequest, transfer);
    });
  }
}
