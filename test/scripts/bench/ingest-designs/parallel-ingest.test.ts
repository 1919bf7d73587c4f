/**
 * ParallelIngest with real keys and real worker threads: the merged partial sums equal the
 * sequential weighted sum, rejected updates (checked inside a worker) leave no trace, each round
 * starts from zero, replays are refused, and close() terminates the workers.
 */
import { Worker } from 'node:worker_threads';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ParallelIngest } from '../../../../scripts/bench/ingest-designs/parallel-ingest.ts';
import { generateIdentity, publicIdentity, type Identity, type PublicIdentity } from '../../../../shared/crypto/identity.ts';
import { sealUpdate } from '../../../../shared/crypto/update-envelope.ts';
import { WeightedDeltaMean } from '../../../../shared/strategy/fed-avg.ts';

const P = 1000;
const coordinator = generateIdentity();
const clients: Identity[] = [generateIdentity(), generateIdentity(), generateIdentity()];
const directory = new Map<string, PublicIdentity>(clients.map((c) => [publicIdentity(c).clientId, publicIdentity(c)]));
const idOf = (c: Identity): string => publicIdentity(c).clientId;

function makeDelta(seed: number, length = P): Float32Array {
  const delta = new Float32Array(length);
  let s = seed * 2654435761;
  for (let i = 0; i < length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    delta[i] = (s / 2 ** 32 - 0.5) * 0.1;
  }
  return delta;
}

function seal(client: Identity, roundId: string, delta: Float32Array, exampleCount: number): Uint8Array {
  return sealUpdate({ header: { roundId, exampleCount, metrics: { loss: 0.5 } }, delta }, { clientIdentity: client, coordinatorBoxKey: publicIdentity(coordinator).boxKey });
}

function maxRelativeDifference(a: Float64Array, b: Float64Array): number {
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i] as number));
    diff = Math.max(diff, Math.abs((a[i] as number) - (b[i] as number)));
  }
  return scale === 0 ? diff : diff / scale;
}

