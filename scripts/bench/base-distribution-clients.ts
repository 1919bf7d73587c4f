/**
 * The receiving side of `base-distribution.ts`: K raw `net` sockets that count the bytes streamed
 * to them, or K fedtl clients that pull the base with `ensureBase` over socket.io. The benchmark
 * runs these in a child process by default — a real client is another machine, so the clients'
 * work (socket.io decoding, SHA-256, file writes) should not share the coordinator's thread — and
 * in its own thread with `--in-process`. Both baselines run in the same topology.
 *
 * As a child (`fork` with `serialization: 'advanced'`) it answers each {@link ClientJob} message
 * with a {@link ClientTiming} or `{ error }`.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { ensureBase } from '../../client/base-cache.ts';
import { createHello } from '../../shared/crypto/hello.ts';
import type { Identity } from '../../shared/crypto/identity.ts';
import type { BaseDescriptor, BaseReadReply, ClientToServerEvents, ServerToClientEvents } from '../../shared/protocol/protocol.ts';

/** What the benchmark asks the clients to do. */
export type ClientJob =
  | {
      type: 'raw';
      port: number;
      clients: number;
      expectBytes: number;
      /**
       * Also do what any verified download must: hash every byte (SHA-256) and write it to a file
       * (under this folder), as a plain Node program would (a write stream, the hash on this thread).
       */
      verifyInto?: string;
    }
  | {
      type: 'fedtl';
      url: string;
      identities: Identity[];
      coordinatorSigningKey: string;
      descriptor: BaseDescriptor;
      chunkBytes: number;
      inFlight: number;
      /** Folder under which each client gets its own empty cache. */
      work: string;
    };

/**
 * K raw sockets, each counting what the server streams until it ends (and with `verifyInto`,
 * hashing it and writing it to a file); timing until the last one ended (and its file was closed).
 */
export async function rawClients(job: Extract<ClientJob, { type: 'raw' }>): Promise<ClientTiming> {
  const read = stopwatch();
  const received = await Promise.all(
    Array.from({ length: job.clients }, (_, i) =>
      new Promise<number>((resolve, reject) => {
        let bytes = 0;
        const socket = net.connect(job.port, '127.0.0.1');
        const hash = job.verifyInto === undefined ? null : createHash('sha256');
        socket.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          hash?.update(chunk);
        });
        socket.on('error', reject);
        if (job.verifyInto === undefined) {
          socket.on('end', () => resolve(bytes));
        } else {
          const file = createWriteStream(path.join(job.verifyInto, `raw-${i}.bin`));
          file.on('error', reject);
          file.on('close', () => {
            hash?.digest('hex');
            resolve(bytes);
          });
          socket.pipe(file);
        }
      }),
    ),
  );
  const timing = read();
  if (job.verifyInto !== undefined) await rm(job.verifyInto, { recursive: true, force: true });
  for (const bytes of received) if (bytes !== job.expectBytes) throw new Error(`raw client received ${bytes} bytes, expected ${job.expectBytes}`);
  return timing;
}

type BenchSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

function connectClient(url: string, identity: Identity, coordinatorSigningKey: string): Promise<BenchSocket> {
  const socket: BenchSocket = io(url, {
    transports: ['websocket'],
    // A function: the hello is signed over the session id of the connection it travels on.
    auth: (send: (auth: object) => void) => send(createHello(identity, coordinatorSigningKey, socket.io.engine.id)),
    forceNew: true,
    reconnection: false,
  });
  return new Promise((resolve, reject) => {
    socket.once('welcome', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

/** K admitted fedtl clients pulling the base into empty caches; ms from the first request until the last client has it verified. */
export async function fedtlClients(job: Extract<ClientJob, { type: 'fedtl' }>): Promise<ClientTiming> {
  const { descriptor } = job;
  const sockets = await Promise.all(job.identities.map((id) => connectClient(job.url, id, job.coordinatorSigningKey)));
  const roots = await Promise.all(job.identities.map((_, i) => mkdtemp(path.join(job.work, `client-${i}-`))));
  try {
    const read = stopwatch();
    await Promise.all(
      sockets.map((socket, i) =>
        ensureBase(
          roots[i] as string,
          descriptor,
          async (file, offset, length) => {
            const reply = (await socket.timeout(60_000).emitWithAck('base:read', { hash: descriptor.hash, file, offset, length })) as BaseReadReply;
            if (!reply.ok) throw new Error(`base:read refused: ${reply.code}: ${reply.message}`);
            return reply.bytes instanceof Uint8Array ? reply.bytes : new Uint8Array(reply.bytes as ArrayBuffer);
          },
          { chunkBytes: job.chunkBytes, inFlight: job.inFlight, ownsChunks: true },
        ),
      ),
    );
    return read();
  } finally {
    for (const socket of sockets) socket.disconnect();
    await Promise.all(roots.map((root) => rm(root, { recursive: true, force: true })));
  }
}

/** What one job took: wall ms, and the CPU ms of the clients' process (all its threads) in that time. */
export interface ClientTiming {
  ms: number;
  cpuMs: number;
}

/** Starts a wall-clock and CPU stopwatch; the returned function reads both. */
export function stopwatch(): () => ClientTiming {
  const t = performance.now();
  const cpu = process.cpuUsage();
  return () => {
    const used = process.cpuUsage(cpu);
    return { ms: performance.now() - t, cpuMs: (used.user + used.system) / 1000 };
  };
}

export function runClientJob(job: ClientJob): Promise<ClientTiming> {
  return job.type === 'raw' ? rawClients(job) : fedtlClients(job);
}

// As a child process of the benchmark: one job per message.
const send = process.send?.bind(process);
if (send !== undefined && process.env['FEDTL_BENCH_BASE_CLIENTS'] === '1') {
  process.on('message', (job: ClientJob) => {
    runClientJob(job).then(
      (timing) => send(timing),
      (error: unknown) => send({ error: error instanceof Error ? error.message : String(error) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
  send({ ready: true });
}
