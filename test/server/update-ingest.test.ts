/**
 * The round loop's worker ingest (server/update-ingest.ts) against the serial path, with real keys,
 * real worker threads and a real coordinator on loopback:
 * - every registered strategy (and a clipping wrapper) gives the serial path's head: within float64
 *   reassociation where workers fold partial sums, bit for bit where they only open updates;
 * - bad updates are refused with the serial path's codes and leave no trace in the aggregate;
 * - a strategy that needs every update is announced with a warning.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FitRound } from '../../server/round-state.ts';
import { defaultIngestWorkers, INGEST_DEFAULTS, UpdateIngest } from '../../server/update-ingest.ts';
import { serveIngest } from '../../server/update-ingest-service.ts';
import { createUpdateOpener } from '../../server/update-opener.ts';
import { generateIdentity, publicIdentity, type Identity, type PublicIdentity } from '../../shared/crypto/identity.ts';
import { sealUpdate } from '../../shared/crypto/update-envelope.ts';
import type { Ack } from '../../shared/protocol/protocol.ts';
import { ClippedStrategy } from '../../shared/strategy/clipped-strategy.ts';
import { createStrategy, strategyNames } from '../../shared/strategy/registry.ts';
import { FedMedian } from '../../shared/strategy/robust.ts';
import type { Strategy } from '../../shared/strategy/strategy.ts';
import { disguisedDelta, makeDelta, maxAbsDifference, useHarness, weightedMean, type RawClient } from '../support/hostile.ts';

const P = 3000;
const coordinator = generateIdentity();
const clients: Identity[] = Array.from({ length: 9 }, () => generateIdentity());
const directory = new Map<string, PublicIdentity>(clients.map((c) => [publicIdentity(c).clientId, publicIdentity(c)]));
const ids = clients.map((c) => publicIdentity(c).clientId);
const opener = createUpdateOpener(coordinator, (id) => directory.get(id));

function seal(client: Identity, roundId: string, delta: Float32Array, examples: number): Uint8Array {
  return sealUpdate({ header: { roundId, exampleCount: examples, metrics: { loss: 0.5 } }, delta }, { clientIdentity: client, coordinatorBoxKey: coordinator.box.publicKey });
}

/** One round's envelopes: six honest clients, and client 6 sending NaN first and a valid update after. */
function roundEnvelopes(round: number, roundId: string): Array<[string, Uint8Array]> {
  const honest = clients.slice(0, 6).map((c, k): [string, Uint8Array] => [ids[k]!, seal(c, roundId, makeDelta(P, 10 * round + k), 40 + 30 * k)]);
  const nan = makeDelta(P, 99);
  nan[17] = Number.NaN;
  const tampered = seal(clients[6]!, roundId, makeDelta(P, 98), 50);
  tampered[tampered.length - 30] = tampered[tampered.length - 30]! ^ 1;
  return [
    ...honest.slice(0, 3),
    [ids[6]!, seal(clients[6]!, roundId, disguisedDelta(nan), 50)],
    [ids[6]!, tampered],
    [ids[6]!, seal(clients[6]!, `${roundId}-other`, makeDelta(P, 97), 50)],
    [ids[0]!, seal(clients[0]!, roundId, makeDelta(P, 96), 50)], // a second update from a client already accepted
    ...honest.slice(3),
  ];
}

