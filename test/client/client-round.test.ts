import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HeldWeights, clientSeed, roundSeed, runEvaluateRound, runFitRound, verifyRoundRequest, type ClientRoundContext } from '../../client/client-round.ts';
import { LocalTrainer, type LabeledFeatures } from '../../client/local-trainer.ts';
import { createUpdateOpener } from '../../server/update-opener.ts';
import { encodeKey, generateIdentity, publicIdentity } from '../../shared/crypto/identity.ts';
import { signText } from '../../shared/crypto/signatures.ts';
import { buildHead, getHeadWeights, type HeadSpec } from '../../shared/model/head.ts';
import { meanGradient, trainHead } from '../../shared/model/head-training.ts';
import { correctedConfig, driftInstruction, gradientConfig } from '../../shared/strategy/drift-correction.ts';
import { controlDigest, parseEvaluateRequest, parseFitRequest, roundSignedText, roundWeightsDigest, type EvaluateRequest, type FitRequest } from '../../shared/protocol/protocol.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import type { FitConfig } from '../../shared/strategy/strategy.ts';
import { float32ToBytes, manifestFromShapes } from '../../shared/weights/flat-weights.ts';
import { openUpdate } from '../../shared/crypto/update-envelope.ts';
import { createHash } from 'node:crypto';

const SPEC: HeadSpec = { hidden: [], activation: 'relu', dropout: 0, classes: 2 };
const coordinator = generateIdentity();
const client = generateIdentity();

const data: LabeledFeatures = {
  features: { values: Float32Array.from([1, 0, 0, 1, 1, 1, -1, 0.5, 0.2, -0.3, 0.7, 0.9]), rows: 6, cols: 2 },
  labels: Int32Array.from([0, 1, 1, 0, 0, 1]),
};

function signed<T extends FitRequest | EvaluateRequest>(request: Omit<T, 'signature'>, config?: FitConfig, key = coordinator.signing.secretKey): T {
  const digest = createHash('sha256').update(request.weights).digest('hex');
  const text = roundSignedText(config ? 'fit' : 'evaluate', request.roundId, request.round, request.deadline, digest, config);
  return { ...request, signature: encodeKey(signText(text, key)) } as T;
}

let trainer: LocalTrainer;
let initial: Float32Array;
beforeAll(async () => {
  await selectBackend({ log: false });
  const head = buildHead(2, SPEC, { seed: 1 });
  const weights = getHeadWeights(head);
  initial = weights.data;
  trainer = new LocalTrainer(head, weights.manifest);
});
afterAll(() => trainer.head.dispose());

const context = (): ClientRoundContext => ({ identity: client, coordinator: { signingKey: coordinator.signing.publicKey, boxKey: coordinator.box.publicKey }, trainer, train: data, validation: data, seed: clientSeed(3, 4) });

describe('the client round', () => {
  it('has one seed formula: client i of run s trains round r with (7919·s + i)·100003 + r', () => {
    expect(clientSeed(3, 4)).toBe(3 * 7919 + 4);
    expect(roundSeed(clientSeed(3, 4), 5)).toBe((3 * 7919 + 4) * 100_003 + 5);
  });

  it('verify → train → seal: the envelope opens at the coordinator to the delta it trained', async () => {
    const config: FitConfig = { epochs: 1, batchSize: 2, learningRate: 0.1, optimizer: 'sgd' };
    const request = signed<FitRequest>({ roundId: 'r-1', round: 1, weights: float32ToBytes(initial), config, deadline: Date.now() + 60_000 }, config);
    const result = await runFitRound(context(), request);
    const open = createUpdateOpener(coordinator, () => publicIdentity(client));
    const opened = open(result.sealed, { roundId: 'r-1', clientId: publicIdentity(client).clientId, parameterCount: initial.length });
    expect(Array.from(opened.delta as Float32Array)).toEqual(Array.from(result.delta));
    expect(opened.exampleCount).toBe(6);
    expect(result.delta.some((v) => v !== 0)).toBe(true);
  });

  it('refuses a request the pinned coordinator did not sign, or whose config was changed after signing', async () => {
    const config: FitConfig = { epochs: 1, batchSize: 2, learningRate: 0.1, optimizer: 'sgd', proximalMu: 0.1 };
    const base = { roundId: 'r-2', round: 2, weights: float32ToBytes(initial), config, deadline: Date.now() + 60_000 };
    const forged = signed<FitRequest>(base, config, generateIdentity().signing.secretKey);
    await expect(runFitRound(context(), forged)).rejects.toMatchObject({ code: 'BAD_SIGNATURE' });
    const tampered = { ...signed<FitRequest>(base, config), config: { ...config, proximalMu: 0 } };
    expect(() => verifyRoundRequest(context(), tampered)).toThrow(/not signed/);
  });

  it('evaluates on the validation split, and answers with zero examples without one', async () => {
    const request = signed<EvaluateRequest>({ roundId: 'r-3', round: 3, weights: float32ToBytes(initial), deadline: Date.now() + 60_000 });
    expect(await runEvaluateRound(context(), request)).toMatchObject({ roundId: 'r-3', examples: 6 });
    expect(await runEvaluateRound({ ...context(), validation: null }, request)).toEqual({ roundId: 'r-3', examples: 0, loss: 0, accuracy: 0 });
  });
});

