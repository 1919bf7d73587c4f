/**
 * Faults against a real coordinator and real FedtlClients on loopback: clients dying mid-round, a
 * coordinator restarted from its checkpoint on the same port, and tensor memory with misbehaving
 * clients present.
 */
import * as tf from '@tensorflow/tfjs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FedtlClient, type ClientRoundEvent } from '../../client/client.ts';
import type { LabeledDataset } from '../../client/data/dataset.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { digits, disjointParts } from '../support/federation.ts';
import {
  disguisedDelta,
  EventQueue,
  Harness,
  makeDelta,
  maxAbsDifference,
  membersReached,
  recordingLogger,
  useHarness,
  weightedMean,
  within,
} from '../support/hostile.ts';

describe('coordinator under faults', () => {
  let harness: Harness | undefined;
  const startHarness = useHarness();
  let clients: FedtlClient[] = [];
  let cacheDir = '';
  let parts: LabeledDataset[] = [];

  beforeAll(async () => {
    await selectBackend({ log: false });
    parts = disjointParts((await digits()).train, [200, 300]);
  });

  afterEach(async () => {
    for (const client of clients) client.close();
    clients = [];
    if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
    cacheDir = '';
  });

  /** Starts real client `i` (identity `i`, data part `i`); its round events go to the returned queue. */
  async function startClient(h: Harness, i: number): Promise<EventQueue<ClientRoundEvent>> {
    cacheDir ||= await mkdtemp(path.join(os.tmpdir(), 'fedtl-faults-'));
    const events = new EventQueue<ClientRoundEvent>();
    clients[i] = new FedtlClient({
      url: h.coordinator.url,
      coordinator: h.coordinatorKeys,
      identity: h.identities[i]!,
      data: { train: parts[i]! },
      cacheDir: path.join(cacheDir, `client-${i}`),
      seed: i,
      backoff: { min: 100, max: 400 },
      onRound: (event) => events.push(event),
      logger: recordingLogger(),
    }).start();
    return events;
  }

  it('completes a round without a client killed mid-round, counting a client that answered then died once', async () => {
    // Prepare: two real clients, a client that dies on receiving its fit, and one that answers then dies.
    harness = await startHarness({ allowed: 4, rounds: 2, strategy: { minClients: 2, minUpdates: 2 } });
    const h = harness;
    const events = [await startClient(h, 0), await startClient(h, 1)];
    const [killed, answersThenDies] = await h.ready([2, 3], () => 400);
    await membersReached(h.coordinator.loop, 4);
    const initial = Float32Array.from(h.coordinator.loop.weights);

    // Execute
    const run = h.coordinator.run();
    await killed!.fits.next('fit');
    killed!.close();
    const late = await answersThenDies!.answerNext(makeDelta(h.parameterCount, 3), 400);
    answersThenDies!.close();
    const history = await run;

    // Assert: round 1 = the weighted mean of the two real clients and the one that answered; the
    // killed client is dropped, nothing is counted twice; round 2 carries on with the survivors.
    expect(late.ack).toEqual({ ok: true });
    const round1 = await Promise.all(events.map((queue) => queue.next('round 1 event')));
    expect(round1.map((e) => [e.round, e.accepted])).toEqual([[1, true], [1, true]]);
    expect(history[0]).toMatchObject({ selected: 4, accepted: 3, dropped: 1, examples: 200 + 300 + 400 });
    const expected = weightedMean(initial, [...round1.map((e) => ({ delta: e.delta, examples: e.exampleCount })), { delta: late.delta, examples: 400 }]);
    expect(maxAbsDifference(h.roundWeights[0]!, expected)).toBeLessThan(1e-6);
    // Round 2 may start before the coordinator notices the second death (then it selects and drops it).
    expect(history[1]).toMatchObject({ accepted: 2, examples: 500 });
    expect(history[1]!.selected - history[1]!.dropped).toBe(2);
    const round2 = await Promise.all(events.map((queue) => queue.next('round 2 event')));
    expect(maxAbsDifference(h.roundWeights[1]!, weightedMean(h.roundWeights[0]!, round2.map((e) => ({ delta: e.delta, examples: e.exampleCount }))))).toBeLessThan(1e-6);
  });

  it('resumes from its checkpoint after a restart on the same port, with the same head; clients reconnect and carry on', async () => {
    // Prepare: three rounds, checkpoints on; the coordinator is closed right after round 1.
    const checkpointDir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-restart-'));
    try {
      harness = await startHarness({ allowed: 2, rounds: 3, checkpointDir });
      const h = harness;
      const events = [await startClient(h, 0), await startClient(h, 1)];
      const port = h.coordinator.port;
      let closing: Promise<void> | null = null;
      h.onRound = (record) => {
        if (record.round === 1) closing = h.coordinator.close();
      };
      const first = await h.coordinator.run();
      await closing;
      expect(first).toHaveLength(1);
      const head1 = Buffer.from(h.roundWeights[0]!.buffer.slice(0));
      const runId = first[0]!.roundId.split('-r1-')[0]!;

      // Execute: a new coordinator on the same port and checkpoint directory.
      h.onRound = null;
      h.coordinator = await h.startCoordinator(port);

      // Assert: it resumes after round 1 with exactly the checkpointed head.
      expect(h.coordinator.port).toBe(port);
      expect(h.coordinator.loop.completedRounds).toBe(1);
      expect(Buffer.from(h.coordinator.loop.weights.buffer, h.coordinator.loop.weights.byteOffset, h.coordinator.loop.weights.byteLength).equals(head1)).toBe(true);
      const history = await h.coordinator.run();
      expect(history.map((r) => r.round)).toEqual([1, 2, 3]);
      expect(history.slice(1).every((r) => r.roundId.startsWith(`${runId}-r`) && r.accepted === 2)).toBe(true);
      const notices = await within(Promise.all(clients.map((c) => c.done)), 'clients to finish');
      expect(notices.every((n) => n.rounds === 3)).toBe(true);
      // Each client answered rounds 1, 2 and 3 exactly once, all accepted; round 2 started from head 1.
      const seen = await Promise.all(events.map(async (queue) => [await queue.next(), await queue.next(), await queue.next()]));
      for (const perClient of seen) expect(perClient.map((e) => [e.round, e.accepted])).toEqual([[1, true], [2, true], [3, true]]);
      const round2 = seen.map((perClient) => ({ delta: perClient[1]!.delta, examples: perClient[1]!.exampleCount }));
      expect(maxAbsDifference(h.roundWeights[1]!, weightedMean(new Float32Array(head1.buffer, head1.byteOffset, head1.byteLength / 4), round2))).toBeLessThan(1e-6);
    } finally {
      await rm(checkpointDir, { recursive: true, force: true });
    }
  });

  it('does not grow tensor memory across rounds with misbehaving clients present', async () => {
    harness = await startHarness({ allowed: 3, rounds: 4, strategy: { minClients: 3, minUpdates: 2 } });
    const h = harness;
    const tensorsAfterRound: number[] = [];
    h.onRound = () => tensorsAfterRound.push(tf.memory().numTensors);
    const events = [await startClient(h, 0), await startClient(h, 1)];
    const [attacker] = await h.ready([2], () => 100);
    await membersReached(h.coordinator.loop, 3);
    const n = h.parameterCount;
    // Every round the attacker sends garbage, NaN, a wrong shape and a replay, then a valid update.
    let previous: Uint8Array | null = null;
    attacker!.socket.on('fit', (fit: { roundId: string }) => {
      void (async () => {
        const nan = makeDelta(n, 1);
        nan[0] = Number.NaN;
        await attacker!.send(new Uint8Array(64));
        await attacker!.send(attacker!.seal(fit.roundId, disguisedDelta(nan), 100));
        await attacker!.send(attacker!.seal(fit.roundId, makeDelta(n + 1, 1), 100));
        if (previous) await attacker!.send(previous);
        previous = attacker!.seal(fit.roundId, makeDelta(n, 2), 100);
        await attacker!.send(previous);
      })().catch(() => undefined); // the run may end (and disconnect it) mid-sequence
    });

    const history = await h.coordinator.run();

    expect(history).toHaveLength(4);
    expect(history.every((r) => r.accepted === 3)).toBe(true);
    expect(history[3]!.rejected).toEqual({ BAD_MESSAGE: 1, NON_FINITE: 1, BAD_SHAPE: 1, STALE_ROUND: 1 });
    expect(tensorsAfterRound).toHaveLength(4);
    // The real clients hold their heads' variables from round 1 on; nothing else may accumulate.
    expect(new Set(tensorsAfterRound.slice(1)).size).toBe(1);
    const last = await Promise.all(events.map(async (queue) => {
      let event = await queue.next();
      while (event.round < 4) event = await queue.next();
      return event;
    }));
    expect(last.every((e) => e.accepted)).toBe(true);
  });
});
