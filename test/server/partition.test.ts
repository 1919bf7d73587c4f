/**
 * Half the federation cut off mid-round, then back: three of six clients lose their TCP
 * connections (a loopback proxy destroys both sides, no close handshake) after receiving the round's
 * head and before answering. The round completes with the other three (exactly their weighted
 * mean), the cut clients reconnect with fresh hellos and the next round includes all six.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, makeDelta, maxAbsDifference, RawClient, useHarness, weightedMean, within } from '../support/hostile.ts';
import { CuttingProxy } from '../stress/stress-support.ts';

describe('half the clients cut off mid-round', () => {
  let harness: Harness | undefined;
  const startHarness = useHarness();
  let proxy: CuttingProxy | undefined;

  afterEach(async () => {
    await proxy?.close();
  });

  it('completes the round with the rest, then takes them back in the next round', async () => {
    // Prepare: six clients; rounds start with all six and count with three updates.
    harness = await startHarness({ allowed: 6, rounds: 2, strategy: { minClients: 6, minUpdates: 3 } });
    const h = harness;
    proxy = await CuttingProxy.start(h.coordinator.port, null);
    const stay = await h.ready([0, 1, 2]);
    const cut: RawClient[] = [];
    for (const i of [3, 4, 5]) {
      const client = await RawClient.connect(proxy.url, h.identities[i]!, h.coordinatorKeys.signingKey, h.coordinatorKeys.boxKey, h.hello(h.identities[i]!));
      expect(await client.ready(100 + 50 * i)).toEqual({ ok: true });
      cut.push(client);
    }
    const delta = (round: number, i: number) => makeDelta(h.parameterCount, round * 100 + i);
    for (const [i, client] of stay.entries()) client.answerFits((fit) => ({ delta: delta(fit.round, i), examples: 100 + 50 * i }));
    const initial = Float32Array.from(h.coordinator.loop.weights);

    // Execute: round 1 starts; the cut clients get the head, then their network goes.
    const run = h.coordinator.run();
    await Promise.all(cut.map((c) => c.fits.next('round 1 head')));
    await proxy.close();
    await Promise.all(cut.map((c) => within(c.disconnected, 'the cut')));
    await within(
      (async () => {
        while (h.records.length < 1) await new Promise((resolve) => setTimeout(resolve, 20));
      })(),
      'round 1 to complete without the cut clients',
      30_000,
    );
    // Back: the same identities reconnect (fresh hellos on new connections) and answer round 2.
    // (Each answers fits before it says ready: round 2 starts as soon as the sixth is ready.)
    for (const i of [3, 4, 5]) {
      const client = (await h.connect(i)).answerFits((fit) => ({ delta: delta(fit.round, i), examples: 100 + 50 * i }));
      expect(await client.ready(100 + 50 * i)).toEqual({ ok: true });
    }
    const history = await run;

    // Assert: round 1 is exactly the three survivors' mean; round 2 has all six.
    expect(history[0]).toMatchObject({ selected: 6, accepted: 3, dropped: 3 });
    const survivors = [0, 1, 2].map((i) => ({ delta: delta(1, i), examples: 100 + 50 * i }));
    expect(maxAbsDifference(h.roundWeights[0]!, weightedMean(initial, survivors))).toBeLessThan(1e-6);
    expect(history[1]).toMatchObject({ selected: 6, accepted: 6, dropped: 0 });
    const everyone = [0, 1, 2, 3, 4, 5].map((i) => ({ delta: delta(2, i), examples: 100 + 50 * i }));
    expect(maxAbsDifference(h.roundWeights[1]!, weightedMean(h.roundWeights[0]!, everyone))).toBeLessThan(1e-6);
  });
});