describe('round messages that refer to held weights by digest', () => {
  const config: FitConfig = { epochs: 1, batchSize: 2, learningRate: 0.1, optimizer: 'sgd' };
  const deadline = Date.now() + 60_000;
  /** A request that refers to weights by `digest`, signed over `signedDigest` (the same, unless forged). */
  const reference = (roundId: string, digest: string, signedDigest = digest): FitRequest => ({
    roundId,
    round: 2,
    weights: new Uint8Array(0),
    weightsDigest: digest,
    config,
    deadline,
    signature: encodeKey(signText(roundSignedText('fit', roundId, 2, deadline, signedDigest, config), coordinator.signing.secretKey)),
  });

  it('trains on the weights held from an earlier message: the same delta as when they are sent again', async () => {
    // Prepare: the client verifies an evaluation carrying the weights, and keeps them.
    const held = new HeldWeights();
    const evaluate = signed<EvaluateRequest>({ roundId: 'e-1', round: 1, weights: float32ToBytes(initial), deadline });
    await runEvaluateRound({ ...context(), held }, evaluate);
    const digest = roundWeightsDigest(float32ToBytes(initial));
    // Execute: the next fit names them by digest only, and the same fit in full for comparison.
    const byDigest = await runFitRound({ ...context(), held }, reference('f-2', digest));
    const inFull = await runFitRound(context(), signed<FitRequest>({ roundId: 'f-2', round: 2, weights: float32ToBytes(initial), config, deadline }, config));
    // Assert
    expect(Array.from(byDigest.delta)).toEqual(Array.from(inFull.delta));
  });

  it('refuses a reference to weights it does not hold (WEIGHTS_NOT_HELD), and a digest the coordinator did not sign (BAD_SIGNATURE)', () => {
    const held = new HeldWeights();
    const digest = roundWeightsDigest(float32ToBytes(initial));
    // Nothing held yet (a restarted client), then other weights held.
    expect(() => verifyRoundRequest({ ...context(), held }, reference('f-3', digest))).toThrow(expect.objectContaining({ code: 'WEIGHTS_NOT_HELD' }));
    held.set(roundWeightsDigest(float32ToBytes(initial.map((v) => v + 1))), initial.map((v) => v + 1));
    expect(() => verifyRoundRequest({ ...context(), held }, reference('f-4', digest))).toThrow(expect.objectContaining({ code: 'WEIGHTS_NOT_HELD' }));
    // A digest swapped on the way (signed over another one) is forged, even for weights the client holds.
    held.set(digest, initial);
    expect(() => verifyRoundRequest({ ...context(), held }, reference('f-5', digest, 'f'.repeat(64)))).toThrow(expect.objectContaining({ code: 'BAD_SIGNATURE' }));
    // The digest covers the trainable stage too: the same weights under another stage are not held.
    const staged = { ...reference('f-6', roundWeightsDigest(float32ToBytes(initial), { index: 0, fromRound: 1, headLrMultiplier: 1, layers: [] })) };
    expect(() => verifyRoundRequest({ ...context(), held }, staged)).toThrow(expect.objectContaining({ code: 'WEIGHTS_NOT_HELD' }));
  });

  it('parses a round message with either weights or a digest, never both or neither', () => {
    const weights = float32ToBytes(initial);
    const digest = roundWeightsDigest(weights);
    const fit = { roundId: 'r', round: 1, config, deadline, signature: 'x' };
    expect(parseFitRequest({ ...fit, weightsDigest: digest }, 1 << 20)).toMatchObject({ weightsDigest: digest, weights: new Uint8Array(0) });
    expect(parseFitRequest({ ...fit, weights }, 1 << 20).weightsDigest).toBeUndefined();
    expect(() => parseFitRequest({ ...fit, weights, weightsDigest: digest }, 1 << 20)).toThrow(/both weights and weightsDigest/);
    expect(() => parseFitRequest({ ...fit, weights: new Uint8Array(0) }, 1 << 20)).toThrow(/empty/);
    expect(() => parseEvaluateRequest({ roundId: 'r', round: 1, deadline, signature: 'x', weightsDigest: 'not-a-digest' }, 1 << 20)).toThrow(/SHA-256/);
  });
});

