import * as tf from '@tensorflow/tfjs-core';
import { afterEach, describe, expect, it } from 'vitest';
import { FedtlError } from '../../shared/core/errors.ts';
import { parseSecAggDown, parseSecAggUp } from '../../shared/protocol/secagg-messages.ts';
import { ringCodec } from '../../shared/secagg/quantize.ts';
import { clientIdFromSigningKey, type Identity } from '../../shared/crypto/index.ts';
import { FedAvg, type FedAvgOptions } from '../../shared/strategy/fed-avg.ts';
import { SocketSecureAggregation } from '../../server/secure-aggregation.ts';
import { Federation } from '../support/federation.ts';

const CLIENTS = 4;

/** Records what each client really trained (the update itself carries zeros under secure aggregation). */
function recordDeltas(federation: Federation, deltas: { examples: number; delta: Float32Array }[][]): void {
  for (let i = 0; i < CLIENTS; i++) {
    const mine: { examples: number; delta: Float32Array }[] = (deltas[i] = []);
    federation.startClient(i, {
      transformDelta: (delta) => {
        mine.push({ examples: 0, delta: Float32Array.from(delta) });
        return delta;
      },
    });
  }
}

/** Plaintext FedAvg of the same deltas: Σ w·Δ / Σ w, weights = the clients' example counts. */
function plainMean(entries: { weight: number; delta: Float32Array }[]): Float64Array {
  const out = new Float64Array(entries[0]!.delta.length);
  let total = 0;
  for (const { weight, delta } of entries) {
    total += weight;
    for (let j = 0; j < out.length; j++) out[j]! += weight * delta[j]!;
  }
  return out.map((v) => v / total);
}

function maxDiff(a: Float32Array, before: Float32Array, mean: Float64Array): number {
  let worst = 0;
  for (let j = 0; j < mean.length; j++) worst = Math.max(worst, Math.abs(a[j]! - before[j]! - mean[j]!));
  return worst;
}

/** Sample sizes of the fixture's parts (its default: 200 + 100·i). */
const size = (i: number): number => 200 + 100 * i;