describe('ParallelIngest', () => {
  let ingest: ParallelIngest | undefined;
  let start: () => Promise<ParallelIngest>;

  beforeAll(() => {
    start = async () => (ingest = await ParallelIngest.start({ identity: coordinator, resolveClientKeys: (id) => directory.get(id), workers: 2 }));
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    await ingest?.close();
    ingest = undefined;
  });

  it('merges the workers’ partial sums into the sequential weighted sum (real keys)', async () => {
    // Prepare: 8 updates from 3 clients with different example counts.
    const pool = await start();
    const updates = Array.from({ length: 8 }, (_, k) => ({ client: clients[k % 3] as Identity, delta: makeDelta(k + 1), n: 10 + 7 * k }));
    const sequential = new WeightedDeltaMean(new Float32Array(P));
    const expected = new Float64Array(P);
    for (const u of updates) {
      sequential.add({ clientId: idOf(u.client), delta: u.delta, exampleCount: u.n, metrics: {} });
      for (let i = 0; i < P; i++) expected[i] = (expected[i] as number) + u.n * (u.delta[i] as number);
    }
    // Execute: all submitted at once, so both workers get some.
    pool.beginRound({ roundId: 'r1', parameterCount: P });
    const results = await Promise.all(updates.map((u) => pool.submit(seal(u.client, 'r1', u.delta, u.n), { clientId: idOf(u.client) })));
    const partial = await pool.finishRound();
    // Assert
    expect(results.map((r) => r.ok)).toEqual(updates.map(() => true));
    const first = results[0];
    if (first?.ok) expect(first.header).toMatchObject({ roundId: 'r1', clientId: idOf(clients[0] as Identity), exampleCount: 10, metrics: { loss: 0.5 } });
    expect(partial).toMatchObject({ roundId: 'r1', count: 8, exampleCount: updates.reduce((a, u) => a + u.n, 0) });
    expect(maxRelativeDifference(partial.sum, expected)).toBeLessThan(1e-9);
    const merged = new WeightedDeltaMean(new Float32Array(P));
    merged.addPartial(partial.sum, partial.exampleCount, partial.count);
    const a = merged.finish();
    const b = sequential.finish();
    for (let i = 0; i < P; i++) expect(Math.abs((a[i] as number) - (b[i] as number))).toBeLessThanOrEqual(1e-9 + 1e-6 * Math.abs(b[i] as number));
  });

  it('rejects bad updates inside a worker and leaves the sum untouched', async () => {
    const pool = await start();
    const good = makeDelta(42);
    pool.beginRound({ roundId: 'r2', parameterCount: P });
    // Tampered: one ciphertext byte flipped after sealing.
    const tampered = seal(clients[1] as Identity, 'r2', makeDelta(7), 500);
    tampered[tampered.length - 100]! ^= 0x01;
    const outcomes = await Promise.all([
      pool.submit(seal(clients[0] as Identity, 'r2', good, 3), { clientId: idOf(clients[0] as Identity) }),
      pool.submit(tampered, { clientId: idOf(clients[1] as Identity) }),
      pool.submit(seal(clients[1] as Identity, 'r1', makeDelta(8), 500), { clientId: idOf(clients[1] as Identity) }),
      pool.submit(seal(clients[2] as Identity, 'r2', makeDelta(9, P - 1), 500), { clientId: idOf(clients[2] as Identity) }),
      // Sealed by client 2, claimed by the connection of client 1.
      pool.submit(seal(clients[2] as Identity, 'r2', makeDelta(10), 500), { clientId: idOf(clients[1] as Identity) }),
      // Finite values above maxAbs (default 1e6).
      pool.submit(seal(clients[2] as Identity, 'r2', new Float32Array(P).fill(2e6), 500), { clientId: idOf(clients[2] as Identity) }),
    ]);
    const partial = await pool.finishRound();
    expect(outcomes.map((o) => (o.ok ? 'ok' : o.code))).toEqual(['ok', 'BAD_SIGNATURE', 'STALE_ROUND', 'BAD_SHAPE', 'BAD_SIGNATURE', 'OUT_OF_RANGE']);
    // Only the good update is in the sum: exactly 3 × delta.
    expect(partial.count).toBe(1);
    expect(partial.exampleCount).toBe(3);
    for (let i = 0; i < P; i++) expect(partial.sum[i]).toBe(3 * (good[i] as number));
  });

  it('refuses replays, including a duplicate in flight, and unknown senders', async () => {
    const pool = await start();
    pool.beginRound({ roundId: 'r3', parameterCount: P });
    const sealed = seal(clients[0] as Identity, 'r3', makeDelta(3), 5);
    const sender = { clientId: idOf(clients[0] as Identity) };
    // Copies: a whole-buffer envelope is moved to the worker, so each submission gets its own bytes.
    const [a, b] = await Promise.all([pool.submit(sealed.slice(), sender), pool.submit(sealed.slice(), sender)]);
    const later = await pool.submit(sealed.slice(), sender);
    const stranger = generateIdentity();
    const unknown = await pool.submit(seal(stranger, 'r3', makeDelta(4), 5), { clientId: idOf(stranger) });
    const partial = await pool.finishRound();
    expect([a, b].map((r) => (r.ok ? 'ok' : r.code)).sort()).toEqual(['REPLAY', 'ok']);
    expect(later).toMatchObject({ ok: false, code: 'REPLAY' });
    expect(unknown).toMatchObject({ ok: false, code: 'UNKNOWN_CLIENT' });
    expect(partial.count).toBe(1);
    // Outside a round nothing is accepted.
    expect(await pool.submit(seal(clients[0] as Identity, 'r3', makeDelta(5), 5), sender)).toMatchObject({ ok: false, code: 'STALE_ROUND' });
  });

  it('starts every round from zero', async () => {
    const pool = await start();
    const d1 = makeDelta(11);
    const d2 = makeDelta(12);
    pool.beginRound({ roundId: 'a', parameterCount: P });
    await Promise.all([
      pool.submit(seal(clients[0] as Identity, 'a', d1, 2), { clientId: idOf(clients[0] as Identity) }),
      pool.submit(seal(clients[1] as Identity, 'a', d1, 2), { clientId: idOf(clients[1] as Identity) }),
    ]);
    const first = await pool.finishRound();
    pool.beginRound({ roundId: 'b', parameterCount: P });
    expect((await pool.submit(seal(clients[2] as Identity, 'b', d2, 5), { clientId: idOf(clients[2] as Identity) })).ok).toBe(true);
    const second = await pool.finishRound();
    // An empty round is all zeros.
    pool.beginRound({ roundId: 'c', parameterCount: P });
    const empty = await pool.finishRound();
    expect(first).toMatchObject({ count: 2, exampleCount: 4 });
    expect(second).toMatchObject({ roundId: 'b', count: 1, exampleCount: 5 });
    for (let i = 0; i < P; i++) expect(second.sum[i]).toBe(5 * (d2[i] as number));
    expect(empty).toMatchObject({ roundId: 'c', count: 0, exampleCount: 0 });
    expect(empty.sum.every((x) => x === 0)).toBe(true);
    expect(() => {
      pool.beginRound({ roundId: 'd', parameterCount: P });
      pool.beginRound({ roundId: 'e', parameterCount: P });
    }).toThrow(/still open/);
  });

  it('close() terminates the workers and refuses further work', async () => {
    const terminate = vi.spyOn(Worker.prototype, 'terminate');
    const pool = await start();
    pool.beginRound({ roundId: 'z', parameterCount: P });
    await pool.close();
    expect(terminate).toHaveBeenCalledTimes(2);
    const exitCodes = await Promise.all(terminate.mock.results.map((r) => r.value as Promise<number>));
    expect(exitCodes).toHaveLength(2);
    expect(await pool.submit(seal(clients[0] as Identity, 'z', makeDelta(1), 1), { clientId: idOf(clients[0] as Identity) })).toMatchObject({ ok: false, code: 'INTERNAL' });
    expect(() => pool.beginRound({ roundId: 'y', parameterCount: P })).toThrow(/closed/);
    await pool.close(); // idempotent
    expect(terminate).toHaveBeenCalledTimes(2);
  });
});
