/**
 * Load: several hundred scripted clients (real Ed25519 hellos, real sealed envelopes, no models)
 * against one coordinator in its own process, over loopback, for several rounds. Measures
 * handshake latency, round time and the coordinator's memory, and checks that no update is lost
 * or counted twice: each new head equals previous + Σ n_k Δ_k / Σ n_k computed here, in float64,
 * from what the clients sent. A few clients also replay their envelope after it was accepted.
 *
 * Figures are printed and written to test/stress/results/load.json.
 */
import { rm } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { makeDelta } from '../support/hostile.ts';
import { ScriptedClient, expectEveryUpdateOnce, loopbackAddress, machineFigures, quantile, startStressFederation, within, writeResult, type CoordinatorChild } from './stress-support.ts';

const CLIENTS = Number(process.env['FEDTL_STRESS_CLIENTS'] ?? 1000);
const ROUNDS = 3;
/** Clients that send their accepted envelope a second time each round. */
const REPLAYERS = 10;

const examplesOf = (i: number) => 20 + ((i * 37) % 200);
const deltaOf = (round: number, i: number, n: number) => makeDelta(n, round * 10_007 + i);

describe(`load: ${CLIENTS} clients × ${ROUNDS} rounds`, () => {
  let dir = '';
  let child: CoordinatorChild | undefined;
  const clients: ScriptedClient[] = [];

  afterAll(async () => {
    for (const client of clients) client.close();
    child?.kill();
    if (child) await child.exited;
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('admits every client, aggregates every update exactly once, and reports its figures', async () => {
    // Prepare: identities, a 0600 coordinator identity file, an allow list, a child coordinator.
    const federation = await startStressFederation(
      'fedtl-stress-load-',
      CLIENTS,
      {
        rounds: ROUNDS,
        minClients: CLIENTS,
        roundTimeoutMs: 600_000,
      },
      (created) => (dir = created),
    );
    child = federation.child;
    const { identities, checkpointDir } = federation;
    const idle = child.events[0]!.event === 'listening' ? child.events[0]!.memory : null;
    const pub = federation.coordinator;
    const url = `http://127.0.0.1:${child.port}`;

    // Execute: all clients connect at once; the run starts when the last one is ready.
    const connectStarted = performance.now();
    for (let i = 0; i < CLIENTS; i++) {
      const client = new ScriptedClient({
        url,
        identity: identities[i]!,
        coordinator: { signingKey: pub.signingKey, boxKey: pub.boxKey },
        examples: examplesOf(i),
        update: (fit, weights) => deltaOf(fit.round, i, weights.length),
        // Each client from its own loopback address, as separate sites would be (the per-address
        // cap on unadmitted connections applies to each).
        localAddress: loopbackAddress(1, i),
        // On a loaded machine a ping can time out; a real client reconnects (fresh hello, ready again).
        reconnect: true,
      });
      clients.push(client);
    }
    let readyCount = 0;
    await within(Promise.all(clients.map((c) => c.ready.then(() => readyCount++))), `${CLIENTS} clients to be ready`, 300_000).catch((error: Error) => {
      throw new Error(`${error.message} (${readyCount} ready; refusals: ${JSON.stringify(countBy(clients.flatMap((c) => c.refusals)))})`);
    });
    const allReadyMs = performance.now() - connectStarted;
    // Replayers send their accepted envelope again; it must be refused and not counted.
    const replays: Array<Promise<{ code: string }>> = [];
    const roundEvents = [];
    for (let round = 1; round <= ROUNDS; round++) {
      await within(Promise.all(clients.slice(0, REPLAYERS).map((c) => c.sentSatisfies((sent) => sent.some((s) => s.round === round && s.ack.ok)))), `round ${round} replayers`, 600_000).catch((error: Error) => {
        const fitted = clients.filter((c) => c.fits.some((f) => f.fit.round === round)).length;
        const acks = countBy(clients.flatMap((c) => c.sent.filter((s) => s.round === round).map((s) => (s.ack.ok ? 'ok' : s.ack.code))));
        throw new Error(`${error.message}: ${fitted} clients got the round's head; update acks ${JSON.stringify(acks)}; connected ${clients.filter((c) => c.socket.connected).length}\n${child!.stderr.slice(-3000)}`);
      });
      for (const client of clients.slice(0, REPLAYERS)) {
        const accepted = client.sent.find((s) => s.round === round && s.ack.ok)!;
        replays.push(
          client.send(accepted.sealed).then(
            (ack) => ({ code: ack.ok ? 'ACCEPTED' : ack.code }),
            // After the last round the coordinator says "finished" and the client closes its
            // socket, possibly before the replay's answer arrives; the checkpoint check below
            // still proves the replay was not counted.
            () => ({ code: round === ROUNDS ? 'CLOSED_AFTER_RUN' : 'LOST' }),
          ),
        );
      }
      roundEvents.push(await child.next((e) => e.event === 'round' && e.record.round === round, `round ${round}`, 600_000));
    }
    const finished = await child.next((e) => e.event === 'finished', 'the run to finish', 300_000);

    // Assert: every round accepted every client once, with the exact example total, and each head is exact.
    const replayCodes = await Promise.all(replays);
    // A replay that reaches the coordinator after the round closed is STALE_ROUND; either way it is refused.
    expect(replayCodes.every((r) => r.code === 'DUPLICATE_UPDATE' || r.code === 'STALE_ROUND' || r.code === 'CLOSED_AFTER_RUN')).toBe(true);
    const records = roundEvents.map((e) => (e.event === 'round' ? e.record : null)!);
    const worst = await expectEveryUpdateOnce(clients, records, checkpointDir);

    // Report.
    const handshake = clients.map((c) => c.handshakeMs[0]!);
    const ready = clients.map((c) => c.readyMs[0]!);
    const memory = finished.event === 'finished' ? finished.memory : null;
    const result = {
      when: new Date().toISOString(),
      machine: machineFigures(),
      clients: CLIENTS,
      rounds: ROUNDS,
      parameters: clients[0]!.fits[0]!.weights.length,
      envelopeBytes: clients[0]!.sent[0]!.sealed.byteLength,
      handshakeMs: { p50: round1(quantile(handshake, 0.5)), p95: round1(quantile(handshake, 0.95)), max: round1(Math.max(...handshake)) },
      readyAckMs: { p50: round1(quantile(ready, 0.5)), p95: round1(quantile(ready, 0.95)) },
      allReadyMs: Math.round(allReadyMs),
      roundSeconds: records.map((r) => r.seconds),
      bytesPerRound: { down: records[0]!.bytesDown, up: records[0]!.bytesUp },
      coordinatorMemoryMB: { idle, afterLastRound: memory, perRound: roundEvents.map((e) => (e.event === 'round' ? e.memory : null)) },
      replaysRefused: replayCodes.length,
      connectionRefusalsRetried: countBy(clients.flatMap((c) => c.refusals)),
      maxAbsErrorVsFloat64Mean: worst,
    };
    const file = await writeResult('load.json', result);
    process.stdout.write(`\n[stress:load] ${JSON.stringify(result, null, 1)}\n[stress:load] written to ${file}\n`);
  });
});

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}

function countBy(values: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const value of values) out[value] = (out[value] ?? 0) + 1;
  return out;
}