describe('secure aggregation over sockets', () => {
  let federation: Federation | undefined;
  afterEach(async () => {
    await federation?.close();
    federation = undefined;
  });

  it('unmasks exactly the plaintext FedAvg of the same deltas, round after round, without leaking tensors', async () => {
    let wrapper!: SocketSecureAggregation;
    federation = await Federation.start({
      clients: CLIENTS,
      rounds: 2,
      loop: { federatedEvaluation: false },
      makeStrategy: (o, coordinator) => (wrapper = new SocketSecureAggregation(new FedAvg(o), { coordinator, maxClients: CLIENTS })),
    });
    const initial = Float32Array.from(federation.coordinator.loop.weights);
    const deltas: { examples: number; delta: Float32Array }[][] = [];
    recordDeltas(federation, deltas);
    await federation.coordinator.run();
    await Promise.all(federation.clients.map((c) => c.done));

    expect(federation.roundWeights).toHaveLength(2);
    const codec = ringCodec({ maxClients: CLIENTS, maxWeight: 1000 });
    const totalWeight = [0, 1, 2, 3].reduce((s, i) => s + size(i), 0);
    const bound = codec.sumErrorBound / totalWeight + 1e-6; // + float32 rounding of the head
    for (let r = 0; r < 2; r++) {
      const mean = plainMean([0, 1, 2, 3].map((i) => ({ weight: size(i), delta: deltas[i]![r]!.delta })));
      const before = r === 0 ? initial : federation.roundWeights[0]!;
      expect(maxDiff(federation.roundWeights[r]!, before, mean)).toBeLessThanOrEqual(bound);
      // The coordinator's fit updates carried zeros: every client's event delta is zero.
      for (let i = 0; i < CLIENTS; i++) expect(federation.events[i]!.filter((e) => e.round === r + 1)[0]!.delta!.every((v) => v === 0)).toBe(true);
    }
    expect(federation.tensorsAfterRound[1]).toBe(federation.tensorsAfterRound[0]);
    // A message of a finished round is stale.
    expect(() => wrapper.receive('0123456789abcdef', 'secagg-r1-000000000000', new Uint8Array(8))).toThrow(/no secure-aggregation phase/);
  }, 60_000);

  /** A wrapper that replays every accepted message once (recording the refusal) and closes client 3 after its `dropAt`-th message. */
  function dropping(refusals: string[], dropAt: number, options: { threshold?: number } = {}) {
    const seen = new Map<string, number>();
    return (o: FedAvgOptions, coordinator: Identity) =>
      new (class extends SocketSecureAggregation {
        override receive(clientId: string, roundId: string, bytes: Uint8Array): void {
          super.receive(clientId, roundId, bytes);
          const n = (seen.get(clientId) ?? 0) + 1;
          seen.set(clientId, n);
          try {
            super.receive(clientId, roundId, bytes);
          } catch (error) {
            refusals.push((error as FedtlError).code);
          }
          if (clientId === clientIdFromSigningKey(federation!.identities[3]!.signing.publicKey) && n === dropAt) federation!.clients[3]!.close();
        }
      })(new FedAvg(o), { coordinator, maxClients: CLIENTS, phaseTimeoutMs: 10_000, ...options });
  }

  it('a client that disconnects after the shares went out: the sum is the survivors\' exact sum; replays are refused', async () => {
    const refusals: string[] = [];
    // Client 3 leaves right after its shares (its second message) went out.
    federation = await Federation.start({ clients: CLIENTS, rounds: 1, loop: { federatedEvaluation: false }, makeStrategy: dropping(refusals, 2) });
    const initial = Float32Array.from(federation.coordinator.loop.weights);
    const deltas: { examples: number; delta: Float32Array }[][] = [];
    recordDeltas(federation, deltas);
    await federation.coordinator.run();
    await Promise.all(federation.clients.slice(0, 3).map((c) => c.done));

    expect(federation.roundWeights).toHaveLength(1);
    const mean = plainMean([0, 1, 2].map((i) => ({ weight: size(i), delta: deltas[i]![0]!.delta })));
    const codec = ringCodec({ maxClients: CLIENTS, maxWeight: 1000 });
    expect(maxDiff(federation.roundWeights[0]!, initial, mean)).toBeLessThanOrEqual(codec.sumErrorBound / (size(0) + size(1) + size(2)) + 1e-6);
    // Every phase message of every client was replayed once and refused.
    expect(refusals.length).toBeGreaterThanOrEqual(3 * 4 + 2);
    expect(new Set(refusals)).toEqual(new Set(['DUPLICATE_UPDATE']));
  }, 60_000);

  it('a round whose sum cannot be recovered fails with SECAGG_FAILED and keeps the last good model', async () => {
    // t = 4 of 4: once client 3 has shared its keys and left (round 2), its mask cannot be removed.
    federation = await Federation.start({
      clients: CLIENTS,
      rounds: 2,
      loop: { federatedEvaluation: false, maxRoundAttempts: 1 },
      makeStrategy: dropping([], 6, { threshold: 4 }),
    });
    recordDeltas(federation, [] as { examples: number; delta: Float32Array }[][]);
    await expect(federation.coordinator.run()).rejects.toThrow(/round 2 failed/);
    expect(federation.roundWeights).toHaveLength(1);
    expect(Array.from(federation.coordinator.loop.weights)).toEqual(Array.from(federation.roundWeights[0]!));
  }, 60_000);

  it('parses phase messages at the boundary', () => {
    expect(() => parseSecAggUp('x', 100)).toThrow(FedtlError);
    expect(() => parseSecAggUp({ roundId: 'secagg-r1-000000000000', bytes: 'abc' }, 100)).toThrow(/binary/);
    expect(() => parseSecAggUp({ roundId: '../etc', bytes: new Uint8Array(1) }, 100)).toThrow(/round id/);
    expect(() => parseSecAggUp({ roundId: 'secagg-r1-000000000000', bytes: new Uint8Array(101) }, 100)).toThrow(/over 100/);
    expect(() => parseSecAggDown({ roundId: 'secagg-r1-000000000000', step: 'sum', clients: 4, bytes: new Uint8Array(0) }, 100)).toThrow(/step/);
    expect(() => parseSecAggDown({ roundId: 'secagg-r1-000000000000', step: 'keys', clients: 1, bytes: new Uint8Array(0) }, 100)).toThrow(/clients/);
    expect(parseSecAggDown({ roundId: 'secagg-r1-000000000000', step: 'keys', clients: 4, bytes: new Uint8Array(3) }, 100).bytes.length).toBe(3);
    void tf;
  });
});