describe('FedProx proximal term in local training', () => {
  it('adds μ(w − w₀) to the gradient: after two full-batch SGD steps, w₂(μ) − w₂(0) = −η·μ·(w₁ − w₀) (hand-derived)', async () => {
    // Prepare: full-batch SGD, so step 1 is the same with and without μ (w = w₀ there) and step 2
    // differs only by the proximal gradient μ(w₁ − w₀), times the learning rate η.
    const eta = 0.5;
    const mu = 0.8;
    const head = buildHead(2, SPEC, { seed: 7 });
    const w0 = getHeadWeights(head);
    const train = async (epochs: number, proximalMu: number) => {
      const copy = buildHead(2, SPEC, { seed: 7 });
      await trainHead(copy, data.features, data.labels, { epochs, batchSize: 6, learningRate: eta, optimizer: 'sgd', proximalMu });
      const out = getHeadWeights(copy).data;
      copy.dispose();
      return out;
    };
    const before = tf.memory().numTensors;
    // Execute
    const w1 = await train(1, 0);
    const w2 = await train(2, 0);
    const w2mu = await train(2, mu);
    // Assert
    for (let j = 0; j < w0.data.length; j++) {
      expect(w2mu[j]! - w2[j]!).toBeCloseTo(-eta * mu * (w1[j]! - w0.data[j]!), 5);
    }
    expect(w2mu.some((v, j) => Math.abs(v - w2[j]!) > 1e-4)).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
    head.dispose();
  });
});

describe('sealing a fine-tuned embedding table', () => {
  // A stage's manifest and a delta a stage trainer returned over it: rows 3 and 7 of the table moved, and the head.
  const manifest = manifestFromShapes([
    { name: 'glove_embedding/embeddings', shape: [50, 4] },
    { name: 'head_output/kernel', shape: [4, 2] },
    { name: 'head_output/bias', shape: [2] },
  ]);
  const trained = (): Float32Array => {
    const delta = new Float32Array(manifest.parameterCount);
    delta.fill(0.01, 12, 16);
    delta.fill(-0.02, 28, 32);
    delta.fill(0.005, 200);
    return delta;
  };
  const stageContext = (): ClientRoundContext => ({
    ...context(),
    trainer: { fit: async () => ({ delta: trained(), manifest, exampleCount: 5, metrics: { loss: 0.5, accuracy: 0.5 } }), evaluate: (w, d) => trainer.evaluate(w, d) },
  });
  const plain: FitConfig = { epochs: 1, batchSize: 2, learningRate: 0.1, optimizer: 'sgd' };
  const secure: FitConfig = { ...plain, extra: { secagg: true } };

  it.each([
    ['a plain round: row-sparse', plain, false, 'row-sparse'],
    ['secure aggregation asked for: dense', secure, false, undefined],
    ['a transformed delta (a mask): dense', plain, true, undefined],
  ])('%s', async (_name, config, transform, encoding) => {
    // Prepare
    const request = signed<FitRequest>({ roundId: 'r-1', round: 1, weights: float32ToBytes(new Float32Array(manifest.parameterCount)), config, deadline: Date.now() + 60_000 }, config);
    const ctx = transform ? { ...stageContext(), transformDelta: (delta: Float32Array) => Float32Array.from(delta) } : stageContext();

    // Execute
    const result = await runFitRound(ctx, request);
    const opened = openUpdate(result.sealed, { coordinatorIdentity: coordinator, expected: { roundId: 'r-1', parameterCount: manifest.parameterCount, rowSparse: manifest }, resolveClient: () => publicIdentity(client) });

    // Assert
    expect(opened.header.encoding).toBe(encoding);
    expect(Array.from(opened.delta)).toEqual(Array.from(trained()));
  });
});

