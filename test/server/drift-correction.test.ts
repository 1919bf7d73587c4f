/**
 * Drift correction over real socket.io on loopback: each round's gradient exchange, the control
 * vector sent with the fit, and clients that drop out or misbehave between the two exchanges.
 */
import { describe, expect, it } from 'vitest';
import type { ClientRoundEvent } from '../../client/client.ts';
import { DriftCorrected } from '../../shared/strategy/drift-correction.ts';
import { FedAvg } from '../../shared/strategy/fed-avg.ts';
import { Federation, useFederation, weightedMeanError } from '../support/federation.ts';

const isGradient = (event: ClientRoundEvent) => event.roundId.endsWith('-gradient');
const isFit = (event: ClientRoundEvent) => event.roundId.endsWith('-fit');

describe('drift correction over real sockets', () => {
  const started = useFederation();

  it('asks every selected client for its gradient before the fit, and the head is the example-weighted mean of the corrected deltas', async () => {
    // Prepare: three clients with their own keys and disjoint digits (200, 300 and 400 examples).
    const federation = (started.federation = await Federation.start({ clients: 3, rounds: 3, makeStrategy: (options) => new DriftCorrected(new FedAvg(options), { weight: 0.5 }) }));
    for (let i = 0; i < 3; i++) federation.startClient(i);

    // Execute
    const history = await federation.coordinator.run();

    // Assert: per round, every client sent a gradient, then a delta, both accepted; the head moved by
    // Σ n_k Δ_k / Σ n_k of the deltas alone (the gradients only steer the clients).
    expect(history).toHaveLength(3);
    for (let round = 1; round <= 3; round++) {
      const gradients = federation.events.map((events) => events.find((e) => e.round === round && isGradient(e))!);
      const fits = federation.events.map((events) => events.find((e) => e.round === round && isFit(e))!);
      expect(gradients.every((e) => e?.accepted)).toBe(true);
      expect(fits.every((e) => e?.accepted)).toBe(true);
      expect(gradients.map((e) => e.exampleCount)).toEqual([200, 300, 400]);
      // A gradient is not a training step: the clients' gradients differ from their deltas.
      expect(gradients.every((g, k) => g.delta.some((v, j) => v !== fits[k]!.delta[j]))).toBe(true);
      expect(weightedMeanError(federation.headBefore(round), fits, federation.roundWeights[round - 1]!)).toBeLessThan(1e-6);
    }
    expect(history.every((r) => r.accepted === 3 && r.dropped === 0 && r.selected === 3)).toBe(true);
    // Both exchanges are counted: up, a gradient and a delta per client per round.
    expect(history[0]!.bytesUp).toBeGreaterThan(2 * 3 * 4 * federation.initialWeights.length);
    expect(history[2]!.evalAccuracy!).toBeGreaterThan(0.6);
    // Clients in this process hold their heads' variables from round 1 on; nothing else may accumulate.
    expect(new Set(federation.tensorsAfterRound.slice(1)).size).toBe(1);
  });

  it('leaves out of the fit a client that dies after sending its gradient; the round completes with the others', async () => {
    const federation = (started.federation = await Federation.start({ clients: 3, rounds: 1, makeStrategy: (options) => new DriftCorrected(new FedAvg({ ...options, minUpdates: 2 })) }));
    for (let i = 0; i < 2; i++) federation.startClient(i);
    // Client 2 disconnects as soon as its gradient is accepted, before it could train.
    federation.startClient(2, { onRound: (event, client) => (isGradient(event) && event.accepted ? client.close() : undefined) });

    const [record] = await federation.coordinator.run();

    expect(federation.events[2]!.filter(isFit)).toHaveLength(0);
    expect(record!.accepted).toBe(2);
    expect(record!.selected).toBe(3);
    expect(record!.dropped).toBe(1);
  });

  it('a client whose gradient is not finite sends nothing (NON_FINITE); the exchange closes at its deadline and the fit goes to the others', async () => {
    // The coordinator refuses a non-finite gradient as it refuses any non-finite update (same
    // FitRound.accept path, tested in updates.test.ts); here the client's own check stops it first.
    const federation = (started.federation = await Federation.start({ clients: 3, rounds: 1, loop: { roundTimeoutMs: 3_000 }, makeStrategy: (options) => new DriftCorrected(new FedAvg({ ...options, minUpdates: 2 })) }));
    for (let i = 0; i < 2; i++) federation.startClient(i);
    federation.startClient(2, { transformDelta: (delta, request) => (request.config.extra?.['drift.phase'] === 'gradient' ? delta.map(() => Number.NaN) : delta) });

    const [record] = await federation.coordinator.run();

    expect(federation.events[2]!).toHaveLength(0);
    expect(record!.accepted).toBe(2);
    expect(record!.dropped).toBe(1);
    expect(federation.roundWeights[0]!.every(Number.isFinite)).toBe(true);
  });

  it('refuses a gradient of the wrong shape at the coordinator (BAD_SHAPE, counted in the round\'s record) and the fit goes to the others', async () => {
    const federation = (started.federation = await Federation.start({ clients: 3, rounds: 1, loop: { roundTimeoutMs: 3_000 }, makeStrategy: (options) => new DriftCorrected(new FedAvg({ ...options, minUpdates: 2 })) }));
    for (let i = 0; i < 2; i++) federation.startClient(i);
    federation.startClient(2, { transformDelta: (delta, request) => (request.config.extra?.['drift.phase'] === 'gradient' ? delta.subarray(1) : delta) });

    const [record] = await federation.coordinator.run();

    const refused = federation.events[2]!.find(isGradient)!;
    expect(refused.accepted).toBe(false);
    expect(refused.error?.code).toBe('BAD_SHAPE');
    expect(federation.events[2]!.filter(isFit)).toHaveLength(0);
    expect(record!.rejected).toEqual({ BAD_SHAPE: 1 });
    expect(record!.accepted).toBe(2);
    expect(federation.roundWeights[0]!.every(Number.isFinite)).toBe(true);
  });
});
