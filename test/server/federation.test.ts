import { describe, expect, it } from 'vitest';
import { Federation, useFederation, weightedMeanError } from '../support/federation.ts';

describe('a federation over real socket.io on loopback', () => {
  const started = useFederation();

  it('aggregates exactly the example-weighted mean of the clients\' deltas, and accuracy rises', async () => {
    // Prepare: three clients with their own keys and disjoint digits (200, 300 and 400 examples).
    const federation = (started.federation = await Federation.start({ clients: 3, rounds: 3 }));
    for (let i = 0; i < 3; i++) federation.startClient(i);

    // Execute
    const history = await federation.coordinator.run();

    // Assert: each round's head equals previous + Σ n_k Δ_k / Σ n_k, computed here from what the clients sent.
    expect(history).toHaveLength(3);
    for (let round = 1; round <= 3; round++) {
      const sent = federation.events.map((events) => events.find((e) => e.round === round)!);
      expect(sent.every((e) => e && e.accepted)).toBe(true);
      const total = sent.reduce((sum, e) => sum + e.exampleCount, 0);
      expect(total).toBe(900);
      expect(weightedMeanError(federation.headBefore(round), sent, federation.roundWeights[round - 1]!)).toBeLessThan(1e-6);
    }
    // Federated evaluation on the clients' validation splits improves from round 1 to round 3 and beats chance.
    const accuracies = history.map((r) => r.evalAccuracy!);
    expect(accuracies[2]!).toBeGreaterThan(0.6);
    expect(history[2]!.evalLoss!).toBeLessThan(history[0]!.evalLoss!);
    expect(history.every((r) => r.accepted === 3 && r.dropped === 0)).toBe(true);
    await Promise.all(federation.clients.map((c) => c.done));
  });

  it('does not leak tensors across rounds', async () => {
    const federation = (started.federation = await Federation.start({ clients: 2, rounds: 5 }));
    for (let i = 0; i < 2; i++) federation.startClient(i);
    await federation.coordinator.run();
    // Clients in this process hold their heads' variables from round 1 on; nothing else may accumulate.
    const counts = federation.tensorsAfterRound;
    expect(counts).toHaveLength(5);
    expect(new Set(counts.slice(1)).size).toBe(1);
  });
});