/** Two rounds of `strategy` through FitRound: serially, or through `ingest`. Returns the heads and the acks' codes. */
async function twoRounds(strategy: Strategy, ingest: UpdateIngest | null, ingestFolds = true): Promise<{ heads: Float32Array[]; codes: string[]; modes: string[] }> {
  let global = makeDelta(P, 1);
  const heads: Float32Array[] = [];
  const codes: string[] = [];
  const modes: string[] = [];
  for (let round = 1; round <= 2; round++) {
    const roundId = `run-r${round}-a1-fit`;
    const fit = new FitRound({ round, roundId, selected: ids, timeoutMs: 60_000, aggregation: strategy.aggregateFit(round, global), metrics: strategy.aggregateFitMetrics(round), openUpdate: opener, parameterCount: P, ingest, ingestFolds });
    modes.push(fit.ingestMode);
    const acks: Ack[] = [];
    // Sent one after another per client (as a socket delivers them), all clients at once.
    const byClient = new Map<string, Uint8Array[]>();
    for (const [id, bytes] of roundEnvelopes(round, roundId)) byClient.set(id, [...(byClient.get(id) ?? []), bytes]);
    await Promise.all([...byClient].map(async ([id, list]) => {
      for (const bytes of list) acks.push(await fit.acceptAsync(id, bytes));
    }));
    fit.close();
    expect(await fit.settle()).toBe(true);
    codes.push(...acks.map((a) => (a.ok ? 'ok' : a.code)).sort());
    global = fit.aggregation.finish();
    heads.push(global);
  }
  return { heads, codes, modes };
}

describe('worker ingest against the serial path (FitRound, real worker threads)', () => {
  let ingest: UpdateIngest;
  beforeAll(async () => {
    ingest = await UpdateIngest.start({ identity: coordinator, resolveClient: (id) => directory.get(id), workers: 2 });
  });
  afterAll(async () => {
    await ingest.close();
  });

  const cases: Array<[string, () => Strategy]> = [
    ...strategyNames().map((name): [string, () => Strategy] => [name, () => createStrategy(name, { minClients: 1 })]),
    ['clipped(fedavg)', () => new ClippedStrategy(createStrategy('fedavg', { minClients: 1 }), { clipNorm: 1 })],
  ];
  it.each(cases)('%s: same head and same refusals', async (_name, make) => {
    const serial = await twoRounds(make(), null);
    const parallel = await twoRounds(make(), ingest);
    expect(parallel.codes).toEqual(serial.codes);
    const perRound = ['BAD_SIGNATURE', 'DUPLICATE_UPDATE', 'NON_FINITE', 'STALE_ROUND', ...Array<string>(6).fill('ok')].sort();
    expect(serial.codes).toEqual([...perRound, ...perRound]);
    if (parallel.modes[0] === 'fold') {
      // Partial sums: equal up to float64 reassociation, then rounded to float32 once.
      for (let r = 0; r < 2; r++) expect(maxAbsDifference(parallel.heads[r]!, serial.heads[r]!)).toBeLessThanOrEqual(1e-6);
    } else {
      // Opened on workers, added on this thread in arrival order: bit for bit.
      expect(parallel.modes[0]).toBe('open');
      expect(parallel.heads).toEqual(serial.heads);
    }
  });

  it('folds for weighted-mean strategies and only opens for the others', async () => {
    const modeOf = async (strategy: Strategy) => (await twoRounds(strategy, ingest)).modes[0];
    expect(await modeOf(createStrategy('fedavg', { minClients: 1 }))).toBe('fold');
    expect(await modeOf(createStrategy('fedavgm', { minClients: 1 }))).toBe('fold');
    expect(await modeOf(createStrategy('fedadam', { minClients: 1 }))).toBe('fold');
    expect(await modeOf(createStrategy('median', { minClients: 1 }))).toBe('open');
  });
});

