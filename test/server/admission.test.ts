/**
 * The admission path (server/admission.ts) against a real coordinator on loopback: what a peer
 * that has not presented an accepted hello can make the coordinator buffer, how long it may stay,
 * how many such peers there may be, how often one address may fail a hello, and that a recorded
 * hello, `ready` or `evaluation` cannot be used by anyone but the client, on its own connection.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NonceWindow, WindowCounter } from '../../server/admission.ts';
import { signEvaluation } from '../../shared/crypto/hello.ts';
import { Harness, makeDelta, recordingLogger, useHarness, within } from '../support/hostile.ts';
import { RawEngineConnection } from '../support/raw-engine.ts';
import { PinningConnection } from '../stress/stress-support.ts';

describe('admission path', () => {
  let harness: Harness | undefined;
  const startHarness = useHarness();
  const raw: RawEngineConnection[] = [];

  afterEach(async () => {
    for (const connection of raw.splice(0)) connection.close();
  });

  async function open(url: string, localAddress?: string): Promise<RawEngineConnection> {
    const connection = await RawEngineConnection.attempt(url, localAddress);
    raw.push(connection);
    return connection;
  }

  it('closes an unadmitted connection that announces a binary event instead of a hello, before any attachment is buffered', async () => {
    harness = await startHarness({ allowed: 1, rounds: 1 });
    const peer = await open(harness.coordinator.url);
    // A binary event announcing one attachment, with no hello first.
    peer.sendPacket('51-["update",{"_placeholder":true,"num":0}]');
    await peer.waitClosed(2_000);
    // Ten announced attachments after a (bad) hello: refused by the decoder, not buffered.
    const second = await open(harness.coordinator.url);
    second.sendPacket('0{}');
    second.sendPacket('510-["update",{"_placeholder":true,"num":0}]');
    await second.waitClosed(2_000);
  });

  it('sizes the incoming frame limit from the largest update, and closes a connection that sends a larger frame', async () => {
    harness = await startHarness({ allowed: 1, rounds: 1 });
    const limits = harness.coordinator.limits;
    // Clients send nothing larger than an update; base chunks travel the other way.
    expect(limits.maxMessageBytes).toBe(limits.maxUpdateBytes + 4096);
    expect(limits.maxMessageBytes).toBeLessThan(limits.chunkBytes);
    const peer = await open(harness.coordinator.url);
    peer.sendBinary(new Uint8Array(limits.maxMessageBytes + 1));
    await peer.waitClosed(2_000);
  });

  it('admits an update with one attachment but cuts off an admitted client that sends two', async () => {
    harness = await startHarness({ allowed: 1, rounds: 1 });
    const client = await harness.connect(0);
    client.socket.emit('update', new Uint8Array(8), new Uint8Array(8));
    expect(await within(client.disconnected, 'the disconnect')).toMatch(/transport close|server disconnect/);
  });

  it('closes a connection that presents no hello within the admission timeout, with ADMISSION_TIMEOUT', async () => {
    harness = await startHarness({ allowed: 1, rounds: 1, admissionLimits: { admissionTimeoutMs: 300 } });
    const peer = await open(harness.coordinator.url);
    await peer.waitClosed(3_000);
    expect(peer.connectErrors.map((e) => e.data?.code)).toEqual(['ADMISSION_TIMEOUT']);
  });

  it('destroys a timed-out peer that ignores the close handshake within a second, counting it until then', async () => {
    harness = await startHarness({ allowed: 1, rounds: 1, admissionLimits: { admissionTimeoutMs: 300 } });
    let closed = false;
    const peer = new PinningConnection(harness.coordinator.port, '127.0.0.5', () => (closed = true));
    expect(await peer.holding).toBe(true);
    expect(harness.coordinator.admissionStats.unadmitted).toBe(1);
    // Timed out at 300 ms; a raw TCP peer never answers WebSocket's close frame (ws would wait 30 s).
    await within(
      (async () => {
        while (!closed) await new Promise((resolve) => setTimeout(resolve, 20));
      })(),
      'the coordinator to drop the peer',
      3_000,
    );
    expect(harness.coordinator.admissionStats.unadmitted).toBe(0);
  });

  it('caps unadmitted connections per address and in total, refusing the extra ones with TOO_MANY_CONNECTIONS', async () => {
    harness = await startHarness({ allowed: 1, rounds: 1, admissionLimits: { maxUnadmittedPerAddress: 3, maxUnadmitted: 5 } });
    const url = harness.coordinator.url;
    const held = [await open(url, '127.0.0.2'), await open(url, '127.0.0.2'), await open(url, '127.0.0.2')];
    const overAddress = await open(url, '127.0.0.2');
    await overAddress.waitClosed();
    expect(overAddress.connectErrors[0]).toMatchObject({ data: { code: 'TOO_MANY_CONNECTIONS' } });
    expect(overAddress.connectErrors[0]!.message).toMatch(/from 127\.0\.0\.2 .*limit 3/);
    held.push(await open(url, '127.0.0.3'), await open(url, '127.0.0.3'));
    expect(held.every((c) => !c.isClosed)).toBe(true);
    // Five unadmitted in total: an honest client from yet another address is refused, clearly.
    const refused = await harness.refusal(harness.hello(harness.identities[0]!));
    expect(refused.code).toBe('TOO_MANY_CONNECTIONS');
    expect(refused.message).toMatch(/limit 5/);
    // Once the held connections go, the honest client is admitted.
    for (const connection of held) connection.close();
    await Promise.all(held.map((c) => c.closed));
    await within(
      (async () => {
        while (harness!.coordinator.admissionStats.unadmitted > 0) await new Promise((resolve) => setImmediate(resolve));
      })(),
      'the coordinator to see the closes',
    );
    const client = await harness.connect(0);
    expect(client.connected).toBe(true);
  });

  it('gives a connection one hello: a refused hello closes it, and refused hellos per address are rate limited across reconnects', async () => {
    const logger = recordingLogger();
    harness = await startHarness({ allowed: 1, rounds: 1, logger, admissionLimits: { maxRefusedHellosPerMinute: 3 } });
    const peer = await open(harness.coordinator.url, '127.0.0.4');
    peer.sendPacket('0{"bad":true}');
    await peer.waitClosed(2_000);
    expect(peer.connectErrors.map((e) => e.data?.code)).toEqual(['BAD_MESSAGE']);
    // Two more refusals from that address (new connections), then even a good hello from it waits a minute.
    for (let i = 0; i < 2; i++) {
      const again = await open(harness.coordinator.url, '127.0.0.4');
      again.sendPacket('0{"bad":true}');
      await again.waitClosed(2_000);
    }
    // From 127.0.0.1, another address, the honest client is not affected.
    expect((await harness.connect(0)).connected).toBe(true);
    const limited = await open(harness.coordinator.url, '127.0.0.4');
    limited.sendPacket('0{"bad":true}');
    await limited.waitClosed(2_000);
    expect(limited.connectErrors.map((e) => e.data?.code)).toEqual(['RATE_LIMITED']);
    // The log got one line per refusal up to a cap, not one per attempt.
    for (let i = 0; i < 10; i++) {
      const flood = await open(harness.coordinator.url, '127.0.0.4');
      flood.sendPacket('0{"bad":true}');
      await flood.waitClosed(2_000);
    }
    expect(logger.warnings.items.filter((w) => w.includes('127.0.0.4')).length).toBeLessThanOrEqual(6);
  });

  it('refuses, after a coordinator restart, a hello recorded on the wire before it', async () => {
    harness = await startHarness({ allowed: 2, rounds: 1 });
    const h = harness;
    const victim = await h.connect(0);
    const recorded = victim.sentAuth;
    const port = h.coordinator.port;
    victim.close();
    await h.coordinator.close();
    h.coordinator = await h.startCoordinator(port);
    const replay = await h.refusal(recorded);
    expect(replay.code).toBe('BAD_SIGNATURE');
    // The client itself reconnects fine.
    expect((await h.connect(0)).connected).toBe(true);
  });

  it('keeps a client\'s message-rate window across reconnections', async () => {
    harness = await startHarness({ allowed: 1, rounds: 1, maxMessagesPerSecond: 1 });
    // 10 messages per 10 s: 8 on a first connection, then 8 on a second one.
    const first = await harness.connect(0);
    for (let i = 0; i < 8; i++) await first.call('ready', 'x');
    first.close();
    const second = await harness.connect(0);
    const problem = second.problems.next('the rate-limit problem');
    for (let i = 0; i < 8; i++) second.socket.emit('ready', 'x', () => undefined);
    expect(await problem).toMatchObject({ code: 'RATE_LIMITED' });
    await within(second.disconnected, 'the disconnect');
  });

  it('refuses unsigned or foreign ready/evaluation, and evaluation counts over the declared validation split', async () => {
    harness = await startHarness({ allowed: 2, rounds: 1, loop: { federatedEvaluation: true, evaluateTimeoutMs: 10_000 } });
    const h = harness;
    const [a, b] = [await h.connect(0), await h.connect(1)];
    // Unsigned ready (what an on-path attacker could inject), and one signed for another connection.
    expect(await a.call('ready', { baseHash: a.welcome.base.hash, examples: 100, validationExamples: 10 })).toMatchObject({ ok: false, code: 'BAD_MESSAGE' });
    const foreign = { coordinatorSigningKey: h.coordinatorKeys.signingKey, helloNonce: b.binding.helloNonce };
    const { signReady } = await import('../../shared/crypto/hello.ts');
    expect(await a.call('ready', signReady(a.identity, foreign, { baseHash: a.welcome.base.hash, examples: 100, validationExamples: 10 }))).toMatchObject({ ok: false, code: 'BAD_SIGNATURE' });
    expect(await a.ready(100, undefined, 50)).toEqual({ ok: true });
    expect(await b.ready(100, undefined, 50)).toEqual({ ok: true });
    a.answerFits(() => ({ delta: makeDelta(h.parameterCount, 1), examples: 100 }));
    b.answerFits(() => ({ delta: makeDelta(h.parameterCount, 2), examples: 100 }));
    const run = h.coordinator.run();
    const [evalA, evalB] = [await a.evaluates.next('evaluate'), await b.evaluates.next('evaluate')];
    const report = (examples: number, accuracy: number) => ({ roundId: evalA.roundId, examples, loss: 0.5, accuracy });
    // The attack from the report: 1e9 examples at 100 %.
    expect(await a.call('evaluation', signEvaluation(a.identity, a.binding, report(1e9, 1)))).toMatchObject({ ok: false, code: 'OUT_OF_RANGE' });
    expect(await a.call('evaluation', report(50, 1))).toMatchObject({ ok: false, code: 'BAD_MESSAGE' });
    expect(await a.call('evaluation', signEvaluation(a.identity, b.binding, report(50, 1)))).toMatchObject({ ok: false, code: 'BAD_SIGNATURE' });
    expect(await a.call('evaluation', signEvaluation(a.identity, a.binding, report(50, 0.8)))).toEqual({ ok: true });
    expect(await b.call('evaluation', signEvaluation(b.identity, b.binding, { ...report(50, 0.6), roundId: evalB.roundId }))).toEqual({ ok: true });
    const [record] = await run;
    expect(record).toMatchObject({ evalExamples: 100 });
    expect(record!.evalAccuracy).toBeCloseTo(0.7, 10);
  });
});

describe('admission bookkeeping', () => {
  it('NonceWindow finds a nonce for at least one window and forgets it after two, without scanning', () => {
    const window = new NonceWindow(1_000, 0);
    expect(window.add('a', 0)).toBe(true);
    expect(window.add('a', 999)).toBe(false);
    expect(window.add('b', 1_500)).toBe(true);
    expect(window.add('a', 2_499)).toBe(false);
    // Generations turn over at 1500 and 2500: 'a' (from 0) is gone, 'b' (from 1500) is still known.
    expect(window.add('a', 2_500)).toBe(true);
    expect(window.add('b', 2_600)).toBe(false);
    expect(window.size).toBe(2);
    expect(window.add('c', 10_000)).toBe(true);
    expect(window.size).toBe(1);
  });

  it('WindowCounter counts per key within a window and starts over in the next', () => {
    const counter = new WindowCounter(100, 0);
    expect(counter.increment('x', 10)).toBe(1);
    expect(counter.increment('x', 20)).toBe(2);
    expect(counter.increment('y', 30)).toBe(1);
    expect(counter.count('x', 99)).toBe(2);
    expect(counter.count('x', 100)).toBe(0);
  });
});
