/**
 * The base download over real sockets: a coordinator serving a file base through `base:read`,
 * admitted socket.io clients (real keys, signed hellos) pulling it with `ensureBase`, whose chunks
 * are written and hashed on the process's writing thread (client/part-file-sink.ts). Clients
 * downloading at once share that thread and each get a verified copy; a chunk altered in transit is
 * still refused (HASH_MISMATCH) and a short one (BAD_MESSAGE), with the `.part` holding only what
 * came before; a `.part` that cannot be written is refused with STORAGE; and the thread stops once
 * no download holds it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ChunkReader, ensureBase } from '../../client/base-cache.ts';
import { PartFileSink } from '../../client/part-file-sink.ts';
import { describeBaseDirectory } from '../../server/base-server.ts';
import { Coordinator } from '../../server/coordinator.ts';
import { encodeKey, generateIdentity, type Identity } from '../../shared/crypto/identity.ts';
import type { BaseDescriptor, BaseReadReply } from '../../shared/protocol/protocol.ts';
import { FedAvg } from '../../shared/strategy/fed-avg.ts';
import { RawClient, recordingLogger, signedHello } from '../support/hostile.ts';

const CHUNK = 64 * 1024;
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe('base download over base:read', () => {
  let work = '';
  let shard: Buffer;
  let descriptor: BaseDescriptor;
  let coordinator: Coordinator;
  const coordinatorIdentity = generateIdentity();
  const identities = [generateIdentity(), generateIdentity()];
  const clients: RawClient[] = [];

  beforeEach(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'fedtl-base-download-'));
    const baseDir = path.join(work, 'base');
    await mkdir(baseDir);
    // 12.5 chunks of weights (the last one short) and a small model.json: two files in one base.
    shard = randomBytes(12 * CHUNK + CHUNK / 2);
    await writeFile(path.join(baseDir, 'weights.bin'), shard);
    await writeFile(path.join(baseDir, 'model.json'), JSON.stringify({ format: 'test', weightsManifest: [{ paths: ['weights.bin'] }] }));
    descriptor = await describeBaseDirectory(baseDir, 'test-base', 'e'.repeat(64));
    const allowed = new Set(identities.map((id) => encodeKey(id.signing.publicKey)));
    coordinator = await Coordinator.start({
      identity: coordinatorIdentity,
      admission: { status: (key) => (allowed.has(key) ? 'allowed' : 'unknown') },
      base: { descriptor, directory: baseDir },
      headSpec: { hidden: [], activation: 'relu', dropout: 0, classes: 2 },
      manifest: { entries: [], parameterCount: 2 },
      initialWeights: new Float32Array(2),
      strategy: new FedAvg({ minClients: identities.length }),
      rounds: 0,
      openUpdate: () => {
        throw new Error('no updates in this test');
      },
      chunkBytes: CHUNK,
      logger: recordingLogger(),
    });
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await coordinator.close();
    await rm(work, { recursive: true, force: true });
  });

  async function connect(identity: Identity): Promise<RawClient> {
    const signingKey = encodeKey(coordinatorIdentity.signing.publicKey);
    const client = await RawClient.connect(coordinator.url, identity, signingKey, encodeKey(coordinatorIdentity.box.publicKey), (connectionId: string) => signedHello(identity, signingKey, { connectionId }));
    clients.push(client);
    return client;
  }

  /** Reads chunks through the client's socket; `alter` may change what the coordinator sent. */
  function socketReader(client: RawClient, alter: (call: number, bytes: Buffer) => Buffer = (_call, bytes) => bytes): ChunkReader {
    let calls = 0;
    return async (file, offset, length) => {
      const reply = (await client.socket.timeout(10_000).emitWithAck('base:read', { hash: descriptor.hash, file, offset, length })) as BaseReadReply;
      if (!reply.ok) throw new Error(`base:read refused: ${reply.code}`);
      return alter(calls++, reply.bytes as Buffer);
    };
  }

  it('gives two clients downloading at once a verified copy each, on one writing thread that stops afterwards', async () => {
    const [a, b] = await Promise.all(identities.map((id) => connect(id)));
    const caches = [path.join(work, 'client-a'), path.join(work, 'client-b')];
    let threadsDuring = 0;
    const watching = (client: RawClient): ChunkReader => {
      const read = socketReader(client);
      return async (file, offset, length) => {
        threadsDuring = Math.max(threadsDuring, PartFileSink.threads);
        return read(file, offset, length);
      };
    };

    const dirs = await Promise.all([ensureBase(caches[0]!, descriptor, watching(a!), { chunkBytes: CHUNK, ownsChunks: true }), ensureBase(caches[1]!, descriptor, watching(b!), { chunkBytes: CHUNK, inFlight: 8, ownsChunks: true })]);

    for (const dir of dirs) {
      expect((await readFile(path.join(dir, 'weights.bin'))).equals(shard)).toBe(true);
      expect((await readdir(dir)).sort()).toEqual(['model.json', 'weights.bin']);
    }
    expect(threadsDuring).toBe(1);
    expect(PartFileSink.threads).toBe(0);
  });

  it('refuses a chunk altered in transit (HASH_MISMATCH) and a short one (BAD_MESSAGE), keeping only the bytes before a short one', async () => {
    const client = await connect(identities[0]!);
    const cache = path.join(work, 'client');
    const partial = path.join(cache, descriptor.hash, 'weights.bin.part');

    // A flipped bit in the 4th chunk of weights (call 0 is model.json): the file is discarded.
    const flipped = socketReader(client, (call, bytes) => {
      if (call === 4) bytes[100] = bytes[100]! ^ 0x01;
      return bytes;
    });
    await expect(ensureBase(cache, descriptor, flipped, { chunkBytes: CHUNK, ownsChunks: true })).rejects.toMatchObject({ code: 'HASH_MISMATCH' });
    await expect(stat(partial)).rejects.toMatchObject({ code: 'ENOENT' });

    // A chunk one byte short (the 3rd of weights; model.json is in place by now, so call 0 is the
    // 1st chunk of weights): refused, and the .part holds the 2 before it.
    const short = socketReader(client, (call, bytes) => (call === 2 ? bytes.subarray(1) : bytes));
    await expect(ensureBase(cache, descriptor, short, { chunkBytes: CHUNK, ownsChunks: true })).rejects.toMatchObject({ code: 'BAD_MESSAGE' });
    expect((await stat(partial)).size).toBe(2 * CHUNK);

    // The next attempt resumes from those 2 chunks and ends with the verified file.
    const dir = await ensureBase(cache, descriptor, socketReader(client), { chunkBytes: CHUNK, ownsChunks: true });
    expect(sha256(await readFile(path.join(dir, 'weights.bin')))).toBe(sha256(shard));
    expect(PartFileSink.threads).toBe(0);
  });

  it('refuses a .part it cannot write with STORAGE, then downloads once the path is free', async () => {
    const client = await connect(identities[0]!);
    const cache = path.join(work, 'client');
    const partial = path.join(cache, descriptor.hash, 'weights.bin.part');
    // A directory where the .part file should be: opening it for appending fails.
    await mkdir(partial, { recursive: true });

    await expect(ensureBase(cache, descriptor, socketReader(client), { chunkBytes: CHUNK, ownsChunks: true })).rejects.toMatchObject({ code: 'STORAGE' });
    expect(PartFileSink.threads).toBe(0);
    await rm(partial, { recursive: true });
    const dir = await ensureBase(cache, descriptor, socketReader(client), { chunkBytes: CHUNK, ownsChunks: true });
    expect((await readFile(path.join(dir, 'weights.bin'))).equals(shard)).toBe(true);
  });
});
