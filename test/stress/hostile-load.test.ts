/**
 * Hostile load: 1,000 unadmitted connections, each pinning the most an unadmitted peer can (a
 * WebSocket frame of the largest size the coordinator accepts, announced and sent but for its last
 * byte, and no hello), held at once, from 40 loopback addresses, with an admission timeout longer
 * than the run so all 1,000 stay held throughout (one that is closed anyway is opened again). Meanwhile an
 * honest federation of scripted clients (real hellos, real sealed envelopes) runs 3 rounds and
 * every update must be counted exactly once.
 *
 * Reports the coordinator's RSS growth due to the hostile connections (goal ≤ 200 MB), per
 * connection, and the honest run's handshake times; written to test/stress/results/hostile-load.json.
 */
import { rm } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { makeDelta } from '../support/hostile.ts';
import { PinningConnection, ScriptedClient, expectEveryUpdateOnce, loopbackAddress, machineFigures, quantile, startStressFederation, within, writeResult, type ChildEvent, type CoordinatorChild, type MemoryFigures } from './stress-support.ts';

const HOSTILE = Number(process.env['FEDTL_STRESS_HOSTILE'] ?? 1000);
const HONEST = Number(process.env['FEDTL_STRESS_HONEST'] ?? 200);
const ROUNDS = 3;
/** Hostile connections per source address (under the default per-address cap of 32). */
const PER_ADDRESS = 25;

describe(`hostile load: ${HOSTILE} unadmitted connections held while ${HONEST} clients run ${ROUNDS} rounds`, () => {
  let dir = '';
  let child: CoordinatorChild | undefined;
  const clients: ScriptedClient[] = [];
  const hostile = new Set<PinningConnection>();
  let stopped = false;

  afterAll(async () => {
    stopped = true;
    for (const connection of hostile) connection.close();
    for (const client of clients) client.close();
    child?.kill();
    if (child) await child.exited;
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('holds them within the memory goal and completes the honest federation exactly', async () => {
    // Prepare: a coordinator whose total cap on unadmitted connections leaves room for the honest clients.
    const federation = await startStressFederation(
      'fedtl-stress-hostile-',
      HONEST,
      {
        rounds: ROUNDS,
        minClients: HONEST,
        roundTimeoutMs: 120_000,
        // A long admission timeout: every hostile connection stays held for the whole honest run
        // (the worst case for memory; the default 10 s would cycle them).
        admissionLimits: { maxUnadmitted: HOSTILE + HONEST + 100, admissionTimeoutMs: 300_000 },
        memoryEveryMs: 250,
      },
      (created) => (dir = created),
    );
    child = federation.child;
    const { identities, checkpointDir } = federation;
    const memoryAfter = (from: number, what: string, match: (e: Extract<ChildEvent, { event: 'memory' }>) => boolean = () => true) => {
      const start = child!.events.length + from;
      return child!.next((e) => e.event === 'memory' && child!.events.indexOf(e) >= start && match(e), what, 120_000) as Promise<Extract<ChildEvent, { event: 'memory' }>>;
    };
    // Idle figure after the coordinator settled.
    await memoryAfter(4, 'idle samples');
    const idle = (await memoryAfter(0, 'the idle sample')).memory;

    // Execute 1: open and hold the hostile connections; each closed one is replaced at once.
    let opened = 0;
    const open = (i: number): PinningConnection => {
      opened++;
      const connection = new PinningConnection(child!.port, loopbackAddress(2, Math.floor(i / PER_ADDRESS)), () => {
        hostile.delete(connection);
        if (!stopped) setTimeout(() => !stopped && open(i), 100);
      });
      hostile.add(connection);
      return connection;
    };
    const first = Array.from({ length: HOSTILE }, (_, i) => open(i));
    const holding = await within(Promise.all(first.map((c) => c.holding)), 'the hostile connections to be held', 120_000);
    expect(holding.filter(Boolean).length).toBe(HOSTILE);
    const held = await memoryAfter(0, `${HOSTILE} unadmitted connections at the coordinator`, (e) => e.unadmitted >= HOSTILE);
    // One more sample once the partial frames have surely been read.
    const heldLater = await memoryAfter(2, 'a later sample with the hostile connections held', (e) => e.unadmitted >= HOSTILE);
    const hostileRssMB = Math.max(held.memory.rssMB, heldLater.memory.rssMB) - idle.rssMB;

    // Execute 2: the honest federation, each client from its own loopback address.
    const pub = federation.coordinator;
    const url = `http://127.0.0.1:${child.port}`;
    const honestStarted = performance.now();
    for (let i = 0; i < HONEST; i++) {
      clients.push(
        new ScriptedClient({
          url,
          identity: identities[i]!,
          coordinator: { signingKey: pub.signingKey, boxKey: pub.boxKey },
          examples: 20 + ((i * 37) % 200),
          update: (fit, weights) => makeDelta(weights.length, fit.round * 10_007 + i),
          localAddress: loopbackAddress(1, i),
          // On a loaded machine a ping can time out; a real client reconnects (fresh hello, ready again).
          reconnect: true,
        }),
      );
    }
    await within(Promise.all(clients.map((c) => c.ready)), `${HONEST} honest clients to be ready`, 180_000);
    const roundEvents: ChildEvent[] = [];
    for (let round = 1; round <= ROUNDS; round++) roundEvents.push(await child.next((e) => e.event === 'round' && e.record.round === round, `round ${round}`, 180_000));
    const honestSeconds = (performance.now() - honestStarted) / 1000;
    const during = child.events.filter((e): e is Extract<ChildEvent, { event: 'memory' }> => e.event === 'memory' && child!.events.indexOf(e) > child!.events.indexOf(heldLater));
    const stillHeld = hostile.size;

    // Assert: exact aggregation, and the hostile connections stayed within the memory goal.
    const records = roundEvents.map((e) => (e.event === 'round' ? e.record : null)!);
    const worst = await expectEveryUpdateOnce(clients, records, checkpointDir);
    expect(hostileRssMB).toBeLessThanOrEqual(200);

    // Report.
    const peak: MemoryFigures | undefined = during.at(-1)?.memory;
    const handshake = clients.map((c) => c.handshakeMs[0]!);
    const result = {
      when: new Date().toISOString(),
      machine: machineFigures(),
      hostileConnections: HOSTILE,
      hostileAddresses: Math.ceil(HOSTILE / PER_ADDRESS),
      hostileOpenedInTotal: opened,
      hostileHeldAtEnd: stillHeld,
      minUnadmittedDuringHonestRun: Math.min(...during.map((e) => e.unadmitted)),
      honestClients: HONEST,
      rounds: ROUNDS,
      coordinatorRssMB: { idle: idle.rssMB, withHostileHeld: Math.max(held.memory.rssMB, heldLater.memory.rssMB), peakDuringRun: peak?.peakRssMB ?? null },
      hostileRssGrowthMB: Math.round(hostileRssMB * 10) / 10,
      hostileKBPerConnection: Math.round((hostileRssMB * 1024 * 10) / HOSTILE) / 10,
      honestHandshakeMs: { p50: Math.round(quantile(handshake, 0.5)), p95: Math.round(quantile(handshake, 0.95)) },
      honestRunSeconds: Math.round(honestSeconds * 10) / 10,
      roundSeconds: records.map((r) => r.seconds),
      maxAbsErrorVsFloat64Mean: worst,
    };
    const file = await writeResult('hostile-load.json', result);
    process.stdout.write(`\n[stress:hostile] ${JSON.stringify(result, null, 1)}\n[stress:hostile] written to ${file}\n`);
  });
});