describe('an ingest hosted on message ports (a simulation hosts it in its training workers)', () => {
  /**
   * Services on real MessagePorts, served in this thread; returns the ingest and the services' ends.
   * The services in `busy` are never served: like a hosting training thread that has not read its
   * port yet, they leave the requests posted to them waiting in the port.
   */
  function hosted(count: number, busy: number[] = []): { ingest: UpdateIngest; services: MessagePort[]; ends: MessagePort[] } {
    const services: MessagePort[] = [];
    const ends: MessagePort[] = [];
    const ingest = UpdateIngest.hosted(
      (setup) =>
        Array.from({ length: count }, (_, k) => {
          const { port1, port2 } = new MessageChannel();
          if (!busy.includes(k)) serveIngest(port2, setup);
          services.push(port2);
          ends.push(port1);
          return port1;
        }),
      { identity: coordinator, resolveClient: (id) => directory.get(id) },
    );
    return { ingest, services, ends };
  }

  it('only opening (ingestFolds: false), gives the serial head bit for bit and the same refusals, even for FedAvg', async () => {
    const { ingest } = hosted(2);
    try {
      const serial = await twoRounds(createStrategy('fedavg', { minClients: 1 }), null);
      const open = await twoRounds(createStrategy('fedavg', { minClients: 1 }), ingest, false);
      expect(open.modes).toEqual(['open', 'open']);
      expect(open.codes).toEqual(serial.codes);
      expect(open.heads).toEqual(serial.heads);
    } finally {
      await ingest.close();
    }
  });

  /** A FedAvg round through `ingest` for clients 0–2, only opening or folding on the services. */
  function hostRound(ingest: UpdateIngest, n: number, ingestFolds: boolean): FitRound {
    const strategy = createStrategy('fedavg', { minClients: 1 });
    return new FitRound({ round: n, roundId: `host-r${n}`, selected: ids.slice(0, 3), timeoutMs: 60_000, aggregation: strategy.aggregateFit(n, makeDelta(P, 1)), metrics: strategy.aggregateFitMetrics(n), openUpdate: opener, parameterCount: P, ingest, ingestFolds });
  }

  /** Round 2 after a service closed in round 1: the remaining services open all three clients' updates. */
  async function expectServedByTheOthers(ingest: UpdateIngest, ingestFolds: boolean): Promise<void> {
    const second = hostRound(ingest, 2, ingestFolds);
    const acks = await Promise.all([0, 1, 2].map((k) => second.acceptAsync(ids[k]!, seal(clients[k]!, 'host-r2', makeDelta(P, 3 + k), 10))));
    expect(acks).toEqual([{ ok: true }, { ok: true }, { ok: true }]);
    expect(await second.settle()).toBe(true);
    expect(second.aggregation.count).toBe(3);
  }

  /** Closes service `k` and waits until the ingest heard of it (its own listener on that end was registered first). */
  async function closeService(services: MessagePort[], ends: MessagePort[], k: number): Promise<void> {
    const closed = new Promise((resolve) => ends[k]!.once('close', resolve));
    services[k]!.close();
    await closed;
  }

  it('a service that held nothing of an open-only round closes: the round goes on, and the next one is served by the others', async () => {
    const { ingest, services, ends } = hosted(2);
    try {
      const first = hostRound(ingest, 1, false);
      expect(await first.acceptAsync(ids[0]!, seal(clients[0]!, 'host-r1', makeDelta(P, 2), 10))).toEqual({ ok: true });
      // Service 0 opened that update and answered: the delta is on this thread, nothing is lost with it.
      await closeService(services, ends, 0);
      expect(await first.acceptAsync(ids[1]!, seal(clients[1]!, 'host-r1', makeDelta(P, 3), 30))).toEqual({ ok: true });
      first.close();
      expect(await first.settle()).toBe(true);
      expect(first.aggregation.count).toBe(2);
      expect(first.aggregation.exampleCount).toBe(40);
      await expectServedByTheOthers(ingest, false);
    } finally {
      await ingest.close();
    }
  });

  it('a service that holds part of a folding round\'s sum closes: the round is refused (rerun), the next one is served by the others', async () => {
    const { ingest, services, ends } = hosted(2);
    try {
      const first = hostRound(ingest, 1, true);
      expect(await first.acceptAsync(ids[0]!, seal(clients[0]!, 'host-r1', makeDelta(P, 2), 10))).toEqual({ ok: true });
      await closeService(services, ends, 0); // it folded client 0's delta into its partial sum
      first.close();
      expect(await first.settle()).toBe(false);
      await expectServedByTheOthers(ingest, true);
    } finally {
      await ingest.close();
    }
  });

  it('a service with an update still being opened in an open-only round closes: that update is refused INTERNAL and the round is refused (rerun)', async () => {
    const { ingest, services, ends } = hosted(2, [0]);
    try {
      const first = hostRound(ingest, 1, false);
      // Least-loaded, ties to the lowest index: client 0's update waits in busy service 0's port,
      // client 1's goes to service 1, which opens it.
      const waiting = first.acceptAsync(ids[0]!, seal(clients[0]!, 'host-r1', makeDelta(P, 2), 10));
      const opened = first.acceptAsync(ids[1]!, seal(clients[1]!, 'host-r1', makeDelta(P, 3), 30));
      await closeService(services, ends, 0); // its thread died before it read the update
      expect(await waiting).toMatchObject({ ok: false, code: 'INTERNAL' });
      expect(await opened).toEqual({ ok: true });
      first.close();
      // One update short, the round's aggregate would depend on which service died: it cannot count.
      expect(await first.settle()).toBe(false);
      await expectServedByTheOthers(ingest, false);
    } finally {
      await ingest.close();
    }
  });
});