describe('drift correction on the client (client/drift.ts through runFitRound)', () => {
  const config: FitConfig = { epochs: 1, batchSize: 6, learningRate: 0.1, optimizer: 'sgd' };
  const open = () => createUpdateOpener(coordinator, () => publicIdentity(client));
  const fit = (roundId: string, fitConfig: FitConfig, control?: Float32Array) =>
    signed<FitRequest>({ roundId, round: 1, weights: float32ToBytes(initial), config: fitConfig, deadline: Date.now() + 60_000, ...(control ? { control: float32ToBytes(control) } : {}) }, fitConfig);
  const corrected = (weight: number, control: Float32Array) => correctedConfig(config, weight, controlDigest(float32ToBytes(control)));

  it('answers a gradient request with its full-batch gradient at the round\'s weights, sealed like an update', async () => {
    const result = await runFitRound(context(), fit('r-g', gradientConfig(config)));
    const head = buildHead(2, SPEC, { seed: 1 });
    const expected = await meanGradient(head, data.features, data.labels);
    head.dispose();
    const flat = [...expected.gradients.values()].flatMap((g) => Array.from(g));
    Array.from(result.delta).forEach((v, i) => expect(v).toBeCloseTo(flat[i]!, 6));
    const opened = open()(result.sealed, { roundId: 'r-g', clientId: publicIdentity(client).clientId, parameterCount: initial.length });
    expect(Array.from(opened.delta as Float32Array)).toEqual(Array.from(result.delta));
    expect(opened.exampleCount).toBe(6);
    expect(opened.metrics['loss']).toBeCloseTo(expected.loss, 6);
  });

  it('trains as plain FedAvg when c is its own gradient, and one SGD step moves by −η·λ·(c − c_i) beyond it', async () => {
    const plain = await runFitRound(context(), fit('r-p', config));
    const own = (await runFitRound(context(), fit('r-g', gradientConfig(config)))).delta;
    const same = await runFitRound(context(), fit('r-c', corrected(0.5, own), own));
    Array.from(same.delta).forEach((v, i) => expect(v).toBeCloseTo(plain.delta[i]!, 7));
    // Another client's mean: c = c_i + s, so the correction is λ·s.
    const shift = Float32Array.from(own, (_, i) => (i % 2 === 0 ? 0.2 : -0.1));
    const control = Float32Array.from(own, (g, i) => g + shift[i]!);
    const steered = await runFitRound(context(), fit('r-s', corrected(0.5, control), control));
    Array.from(steered.delta).forEach((v, i) => expect(v).toBeCloseTo(plain.delta[i]! - 0.1 * 0.5 * shift[i]!, 6));
  });

  it('refuses a control vector the signed config does not name, a missing one, one that is not the named one, and one of the wrong length', async () => {
    const own = new Float32Array(initial.length).fill(0.1);
    await expect(runFitRound(context(), fit('r-1', config, own))).rejects.toMatchObject({ code: 'BAD_MESSAGE' });
    await expect(runFitRound(context(), fit('r-2', corrected(0.5, own)))).rejects.toMatchObject({ code: 'BAD_MESSAGE' });
    const swapped = { ...fit('r-3', corrected(0.5, own), own), control: float32ToBytes(new Float32Array(initial.length).fill(9)) };
    await expect(runFitRound(context(), swapped)).rejects.toMatchObject({ code: 'BAD_SIGNATURE' });
    const short = new Float32Array(initial.length - 1);
    await expect(runFitRound(context(), fit('r-4', corrected(0.5, short), short))).rejects.toMatchObject({ code: 'BAD_SHAPE' });
    // And the drift settings themselves are checked: λ must be positive, a phase must be "gradient".
    expect(() => driftInstruction({ ...config, extra: { 'drift.weight': 0, 'drift.control': 'a'.repeat(64) } })).toThrow(/drift.weight/);
    expect(() => driftInstruction({ ...config, extra: { 'drift.phase': 'train' } })).toThrow(/drift.phase/);
  });

  it('parses a control vector of whole float32 values and refuses an empty or ragged one', () => {
    const base = { roundId: 'r', round: 1, weights: new Uint8Array(8), config, deadline: 1, signature: 's' };
    expect(parseFitRequest({ ...base, control: new Uint8Array(8) }, 1024).control?.byteLength).toBe(8);
    expect(() => parseFitRequest({ ...base, control: new Uint8Array(0) }, 1024)).toThrow(/fit.control/);
    expect(() => parseFitRequest({ ...base, control: new Uint8Array(6) }, 1024)).toThrow(/fit.control/);
    expect(() => parseFitRequest({ ...base, control: new Uint8Array(2048) }, 1024)).toThrow(/over the limit/);
  });
});
