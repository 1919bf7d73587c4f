/**
 * Hostile updates against a real coordinator on loopback: each bad update is answered with its
 * specific error code, the round's head is exactly the weighted mean of the honest updates, and the
 * coordinator keeps running.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import nacl from 'tweetnacl';
import { Server } from 'socket.io';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FedtlClient } from '../../client/client.ts';
import { initialHeadWeights } from '../../server/start-coordinator.ts';
import { encodeKey, generateIdentity, publicIdentity, clientIdFromSigningKey } from '../../shared/crypto/identity.ts';
import { sealUpdate } from '../../shared/crypto/update-envelope.ts';
import { signReady } from '../../shared/crypto/hello.ts';
import { PROTOCOL_VERSION, roundSignedText, welcomeSignedText, type FitRequest, type Hello } from '../../shared/protocol/protocol.ts';
import { float32ToBytes } from '../../shared/weights/flat-weights.ts';
import { DIGIT_HEAD, digits } from '../support/federation.ts';
import {
  BASE,
  disguisedDelta,
  EventQueue,
  Harness,
  makeDelta,
  maxAbsDifference,
  recordingLogger,
  useHarness,
  weightedMean,
  within,
  type RawClient,
  type SentUpdate,
} from '../support/hostile.ts';

describe('coordinator under hostile updates', () => {
  let harness: Harness | undefined;
  const startHarness = useHarness();

  afterEach(async () => {
    vi.useRealTimers();
  });

  /** Three clients all selected (minUpdates 2): 0 and 1 honest, 2 the attacker. */
  async function twoHonestOneAttacker(options: { rounds?: number; maxMessagesPerSecond?: number; loop?: { roundTimeoutMs?: number } } = {}) {
    harness = await startHarness({
      allowed: 3,
      rounds: options.rounds ?? 1,
      strategy: { minClients: 3, minUpdates: 2 },
      ...(options.maxMessagesPerSecond !== undefined ? { maxMessagesPerSecond: options.maxMessagesPerSecond } : {}),
      ...(options.loop ? { loop: options.loop } : {}),
    });
    const h = harness;
    const [a, b, attacker] = (await h.ready([0, 1, 2])) as [RawClient, RawClient, RawClient];
    const initial = Float32Array.from(h.coordinator.loop.weights);
    return { h, a, b, attacker, initial };
  }

  function answerHonestly(h: Harness, ...clients: RawClient[]): void {
    clients.forEach((c, i) => c.answerFits((fit) => ({ delta: makeDelta(h.parameterCount, 10 * fit.round + i), examples: 100 + 50 * i })));
  }

  it('rejects malformed, mis-shaped, non-finite and out-of-range updates with their codes', async () => {
    const { h, a, b, attacker, initial } = await twoHonestOneAttacker();
    answerHonestly(h, a, b);
    const run = h.coordinator.run();
    const fit = await attacker.fits.next('fit');
    const n = h.parameterCount;
    const valid = attacker.seal(fit.roundId, makeDelta(n, 7), 100);

    // Execute: one bad update at a time, each answered before the next.
    const nan = makeDelta(n, 7);
    nan[123] = Number.NaN;
    const inf = makeDelta(n, 7);
    inf[5] = Number.POSITIVE_INFINITY;
    const huge = makeDelta(n, 7);
    huge[9] = 1e30;
    const tampered = valid.slice();
    tampered[tampered.length - 40] = tampered[tampered.length - 40]! ^ 0xff;
    const otherCoordinator = generateIdentity();
    const attempts: Array<[string, unknown, string]> = [
      ['garbage bytes', new Uint8Array(2000).fill(0x41), 'BAD_MESSAGE'],
      ['empty bytes', new Uint8Array(0), 'BAD_MESSAGE'],
      ['truncated envelope', valid.subarray(0, valid.length - 100), 'BAD_MESSAGE'],
      ['envelope plus trailing bytes', Buffer.concat([valid, Buffer.from([0])]), 'BAD_MESSAGE'],
      ['wrong parameter count', attacker.seal(fit.roundId, makeDelta(n - 1, 7), 100), 'BAD_SHAPE'],
      ['NaN in a validly sealed envelope', attacker.seal(fit.roundId, disguisedDelta(nan), 100), 'NON_FINITE'],
      ['Infinity in a validly sealed envelope', attacker.seal(fit.roundId, disguisedDelta(inf), 100), 'NON_FINITE'],
      ['absurd magnitude', attacker.seal(fit.roundId, huge, 100), 'OUT_OF_RANGE'],
      ['absurd example count', attacker.seal(fit.roundId, makeDelta(n, 7), 2e9), 'BAD_MESSAGE'],
      ['flipped ciphertext byte', tampered, 'BAD_SIGNATURE'],
      ['sealed for another coordinator', sealUpdate({ header: { roundId: fit.roundId, exampleCount: 100 }, delta: makeDelta(n, 7) }, { clientIdentity: attacker.identity, coordinatorBoxKey: otherCoordinator.box.publicKey }), 'DECRYPT_FAILED'],
      ['another round id', attacker.seal(`${fit.roundId}x`, makeDelta(n, 7), 100), 'STALE_ROUND'],
      ['over maxUpdateBytes, under the transport limit', new Uint8Array(h.coordinator.limits.maxUpdateBytes + 1), 'TOO_LARGE'],
      ['a string', 'RlRMVQE=', 'BAD_MESSAGE'],
      ['a number', 42, 'BAD_MESSAGE'],
      ['null', null, 'BAD_MESSAGE'],
      ['an object', { 0: 70, 1: 84, length: 2 }, 'BAD_MESSAGE'],
      ['an array of byte values', Array.from(valid.subarray(0, 64)), 'BAD_MESSAGE'],
    ];
    const codes: Array<[string, string]> = [];
    for (const [what, payload] of attempts) {
      const reply = await attacker.send(payload);
      codes.push([what, reply.ok ? 'ok' : reply.code]);
    }

    // Assert: every code as expected; the attacker leaves; the round is the honest mean.
    expect(codes).toEqual(attempts.map(([what, , code]) => [what, code]));
    attacker.close();
    const history = await run;
    const honest = [await a.sent.next(), await b.sent.next()];
    expect(honest.every((u) => u.ack.ok)).toBe(true);
    expect(history[0]).toMatchObject({ accepted: 2, dropped: 1, examples: 250 });
    // Payloads refused before they reach the loop (not binary, over maxUpdateBytes) are not in the round's stats.
    expect(history[0]!.rejected).toEqual({ BAD_MESSAGE: 5, BAD_SHAPE: 1, NON_FINITE: 2, OUT_OF_RANGE: 1, BAD_SIGNATURE: 1, DECRYPT_FAILED: 1, STALE_ROUND: 1 });
    expect(maxAbsDifference(h.coordinator.loop.weights, weightedMean(initial, honest))).toBeLessThan(1e-6);
  });

  it('counts an update once: the same envelope twice, a second update, and an earlier round\'s envelope are refused', async () => {
    const { h, a, b, attacker, initial } = await twoHonestOneAttacker({ rounds: 2 });
    const run = h.coordinator.run();
    const n = h.parameterCount;
    // The honest clients answer after the attacker, so the round is open for all its attempts.
    const honestRound = async (round: number): Promise<SentUpdate[]> => [
      await a.answerNext(makeDelta(n, 10 * round), 100),
      await b.answerNext(makeDelta(n, 10 * round + 1), 150),
    ];

    // Round 1: a valid update, then the same bytes again, then a fresh second update.
    const fit1 = await attacker.fits.next('round 1 fit');
    const first = attacker.seal(fit1.roundId, makeDelta(n, 42), 300);
    expect(await attacker.send(first)).toEqual({ ok: true });
    expect(await attacker.send(first)).toMatchObject({ ok: false, code: 'DUPLICATE_UPDATE' });
    expect(await attacker.send(attacker.seal(fit1.roundId, makeDelta(n, 43), 300))).toMatchObject({ ok: false, code: 'DUPLICATE_UPDATE' });
    const honest1 = await honestRound(1);

    // Round 2: round 1's envelope replayed, then an honest one.
    const fit2 = await attacker.fits.next('round 2 fit');
    expect(fit2.roundId).not.toBe(fit1.roundId);
    expect(await attacker.send(first)).toMatchObject({ ok: false, code: 'STALE_ROUND' });
    const second = makeDelta(n, 44);
    expect(await attacker.send(attacker.seal(fit2.roundId, second, 300))).toEqual({ ok: true });
    const honest2 = await honestRound(2);
    const history = await run;

    // Assert: each round is the weighted mean with the attacker's accepted update counted once.
    expect([...honest1, ...honest2].every((u) => u.ack.ok)).toBe(true);
    const r1 = [...honest1, { delta: makeDelta(n, 42), examples: 300 }];
    const r2 = [...honest2, { delta: second, examples: 300 }];
    expect(history.map((r) => [r.accepted, r.examples])).toEqual([[3, 550], [3, 550]]);
    expect(history[0]!.rejected).toEqual({ DUPLICATE_UPDATE: 2 });
    expect(history[1]!.rejected).toEqual({ STALE_ROUND: 1 });
    expect(maxAbsDifference(h.roundWeights[0]!, weightedMean(initial, r1))).toBeLessThan(1e-6);
    expect(maxAbsDifference(h.roundWeights[1]!, weightedMean(h.roundWeights[0]!, r2))).toBeLessThan(1e-6);
  });

  it('refuses an update from a client not selected for the round', async () => {
    // Prepare: four clients, half picked each round.
    harness = await startHarness({ allowed: 4, rounds: 1, strategy: { minClients: 2, minUpdates: 2, fractionFit: 0.5 } });
    const h = harness;
    const clients = await h.ready([0, 1, 2, 3]);
    const initial = Float32Array.from(h.coordinator.loop.weights);
    const picked = new EventQueue<{ client: RawClient; fit: FitRequest }>();
    for (const client of clients) client.socket.on('fit', (fit: FitRequest) => picked.push({ client, fit }));
    const run = h.coordinator.run();
    const selected = [await picked.next('first pick'), await picked.next('second pick')];
    const left = clients.filter((c) => !selected.some((s) => s.client === c));
    expect(left).toHaveLength(2);
    const outsider = left[0]!;
    const roundId = selected[0]!.fit.roundId;

    // Execute: the outsider sends a valid envelope for the running round, and garbage.
    const valid = await outsider.send(outsider.seal(roundId, makeDelta(h.parameterCount, 5), 1000));
    const garbage = await outsider.send(new Uint8Array(100));

    // Assert
    expect(valid).toMatchObject({ ok: false, code: 'NOT_SELECTED' });
    expect(garbage).toMatchObject({ ok: false, code: 'NOT_SELECTED' });
    const sent = await Promise.all(selected.map(({ client }, i) => client.send(client.seal(roundId, makeDelta(h.parameterCount, i), 100 + 100 * i)).then((ack) => ({ ack, delta: makeDelta(h.parameterCount, i), examples: 100 + 100 * i }))));
    expect(sent.every((s) => s.ack.ok)).toBe(true);
    const history = await run;
    expect(history[0]).toMatchObject({ selected: 2, accepted: 2, examples: 300 });
    expect(history[0]!.rejected).toEqual({ NOT_SELECTED: 2 });
    expect(maxAbsDifference(h.coordinator.loop.weights, weightedMean(initial, sent))).toBeLessThan(1e-6);
    expect(outsider.fits.items).toHaveLength(0);
  });

  it('refuses an update that arrives after the round\'s deadline (DEADLINE_PASSED), and after its round closed', async () => {
    // Prepare: a short deadline; the attacker holds its round-1 update until after the round closed.
    const { h, a, b, attacker, initial } = await twoHonestOneAttacker({ rounds: 2, loop: { roundTimeoutMs: 1_000 } });
    const run = h.coordinator.run();
    const fit1 = await attacker.fits.next('round 1 fit');
    const late = attacker.seal(fit1.roundId, makeDelta(h.parameterCount, 9), 500);

    // Execute 1: the coordinator's clock passes the deadline while the round is still open
    // (its close timer has not fired yet, as under event-loop lag).
    vi.useFakeTimers({ toFake: ['Date'], now: fit1.deadline + 1 });
    const lagged = await attacker.send(late);
    vi.useRealTimers();
    expect(lagged).toMatchObject({ ok: false, code: 'DEADLINE_PASSED' });
    // The honest clients answer in time (after the clock is real again), in both rounds.
    const r1 = [await a.answerNext(makeDelta(h.parameterCount, 0), 100), await b.answerNext(makeDelta(h.parameterCount, 1), 150)];
    answerHonestly(h, a, b);

    // Execute 2: round 1 closes at its real deadline; round 2's fit is the attacker's cue.
    const fit2 = await attacker.fits.next('round 2 fit');
    const afterRound2 = await attacker.send(late);
    attacker.close();
    const history = await run;

    // Assert: round 1 is the honest mean without the late update; round 2 refused the old envelope.
    expect(afterRound2).toMatchObject({ ok: false, code: 'STALE_ROUND' });
    expect(fit2.round).toBe(2);
    expect(r1.every((u) => u.ack.ok)).toBe(true);
    expect(history[0]).toMatchObject({ attempts: 1, accepted: 2, dropped: 1, examples: 250 });
    expect(history[0]!.rejected).toEqual({ DEADLINE_PASSED: 1 });
    expect(history[1]!.rejected).toEqual({ STALE_ROUND: 1 });
    expect(maxAbsDifference(h.roundWeights[0]!, weightedMean(initial, r1))).toBeLessThan(1e-6);
  });

  it('answers an update sent between rounds with DEADLINE_PASSED when the sender missed the deadline', async () => {
    harness = await startHarness({ allowed: 2, rounds: 1, strategy: { minClients: 2, minUpdates: 1 }, loop: { roundTimeoutMs: 300 } });
    const h = harness;
    const [a, slow] = (await h.ready([0, 1])) as [RawClient, RawClient];
    answerHonestly(h, a);
    const fit = await Promise.all([h.coordinator.run(), slow.fits.next('fit')]);
    // The run is over (the round closed at its deadline without the slow client).
    expect(fit[0][0]).toMatchObject({ accepted: 1, dropped: 1 });
    expect(await slow.send(slow.seal(fit[1].roundId, makeDelta(h.parameterCount, 1), 10))).toMatchObject({ ok: false, code: 'DEADLINE_PASSED' });
    // A client that did answer in time is told there is no round, not that it was late.
    expect(await a.send(a.seal(fit[1].roundId, makeDelta(h.parameterCount, 1), 10))).toMatchObject({ ok: false, code: 'STALE_ROUND' });
  });

  it('survives a message over the transport limit: the sender is cut off, the round goes on', async () => {
    const { h, a, b, attacker, initial } = await twoHonestOneAttacker();
    answerHonestly(h, a, b);
    const run = h.coordinator.run();
    await attacker.fits.next('fit');

    // Execute: one message larger than socket.io's maxHttpBufferSize.
    attacker.socket.emit('update', new Uint8Array(h.coordinator.limits.maxMessageBytes + 1024));

    // Assert: the transport closes the connection; the round completes with the honest clients.
    expect(['transport close', 'transport error']).toContain(await within(attacker.disconnected, 'disconnect after oversized message'));
    const history = await run;
    const honest = [await a.sent.next(), await b.sent.next()];
    expect(history[0]).toMatchObject({ accepted: 2, dropped: 1 });
    expect(maxAbsDifference(h.coordinator.loop.weights, weightedMean(initial, honest))).toBeLessThan(1e-6);
    // And it still admits clients.
    const again = await h.connect(2);
    expect(await again.ready(10)).toEqual({ ok: true });
  });

  it('cuts off a client that floods messages (RATE_LIMITED), whatever the event name', async () => {
    // 5 messages/s averaged over 10 s: at most 50 messages per window.
    harness = await startHarness({ allowed: 4, rounds: 1, strategy: { minClients: 2, minUpdates: 2 }, maxMessagesPerSecond: 5 });
    const h = harness;
    const [a, b] = (await h.ready([0, 1])) as [RawClient, RawClient];
    const updateFlooder = await h.connect(2);
    const noiseFlooder = await h.connect(3);

    // Execute: 60 acknowledged updates from one, 60 unknown events without acks from the other.
    const acks: Array<Promise<unknown>> = [];
    for (let i = 0; i < 60; i++) acks.push(updateFlooder.send(new Uint8Array(8)).catch((error: Error) => error.message));
    for (let i = 0; i < 60; i++) noiseFlooder.socket.emit('nonsense', i);

    // Assert: both are told RATE_LIMITED and dropped; the first messages were answered normally.
    const untilRateLimited = async (client: RawClient): Promise<string[]> => {
      const codes: string[] = [];
      while (codes.at(-1) !== 'RATE_LIMITED') codes.push((await client.problems.next('problem')).code);
      return codes;
    };
    expect(await untilRateLimited(updateFlooder)).toEqual(['RATE_LIMITED']);
    const noise = await untilRateLimited(noiseFlooder);
    expect(noise.at(-1)).toBe('RATE_LIMITED');
    expect(noise.slice(0, -1).every((code) => code === 'BAD_MESSAGE')).toBe(true);
    expect(noise.length).toBeGreaterThan(1);
    expect(await within(updateFlooder.disconnected, 'flooder disconnect')).toBe('io server disconnect');
    expect(await within(noiseFlooder.disconnected, 'noise disconnect')).toBe('io server disconnect');
    const replies = await Promise.all(acks);
    // Packets that arrived in the same batch as the cut-off are dropped with the connection; none was accepted.
    expect(replies.every((r) => r === 'socket has been disconnected' || (r as { code?: string }).code === 'STALE_ROUND')).toBe(true);

    // The honest clients were not affected.
    const initial = Float32Array.from(h.coordinator.loop.weights);
    answerHonestly(h, a, b);
    const history = await h.coordinator.run();
    const honest = [await a.sent.next(), await b.sent.next()];
    expect(history[0]).toMatchObject({ accepted: 2 });
    expect(maxAbsDifference(h.coordinator.loop.weights, weightedMean(initial, honest))).toBeLessThan(1e-6);
  });

  it('answers emits without an ack callback with a problem event instead of crashing', async () => {
    const { h, a, b, attacker, initial } = await twoHonestOneAttacker();
    answerHonestly(h, a, b);

    // Execute: every event, without an ack, with bad payloads (and one with no payload at all).
    attacker.socket.emit('update', new Uint8Array(10));
    attacker.socket.emit('update');
    attacker.socket.emit('evaluation', { roundId: 'x' });
    attacker.socket.emit('base:read', { hash: BASE.hash, file: 'model.json', offset: 0, length: 1 });
    attacker.socket.emit('ready', signReady(attacker.identity, attacker.binding, { baseHash: '0'.repeat(64), examples: 10, validationExamples: 0 }));
    const problems = [];
    for (let i = 0; i < 5; i++) problems.push((await attacker.problems.next(`problem ${i}`)).code);
    expect(problems).toEqual(['STALE_ROUND', 'BAD_MESSAGE', 'BAD_MESSAGE', 'BAD_MESSAGE', 'HASH_MISMATCH']);

    // A valid update without an ack is still counted (and only once).
    const run = h.coordinator.run();
    const fit = await attacker.fits.next('fit');
    const delta = makeDelta(h.parameterCount, 77);
    attacker.socket.emit('update', attacker.seal(fit.roundId, delta, 50));
    const history = await run;
    const honest = [await a.sent.next(), await b.sent.next()];
    expect(history[0]).toMatchObject({ accepted: 3, examples: 300 });
    expect(maxAbsDifference(h.coordinator.loop.weights, weightedMean(initial, [...honest, { delta, examples: 50 }]))).toBeLessThan(1e-6);
    expect(attacker.connected).toBe(true);
  });
});