describe('a worker folding four deltas per pass', () => {
  it('sums exactly the accepted updates, with refused ones between them and the rest folded at the finish', async () => {
    const one = await UpdateIngest.start({ identity: coordinator, resolveClient: (id) => directory.get(id), workers: 1 });
    try {
      // Round 1: six accepted (one pass of four, then a pair at the finish); round 2: five (four, then one alone).
      for (const [round, honestClients] of [
        [1, [0, 1, 2, 3, 6, 7]],
        [2, [0, 1, 2, 3, 6]],
      ] as const) {
        // Fresh per round: a worker must not carry a waiting delta into the next round.
        const roundId = `folds-r${round}`;
        one.begin({ roundId, parameterCount: P });
        const nan = makeDelta(P, 50 + round);
        nan[5] = Number.NaN;
        const tampered = seal(clients[5]!, roundId, makeDelta(P, 60 + round), 10);
        tampered[tampered.length - 40] = tampered[tampered.length - 40]! ^ 1;
        const honest = honestClients.map((k) => ({ k, delta: makeDelta(P, 10 * round + k), examples: 20 + 7 * k }));
        const sealed = (i: number): [number, Uint8Array] => [honest[i]!.k, seal(clients[honest[i]!.k]!, roundId, honest[i]!.delta, honest[i]!.examples)];
        const sent: Array<[number, Uint8Array]> = [
          sealed(0),
          [4, seal(clients[4]!, roundId, disguisedDelta(nan), 10)], // refused while the first waits for partners
          sealed(1),
          sealed(2),
          [5, tampered], // refused while three wait: none of their buffers is touched
          ...honest.slice(3).map((_, i) => sealed(3 + i)),
        ];
        const outcomes = [];
        for (const [k, bytes] of sent) outcomes.push(await one.submit(bytes, ids[k]!, true));
        expect(outcomes.map((o) => (o.ok ? 'ok' : o.code))).toEqual(['ok', 'NON_FINITE', 'ok', 'ok', 'BAD_SIGNATURE', ...honest.slice(3).map(() => 'ok')]);
        const partial = await one.finish();
        expect(partial.count).toBe(honest.length);
        expect(partial.exampleCount).toBe(honest.reduce((sum, u) => sum + u.examples, 0));
        const expected = Float64Array.from({ length: P }, (_, j) => honest.reduce((sum, u) => sum + u.examples * u.delta[j]!, 0));
        expect(maxAbsDifference(partial.sum!, expected)).toBeLessThanOrEqual(1e-12);
      }
    } finally {
      await one.close();
    }
  });
});

describe('worker ingest default', () => {
  it('is one worker per core from INGEST_DEFAULTS.minParameters on, and none below or on one core', () => {
    expect(defaultIngestWorkers(INGEST_DEFAULTS.minParameters - 1, 2)).toBe(0);
    expect(defaultIngestWorkers(INGEST_DEFAULTS.minParameters, 2)).toBe(2);
    expect(defaultIngestWorkers(5_000_000, 4)).toBe(4);
    expect(defaultIngestWorkers(5_000_000, 1)).toBe(0);
  });
});

