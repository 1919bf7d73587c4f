/**
 * Every registered strategy, interrupted after a checkpoint and resumed by a new RoundLoop from
 * that checkpoint, ends with the same head, to the last bit, as an uninterrupted run: the
 * strategy's server state (FedAvgM's velocity, the server optimizers' moments) travels in the
 * checkpoint. Real loop, real sealed envelopes, real checkpoint files; the clients are scripted so
 * that their deltas depend only on (round, client, received head). The SIGKILL variant of this
 * test runs in `npm run test:stress` (test/stress/coordinator-crash.test.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCheckpoint } from '../../server/checkpoint.ts';
import type { Participant } from '../../server/client-manager.ts';
import { RoundLoop } from '../../server/round-loop.ts';
import { createUpdateOpener } from '../../server/update-opener.ts';
import { encodeKey, generateIdentity, publicIdentity, type Identity } from '../../shared/crypto/identity.ts';
import { signText } from '../../shared/crypto/signatures.ts';
import { sealUpdate } from '../../shared/crypto/update-envelope.ts';
import type { HeadSpec } from '../../shared/model/head.ts';
import type { FitRequest } from '../../shared/protocol/protocol.ts';
import { createStrategy, strategyNames } from '../../shared/strategy/registry.ts';
import { bytesToFloat32, manifestFromShapes } from '../../shared/weights/flat-weights.ts';

const CLIENTS = 7;
const ROUNDS = 5;
const INTERRUPTED_AFTER = 2;
const SPEC: HeadSpec = { hidden: [], activation: 'relu', dropout: 0, classes: 3 };
const MANIFEST = manifestFromShapes([
  { name: 'head_output/kernel', shape: [8, 3] },
  { name: 'head_output/bias', shape: [3] },
]);
const coordinator = generateIdentity();
const clients: Identity[] = Array.from({ length: CLIENTS }, () => generateIdentity());
const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** Pulls the head towards a per-client target with a round-dependent wiggle; client 6 is an outlier. */
function scriptedDelta(round: number, client: number, weights: Float32Array): Float32Array {
  const delta = new Float32Array(weights.length);
  for (let j = 0; j < weights.length; j++) {
    const target = ((((j + 1) * 2654435761 + client * 40503) >>> 0) % 2001) / 2000 - 0.5;
    delta[j] = (client === 6 ? 3 : 0.2) * (target - weights[j]!) + 0.01 * Math.sin(round * (client + 1) + j);
  }
  return delta;
}

function runLoop(strategyName: string, checkpointDir: string, rounds: number, params: Record<string, number> = {}): RoundLoop {
  const loop = new RoundLoop({
    strategy: createStrategy(strategyName, { minClients: CLIENTS, fractionFit: 1 }, params),
    headSpec: SPEC,
    manifest: MANIFEST,
    initialWeights: Float32Array.from({ length: MANIFEST.parameterCount }, (_, i) => Math.cos(i) / 10),
    baseHash: 'c'.repeat(64),
    rounds,
    openUpdate: createUpdateOpener(coordinator, (id) => clients.map(publicIdentity).find((c) => c.clientId === id)),
    sign: (text) => encodeKey(signText(text, coordinator.signing.secretKey)),
    federatedEvaluation: false,
    checkpointDir,
    seed: 11,
    waitForClientsMs: 5_000,
    logger: silent,
  });
  clients.forEach((identity, index) => {
    const clientId = publicIdentity(identity).clientId;
    const participant: Participant = {
      clientId,
      sendFit: (request: FitRequest) => {
        const weights = bytesToFloat32(request.weights);
        const sealed = sealUpdate({ header: { roundId: request.roundId, exampleCount: 20 + 7 * index, metrics: {} }, delta: scriptedDelta(request.round, index, weights) }, { clientIdentity: identity, coordinatorBoxKey: coordinator.box.publicKey });
        // Answered on the next turn of the event loop, in selection order, as a socket would.
        setImmediate(() => loop.receiveUpdate(clientId, sealed));
      },
      sendEvaluate: () => undefined,
    };
    loop.addParticipant(participant, 20 + 7 * index);
  });
  return loop;
}

