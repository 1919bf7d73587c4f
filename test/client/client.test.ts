/**
 * The client's side of the trust relationship: it talks only to the coordinator whose key it
 * pinned. A stand-in coordinator (a bare socket.io server) sends welcomes and round messages that
 * are each wrong in one way; the client must refuse them with the right code, and send nothing.
 */
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { Server, type Socket } from 'socket.io';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FedtlClient } from '../../client/client.ts';
import { initialHeadWeights } from '../../server/start-coordinator.ts';
import { clientIdFromSigningKey, encodeKey, generateIdentity, publicIdentity, type Identity } from '../../shared/crypto/identity.ts';
import { signText } from '../../shared/crypto/signatures.ts';
import { PROTOCOL_VERSION, roundSignedText, welcomeSignedText, type BaseDescriptor, type Hello } from '../../shared/protocol/protocol.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { float32ToBytes } from '../../shared/weights/flat-weights.ts';
import { DIGIT_HEAD, digits } from '../support/federation.ts';
import { within } from '../support/hostile.ts';
import { createIdentityBase } from '../../shared/bases/identity.ts';

const BASE = createIdentityBase(784, { name: 'pixels-784' });

interface StandIn {
  url: string;
  updates: number;
  close: () => Promise<void>;
}

/** A coordinator impostor or a faulty coordinator, scripted by `onConnection`. */
async function standIn(onConnection: (socket: Socket, hello: Hello, counters: { updates: number }) => void): Promise<StandIn> {
  const http: HttpServer = createServer();
  const io = new Server(http, { maxHttpBufferSize: 1e8 });
  const counters = { updates: 0 };
  io.on('connection', (socket) => {
    socket.on('update', (_sealed: unknown, ack: (reply: unknown) => void) => {
      counters.updates++;
      ack({ ok: true });
    });
    onConnection(socket, socket.handshake.auth as Hello, counters);
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    get updates() {
      return counters.updates;
    },
    close: () => new Promise<void>((resolve) => void io.close(() => resolve())),
  };
}

describe('a client trusts only its pinned coordinator', () => {
  const coordinator: Identity = generateIdentity();
  const initial = initialHeadWeights(784, DIGIT_HEAD, 3);
  const cleanups: Array<() => Promise<void> | void> = [];
  let cacheDir = '';

  beforeAll(async () => {
    await selectBackend({ log: false });
    cacheDir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-client-'));
    cleanups.push(() => rm(cacheDir, { recursive: true, force: true }));
  });

  afterEach(async () => {
    while (cleanups.length > 1) await cleanups.pop()!();
  });

  const descriptor: BaseDescriptor = { name: BASE.name, hash: BASE.hash, files: [], identitySize: 784 };
  const welcome = (hello: Hello, signer: Identity, signedBase: BaseDescriptor, sentBase: BaseDescriptor) => ({
    protocolVersion: PROTOCOL_VERSION,
    clientId: clientIdFromSigningKey(hello.signingKey),
    signature: encodeKey(signText(welcomeSignedText(hello.signingKey, hello.nonce, signedBase), signer.signing.secretKey)),
    base: sentBase,
    headSpec: DIGIT_HEAD,
    manifest: initial.manifest,
    limits: { maxUpdateBytes: 1 << 24, chunkBytes: 1 << 20, maxMessageBytes: 1 << 26 },
  });

  async function client(url: string): Promise<FedtlClient> {
    const { train } = await digits();
    const pub = publicIdentity(coordinator);
    const c = new FedtlClient({
      url,
      coordinator: { signingKey: pub.signingKey, boxKey: pub.boxKey },
      identity: generateIdentity(),
      data: { train },
      cacheDir,
      backoff: { min: 50, max: 100 },
      logger: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
    }).start();
    cleanups.push(() => c.close());
    return c;
  }

  it('refuses a server that does not hold the pinned key (BAD_SIGNATURE) and sends it nothing', async () => {
    const impostor = generateIdentity();
    const server = await standIn((socket, hello) => socket.emit('welcome', welcome(hello, impostor, descriptor, descriptor)));
    cleanups.push(server.close);
    const c = await client(server.url);
    await expect(c.done).rejects.toMatchObject({ code: 'BAD_SIGNATURE' });
    expect(server.updates).toBe(0);
  });

  it('refuses a welcome whose base files differ from what the coordinator signed', async () => {
    // The signature covers every file's name, size and SHA-256: swapping one (say, a vocabulary) is detected.
    const signed: BaseDescriptor = { name: 'text-base', hash: 'a'.repeat(64), files: [{ name: 'vocabulary.json', bytes: 10, sha256: 'b'.repeat(64) }] };
    const swapped: BaseDescriptor = { ...signed, files: [{ name: 'vocabulary.json', bytes: 10, sha256: 'c'.repeat(64) }] };
    const server = await standIn((socket, hello) => socket.emit('welcome', welcome(hello, coordinator, signed, swapped)));
    cleanups.push(server.close);
    const c = await client(server.url);
    await expect(c.done).rejects.toMatchObject({ code: 'BAD_SIGNATURE' });
  });

  it('asks for weights it does not hold (weights:missing), trains on them once sent, and later uses them by digest', async () => {
    // Prepare: a stand-in coordinator whose first fit refers to weights this new client never received.
    const asked: unknown[] = [];
    let updates = 0;
    let bothSent!: () => void;
    const twoUpdates = new Promise<void>((resolve) => (bothSent = resolve));
    const server = await standIn((socket, hello) => {
      socket.emit('welcome', welcome(hello, coordinator, descriptor, descriptor));
      const weights = float32ToBytes(initial.data);
      const digest = createHash('sha256').update(weights).digest('hex');
      const config = { epochs: 1, batchSize: 32, learningRate: 0.01, optimizer: 'sgd' as const };
      const deadline = Date.now() + 20_000;
      const fit = (roundId: string, round: number) => ({ roundId, round, weights, config, deadline, signature: encodeKey(signText(roundSignedText('fit', roundId, round, deadline, digest, config), coordinator.signing.secretKey)) });
      const reference = (roundId: string, round: number) => ({ ...fit(roundId, round), weights: new Uint8Array(0), weightsDigest: digest });
      socket.on('ready', (_message: unknown, ack: (reply: unknown) => void) => {
        ack({ ok: true });
        socket.emit('fit', reference('r1', 1));
      });
      socket.on('weights:missing', (message: unknown, ack: (reply: unknown) => void) => {
        asked.push(message);
        ack({ ok: true });
        socket.emit('fit', fit('r1', 1));
      });
      // After the first update: round 2 refers to the same weights, which the client now holds.
      socket.on('update', () => {
        if (++updates === 1) socket.emit('fit', reference('r2', 2));
        else bothSent();
      });
    });
    cleanups.push(server.close);
    const c = await client(server.url);

    // Execute
    await within(twoUpdates, 'two updates', 20_000);

    // Assert: one ask, naming the round and the digest; two updates; the client is still running.
    expect(server.updates).toBe(2);
    expect(asked).toEqual([{ roundId: 'r1', weightsDigest: createHash('sha256').update(float32ToBytes(initial.data)).digest('hex') }]);
    expect(c.connected).toBe(true);
  });

  it('refuses a round message not signed by the coordinator, and trains nothing for it', async () => {
    // Prepare: a genuine welcome, then a fit request signed by another key.
    const forger = generateIdentity();
    const server = await standIn((socket, hello) => {
      socket.emit('welcome', welcome(hello, coordinator, descriptor, descriptor));
      socket.on('ready', (_message: unknown, ack: (reply: unknown) => void) => {
        ack({ ok: true });
        const weights = float32ToBytes(initial.data);
        const config = { epochs: 1, batchSize: 32, learningRate: 0.01, optimizer: 'sgd' as const };
        const deadline = Date.now() + 20_000;
        const digest = createHash('sha256').update(weights).digest('hex');
        const fit = (roundId: string, signer: Identity) => ({ roundId, round: 1, weights, config, deadline, signature: encodeKey(signText(roundSignedText('fit', roundId, 1, deadline, digest, config), signer.signing.secretKey)) });
        socket.emit('fit', fit('forged-r1', forger));
      });
    });
    cleanups.push(server.close);
    const c = await client(server.url);
    // Execute + Assert: the forged fit is refused as fatal; no update was sealed or sent for it.
    await expect(c.done).rejects.toMatchObject({ code: 'BAD_SIGNATURE' });
    expect(server.updates).toBe(0);
  });
});