describe('worker ingest in a real coordinator', () => {
  const startHarness = useHarness();

  it('refuses bad updates with the serial path\'s codes; the head is the honest weighted mean', async () => {
    const h = await startHarness({ allowed: 3, rounds: 1, strategy: { minClients: 3, minUpdates: 2 }, ingestWorkers: 2 });
    const [a, b, attacker] = (await h.ready([0, 1, 2])) as [RawClient, RawClient, RawClient];
    const initial = Float32Array.from(h.coordinator.loop.weights);
    const run = h.coordinator.run();
    const fit = await attacker.fits.next('fit');
    const n = h.parameterCount;
    const nan = makeDelta(n, 7);
    nan[3] = Number.NaN;
    const valid = attacker.seal(fit.roundId, makeDelta(n, 7), 100);
    const tampered = valid.slice();
    tampered[tampered.length - 40] = tampered[tampered.length - 40]! ^ 0xff;
    const attempts: Array<[unknown, string]> = [
      [new Uint8Array(2000).fill(0x41), 'BAD_MESSAGE'],
      [attacker.seal(fit.roundId, makeDelta(n - 1, 7), 100), 'BAD_SHAPE'],
      [attacker.seal(fit.roundId, disguisedDelta(nan), 100), 'NON_FINITE'],
      [attacker.seal(fit.roundId, makeDelta(n, 7).fill(1e30, 0, 1), 100), 'OUT_OF_RANGE'],
      [tampered, 'BAD_SIGNATURE'],
      [attacker.seal(fit.roundId, makeDelta(n, 7), 100, h.identities[0]), 'BAD_SIGNATURE'],
      [attacker.seal(`${fit.roundId}x`, makeDelta(n, 7), 100), 'STALE_ROUND'],
    ];
    const codes: string[] = [];
    for (const [payload] of attempts) {
      const reply = await attacker.send(payload);
      codes.push(reply.ok ? 'ok' : reply.code);
    }
    expect(codes).toEqual(attempts.map(([, code]) => code));
    attacker.close();
    const honest = await Promise.all([a.answerNext(makeDelta(n, 1), 100), b.answerNext(makeDelta(n, 2), 300)]);
    expect(honest.map((u) => u.ack)).toEqual([{ ok: true }, { ok: true }]);
    const history = await run;
    expect(history[0]).toMatchObject({ accepted: 2, examples: 400 });
    expect(maxAbsDifference(h.coordinator.loop.weights, weightedMean(initial, honest))).toBeLessThan(1e-6);
  });

  it('refuses a negative worker count with BAD_CONFIG', async () => {
    await expect(startHarness({ allowed: 1, rounds: 1, ingestWorkers: -1 })).rejects.toMatchObject({ code: 'BAD_CONFIG' });
  });

  it('announces the fallback for a strategy that needs every update, and aggregates it as the serial path does', async () => {
    const log = { warnings: [] as string[], debug: () => undefined, info: () => undefined, warn: (m: string) => log.warnings.push(m), error: (m: string) => log.warnings.push(m) };
    const h = await startHarness({ allowed: 3, rounds: 1, makeStrategy: (o) => new FedMedian(o), ingestWorkers: 2, logger: log });
    const ready = await h.ready([0, 1, 2]);
    const initial = Float32Array.from(h.coordinator.loop.weights);
    const run = h.coordinator.run();
    const sent = await Promise.all(ready.map((c, k) => c.answerNext(makeDelta(h.parameterCount, 20 + k), 100)));
    expect(sent.every((s) => s.ack.ok)).toBe(true);
    await run;
    expect(log.warnings.some((m) => m.includes('needs every update') && m.includes('2 worker thread'))).toBe(true);
    const median = initial.map((w, i) => {
      const values = sent.map((s) => s.delta[i]!).sort((x, y) => x - y);
      return w + values[1]!;
    });
    expect(maxAbsDifference(h.coordinator.loop.weights, median)).toBeLessThan(1e-6);
  });
});
