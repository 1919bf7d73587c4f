/**
 * One copy of the global weights down per round, over real sockets: a round message refers to
 * weights the client already verified (by the digest its signature covers) instead of carrying
 * them again, and a client that does not hold them gets them in full.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { verifyCoordinatorSignature } from '../../client/client-round.ts';
import { decodeKey } from '../../shared/crypto/identity.ts';
import { signEvaluation } from '../../shared/crypto/hello.ts';
import { roundSignedText, roundWeightsDigest, type FitRequest } from '../../shared/protocol/protocol.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { SocketSecureAggregation } from '../../server/secure-aggregation.ts';
import { FedAvg } from '../../shared/strategy/fed-avg.ts';
import { Federation } from '../support/federation.ts';
import { Harness, type RawClient } from '../support/hostile.ts';

describe('one weights copy down per round', () => {
  let federation: Federation | undefined;
  let harness: Harness | undefined;

  beforeAll(async () => {
    await selectBackend({ log: false });
  });

  afterEach(async () => {
    await federation?.close();
    federation = undefined;
    for (const client of harness?.clients ?? []) client.close();
    await harness?.coordinator.close();
    harness = undefined;
  });

  it('real clients: after round 1, each round sends the weights once (the fit refers to the evaluation\'s), and training is unchanged', async () => {
    // Prepare: three clients with validation splits, so every round has a fit and an evaluation.
    federation = await Federation.start({ clients: 3, rounds: 3 });
    const copy = federation.coordinator.loop.weights.length * 4;
    for (let i = 0; i < 3; i++) federation.startClient(i);

    // Execute
    const history = await federation.coordinator.run();

    // Assert: round 1 sends a fit and an evaluation copy to each of the 3 clients; later rounds only
    // the evaluation's (the coordinator's own traffic counter, as the dashboard and report show it).
    expect(history.map((r) => r.bytesDown)).toEqual([2 * 3 * copy, 3 * copy, 3 * copy]);
    expect(history.every((r) => r.accepted === 3 && r.dropped === 0 && r.evalExamples === 300)).toBe(true);
    // The clients trained on the right weights: the federated evaluation improves as before.
    expect(history[2]!.evalLoss!).toBeLessThan(history[0]!.evalLoss!);
    expect(history[2]!.evalAccuracy!).toBeGreaterThan(0.6);
    // No tensor accumulates across rounds.
    expect(new Set(federation.tensorsAfterRound.slice(1)).size).toBe(1);
  });

  it('with secure aggregation: the same one copy per round, and the masked rounds still aggregate', async () => {
    federation = await Federation.start({ clients: 3, rounds: 2, makeStrategy: (o, coordinator) => new SocketSecureAggregation(new FedAvg(o), { coordinator, maxClients: 3 }) });
    const copy = federation.coordinator.loop.weights.length * 4;
    const initial = Float32Array.from(federation.coordinator.loop.weights);
    for (let i = 0; i < 3; i++) federation.startClient(i);

    const history = await federation.coordinator.run();

    expect(history.map((r) => r.bytesDown)).toEqual([2 * 3 * copy, 3 * copy]);
    expect(history.every((r) => r.accepted === 3)).toBe(true);
    // Round 2 trained from the weights referred to by digest: the head moved again.
    const [first, second] = federation.roundWeights;
    expect(second!.some((v, j) => v !== first![j])).toBe(true);
    expect(first!.some((v, j) => v !== initial[j])).toBe(true);
  }, 30_000);

  /** Connects identity `i` and readies it with 100 training and 10 validation examples. */
  async function evaluating(i: number): Promise<RawClient> {
    const client = await harness!.connect(i);
    expect(await client.ready(100, undefined, 10)).toEqual({ ok: true });
    return client;
  }

  /** A raw client that answers round 1's fit and evaluation honestly; returns the evaluation's weights. */
  async function answerRoundOne(client: RawClient, delta: Float32Array): Promise<Uint8Array> {
    const fit = await client.fits.next('fit 1');
    expect(fit.weightsDigest).toBeUndefined();
    expect(fit.weights.byteLength).toBe(delta.length * 4);
    expect(await client.send(client.seal(fit.roundId, delta, 100))).toEqual({ ok: true });
    const evaluate = await client.evaluates.next('evaluate 1');
    expect(evaluate.weights.byteLength).toBe(delta.length * 4);
    expect(await client.call('evaluation', signEvaluation(client.identity, client.binding, { roundId: evaluate.roundId, examples: 10, loss: 1, accuracy: 0.5 }))).toEqual({ ok: true });
    return new Uint8Array(evaluate.weights);
  }

  /** Checks that `fit` refers to `weights` by digest, under the coordinator's signature. */
  function expectReference(fit: FitRequest, weights: Uint8Array): void {
    const digest = roundWeightsDigest(weights);
    expect(fit.weights.byteLength).toBe(0);
    expect(fit.weightsDigest).toBe(digest);
    const key = decodeKey(harness!.coordinatorKeys.signingKey, 'coordinator key');
    verifyCoordinatorSignature(roundSignedText('fit', fit.roundId, fit.round, fit.deadline, digest, fit.config), fit.signature, key);
  }

  it('a client that lacks the referred weights asks once and gets them in full; stale, mismatched and repeated asks are refused', async () => {
    // Prepare: one raw client, federated evaluation on.
    harness = await Harness.start({ allowed: 1, rounds: 2, strategy: { minClients: 1 }, loop: { federatedEvaluation: true } });
    const client = await evaluating(0);
    const delta = new Float32Array(harness.parameterCount).fill(0.01);
    const run = harness.coordinator.run();
    const evaluated = await answerRoundOne(client!, delta);

    // Execute: round 2's fit refers to the evaluation's weights; the client says it does not hold them.
    const fit = await client!.fits.next('fit 2');
    expectReference(fit, evaluated);
    const stale = await client!.call('weights:missing', { roundId: 'not-this-round', weightsDigest: fit.weightsDigest });
    const mismatched = await client!.call('weights:missing', { roundId: fit.roundId, weightsDigest: 'e'.repeat(64) });
    const malformed = await client!.call('weights:missing', { roundId: fit.roundId, weightsDigest: 'short' });
    const asked = await client!.call('weights:missing', { roundId: fit.roundId, weightsDigest: fit.weightsDigest });
    const again = await client!.call('weights:missing', { roundId: fit.roundId, weightsDigest: fit.weightsDigest });
    const full = await client!.fits.next('fit 2 in full');

    // Assert: the same signed request, now with the weights.
    expect(stale).toMatchObject({ ok: false, code: 'STALE_ROUND' });
    expect(mismatched).toMatchObject({ ok: false, code: 'BAD_MESSAGE' });
    expect(malformed).toMatchObject({ ok: false, code: 'BAD_MESSAGE' });
    expect(asked).toEqual({ ok: true });
    expect(again).toMatchObject({ ok: false, code: 'BAD_MESSAGE', message: expect.stringMatching(/already sent again/) });
    expect(full.roundId).toBe(fit.roundId);
    expect(full.weightsDigest).toBeUndefined();
    expect(Buffer.from(full.weights).equals(Buffer.from(evaluated))).toBe(true);
    expect(full.signature).toBe(fit.signature);
    // The round completes, and its traffic counts the copy sent again.
    expect(await client!.send(client!.seal(full.roundId, delta, 100))).toEqual({ ok: true });
    const evaluate = await client!.evaluates.next('evaluate 2');
    expect(await client!.call('evaluation', signEvaluation(client!.identity, client!.binding, { roundId: evaluate.roundId, examples: 10, loss: 1, accuracy: 0.5 }))).toEqual({ ok: true });
    await run;
    const copy = harness.parameterCount * 4;
    expect(harness.records.map((r) => r.bytesDown)).toEqual([2 * copy, 2 * copy]);
  });

  it('a client that reconnected, or did not answer the message that carried the weights, gets them in full', async () => {
    // Prepare
    harness = await Harness.start({ allowed: 2, rounds: 2, strategy: { minClients: 2, minUpdates: 2 }, loop: { federatedEvaluation: true, evaluateTimeoutMs: 1_000 } });
    const [a, b] = [await evaluating(0), await evaluating(1)];
    const delta = new Float32Array(harness.parameterCount).fill(0.01);
    const run = harness.coordinator.run();
    // b answers its fit but not the evaluation: the coordinator cannot know it holds those weights.
    const fitB = await b!.fits.next('fit 1 b');
    const answeredB = b!.send(b!.seal(fitB.roundId, delta, 100));
    const evaluated = await answerRoundOne(a!, delta);
    expect(await answeredB).toEqual({ ok: true });
    await b!.evaluates.next('evaluate 1 b');

    // Execute: round 2 refers a to its weights and sends b them in full; b answers, a crashes, so
    // the round misses its quorum of 2 and is retried once a has reconnected.
    const [fitA, fitB2] = [await a!.fits.next('fit 2 a'), await b!.fits.next('fit 2 b')];
    expectReference(fitA, evaluated);
    expect(fitB2.weightsDigest).toBeUndefined();
    expect(Buffer.from(fitB2.weights).equals(Buffer.from(evaluated))).toBe(true);
    expect(await b!.send(b!.seal(fitB2.roundId, delta, 100))).toEqual({ ok: true });
    a!.close();
    const [again] = await harness.ready([0]);
    const [retried, retriedB] = [await again!.fits.next('fit 2, attempt 2, after reconnecting'), await b!.fits.next('fit 2, attempt 2, b')];

    // Assert: the new connection gets the weights in full; b, which answered a message carrying them, by digest.
    expect(retried.roundId).not.toBe(fitA.roundId);
    expect(retried.weightsDigest).toBeUndefined();
    expect(Buffer.from(retried.weights).equals(Buffer.from(evaluated))).toBe(true);
    expectReference(retriedB, evaluated);
    harness.coordinator.loop.stop();
    await run;
  });
});
