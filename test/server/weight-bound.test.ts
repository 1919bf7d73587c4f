/**
 * The default bound on one client's FedAvg weight (server/weight-bound.ts): the cap by hand, and a
 * real coordinator where one client claims 10 M examples among clients of ~100.
 */
import { describe, expect, it } from 'vitest';
import { exampleCountCap } from '../../server/weight-bound.ts';
import { Harness, makeDelta, maxAbsDifference, useHarness, weightedMean } from '../support/hostile.ts';

describe('weight bound', () => {
  let harness: Harness | undefined;
  const startHarness = useHarness();

  it('caps at ratio × the median of the declared counts', () => {
    expect(exampleCountCap([100, 200, 300], 5)).toBe(1000);
    expect(exampleCountCap([100, 200, 300, 1e7], 5)).toBe(1250);
    expect(exampleCountCap([], 5)).toBe(Number.POSITIVE_INFINITY);
    expect(exampleCountCap([100], Number.POSITIVE_INFINITY)).toBe(Number.POSITIVE_INFINITY);
    expect(exampleCountCap([0, 0], 5)).toBe(1);
  });

  it('keeps a client that claims 10 M examples among clients of ~100 from taking the round', async () => {
    // Prepare: three honest clients declaring 100/150/200 examples, one liar declaring and claiming 10 M.
    harness = await startHarness({ allowed: 4, rounds: 1 });
    const h = harness;
    const examples = [100, 150, 200, 10_000_000];
    const clients = await h.ready([0, 1, 2, 3], (i) => examples[i]!);
    const initial = Float32Array.from(h.coordinator.loop.weights);
    const deltas = examples.map((_, i) => makeDelta(h.parameterCount, 40 + i));
    for (const [i, client] of clients.entries()) client.answerFits(() => ({ delta: deltas[i]!, examples: examples[i]! }));

    // Execute.
    const [record] = await h.coordinator.run();

    // Assert: the liar counted as 5 × median(100, 150, 200, 10 M) = 5 × 175 = 875 examples, a share of 875 / 1325.
    expect(record).toMatchObject({ accepted: 4, examples: 100 + 150 + 200 + 875 });
    const expected = weightedMean(initial, deltas.map((delta, i) => ({ delta, examples: Math.min(examples[i]!, 875) })));
    expect(maxAbsDifference(h.coordinator.loop.weights, expected)).toBeLessThan(1e-6);
  });
});