describe('client-side limits', () => {

  it('refuses to send an update over the coordinator\'s announced maxUpdateBytes (TOO_LARGE)', async () => {
    // Prepare: a stand-in coordinator that announces a 1 KiB update limit and asks for one round.
    const coordinator = generateIdentity();
    const pub = publicIdentity(coordinator);
    const sign = (text: string): string => encodeKey(nacl.sign.detached(new TextEncoder().encode(text), coordinator.signing.secretKey));
    const initial = initialHeadWeights(784, DIGIT_HEAD, 3);
    const http = createServer();
    const server = new Server(http, { maxHttpBufferSize: 1e8 });
    const updates: unknown[] = [];
    const readied = new EventQueue<void>();
    server.on('connection', (socket) => {
      const hello = socket.handshake.auth as Hello;
      const base = { name: BASE.name, hash: BASE.hash, files: [], identitySize: 784 };
      socket.emit('welcome', {
        protocolVersion: PROTOCOL_VERSION,
        clientId: clientIdFromSigningKey(hello.signingKey),
        signature: sign(welcomeSignedText(hello.signingKey, hello.nonce, base)),
        base,
        headSpec: DIGIT_HEAD,
        manifest: initial.manifest,
        limits: { maxUpdateBytes: 1024, chunkBytes: 1 << 20, maxMessageBytes: 1 << 26 },
      });
      socket.on('ready', (_message: unknown, ack: (reply: unknown) => void) => {
        ack({ ok: true });
        const weights = float32ToBytes(initial.data);
        const config = { epochs: 1, batchSize: 32, learningRate: 0.05, optimizer: 'sgd' as const };
        const deadline = Date.now() + 10_000;
        const digest = createHash('sha256').update(weights).digest('hex');
        socket.emit('fit', { roundId: 'r1', round: 1, weights, config, deadline, signature: sign(roundSignedText('fit', 'r1', 1, deadline, digest, config)) });
        readied.push();
      });
      socket.on('update', (sealed: unknown) => updates.push(sealed));
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const logger = recordingLogger();
    const cacheDir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-limits-'));
    const data = await digits();
    const client = new FedtlClient({
      url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
      coordinator: { signingKey: pub.signingKey, boxKey: pub.boxKey },
      identity: generateIdentity(),
      data: { train: data.train },
      cacheDir,
      logger,
    });
    try {
      // Execute
      client.start();
      await readied.next('ready');
      let warning = '';
      while (!warning.includes('TOO_LARGE')) warning = await logger.warnings.next('a TOO_LARGE warning');

      // Assert: the client names the limit and never sent the update; it is still connected.
      expect(warning).toMatch(/sealed update is \d+ bytes, over the coordinator's limit of 1024/);
      expect(updates).toHaveLength(0);
      expect(client.connected).toBe(true);
    } finally {
      client.close();
      await new Promise<void>((resolve) => void server.close(() => resolve()));
      await rm(cacheDir, { recursive: true, force: true });
    }
  });
});