describe('resuming every strategy from its checkpoint', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-strategy-resume-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each(strategyNames())('%s ends byte-identical to an uninterrupted run', async (name) => {
    // Prepare + Execute: the uninterrupted run; then a run stopped after round 2's checkpoint and a fresh loop resuming it.
    const reference = runLoop(name, path.join(dir, `${name}-reference`), ROUNDS);
    await reference.run();
    const first = runLoop(name, path.join(dir, `${name}-interrupted`), INTERRUPTED_AFTER);
    await first.run();
    const resumed = runLoop(name, path.join(dir, `${name}-interrupted`), ROUNDS);
    expect(await resumed.resume()).toBe(INTERRUPTED_AFTER);
    await resumed.run();
    // Assert: same bytes, in memory and in the final checkpoints.
    const expected = Buffer.from(reference.weights.buffer, reference.weights.byteOffset, reference.weights.byteLength);
    const actual = Buffer.from(resumed.weights.buffer, resumed.weights.byteOffset, resumed.weights.byteLength);
    expect(actual.equals(expected)).toBe(true);
    const saved = (await loadCheckpoint(path.join(dir, `${name}-interrupted`)))!;
    expect(saved.round).toBe(ROUNDS);
    expect(saved.strategy?.name).toBe(name);
    expect(resumed.history.map((r) => r.accepted)).toEqual(Array(ROUNDS).fill(CLIENTS));
  });

  it('exports the checkpoint\'s model, not the initial one, when a resumed run stops before its next round', async () => {
    // A coordinator restarted from a checkpoint and stopped at once (Ctrl-C while waiting for clients)
    // writes `bestWeights` as its partial export: that must be the checkpoint's head.
    const checkpointDir = path.join(dir, 'resume-then-stop');
    const first = runLoop('fedavg', checkpointDir, INTERRUPTED_AFTER);
    await first.run();
    const resumed = runLoop('fedavg', checkpointDir, ROUNDS);
    expect(await resumed.resume()).toBe(INTERRUPTED_AFTER);
    const saved = (await loadCheckpoint(checkpointDir))!;
    const bytes = (w: Float32Array): Buffer => Buffer.from(w.buffer, w.byteOffset, w.byteLength);
    expect(bytes(resumed.bestWeights).equals(bytes(saved.weights))).toBe(true);
    expect(bytes(resumed.bestWeights).equals(bytes(first.weights))).toBe(true);
  });

  it('refuses to resume a checkpoint written by another strategy', async () => {
    const checkpointDir = path.join(dir, 'switch');
    await runLoop('fedavgm', checkpointDir, 1).run();
    await expect(runLoop('fedadam', checkpointDir, 3).resume()).rejects.toThrow(/written by strategy fedavgm, this run uses fedadam/);
  });

  it('refuses to resume with other strategy parameters (BAD_CONFIG, naming them), and resumes with the same ones', async () => {
    const where = path.join(dir, 'params');
    await runLoop('fedavgm', where, INTERRUPTED_AFTER, { serverMomentum: 0.5 }).run();
    const saved = (await loadCheckpoint(where))!;
    expect(saved.strategy?.params).toEqual({ serverLearningRate: 1, serverMomentum: 0.5 });
    await expect(runLoop('fedavgm', where, ROUNDS, { serverMomentum: 0.9 }).resume()).rejects.toMatchObject({
      code: 'BAD_CONFIG',
      message: expect.stringMatching(/written by strategy fedavgm with serverMomentum 0\.5, this run has serverMomentum 0\.9; resume with the same values/),
    });
    expect(await runLoop('fedavgm', where, ROUNDS, { serverMomentum: 0.5 }).resume()).toBe(INTERRUPTED_AFTER);
  });
});
