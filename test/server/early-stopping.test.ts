import { afterEach, describe, expect, it } from 'vitest';
import { EarlyStopping } from '../../shared/model/early-stopping.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { Federation } from '../support/federation.ts';

let federation: Federation | null = null;
afterEach(async () => {
  await federation?.close();
  federation = null;
});

describe('early stopping in the round loop', () => {
  it('stops when the federated validation accuracy stops improving and keeps the best round as the model to export', async () => {
    // Prepare: a gain of 1.0 in accuracy is impossible, so only round 1 counts as an improvement
    await selectBackend({ log: false });
    const stopping = new EarlyStopping({ patience: 2, minDelta: 1 });
    federation = await Federation.start({ clients: 2, rounds: 6, loop: { earlyStopping: stopping } });
    for (let i = 0; i < 2; i++) federation.startClient(i);

    // Execute
    const history = await federation.coordinator.run();

    // Assert: rounds 2 and 3 did not improve → stop after round 3; the best model is round 1's
    expect(history.map((r) => r.round)).toEqual([1, 2, 3]);
    expect(history.every((r) => r.evalAccuracy !== null)).toBe(true);
    expect(stopping.bestRound).toBe(1);
    expect(Buffer.from(federation.coordinator.loop.bestWeights.buffer).equals(Buffer.from(federation.roundWeights[0]!.buffer))).toBe(true);
    expect(Buffer.from(federation.coordinator.loop.weights.buffer).equals(Buffer.from(federation.roundWeights[2]!.buffer))).toBe(true);
  });
});
