/**
 * Fine-tuning over real sockets: a coordinator on port 0 fine-tunes a (small) GloVe base with two
 * real socket.io clients holding real IMDB reviews; the trainable set widens from the head to the
 * embedding table at round 3.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientOptions, ClientRoundEvent, FedtlClient } from '../../client/client.ts';
import { subset, type LabeledDataset } from '../../client/data/dataset.ts';
import { loadImdb } from '../../client/data/imdb.ts';
import type { Coordinator } from '../../server/coordinator.ts';
import { startCoordinator } from '../../server/start-coordinator.ts';
import { openBase } from '../../shared/bases/prepare-base.ts';
import { AllowList } from '../../shared/crypto/allow-list.ts';
import { generateIdentity, type Identity } from '../../shared/crypto/identity.ts';
import type { LoadedBase } from '../../shared/model/base-loader.ts';
import { gatherWeights, initialModelWeights, selectManifest, stageWeightNames } from '../../shared/model/fine-tune-model.ts';
import type { HeadSpec } from '../../shared/model/head.ts';
import { FedAvg } from '../../shared/strategy/fed-avg.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import { SMALL_GLOVE } from '../support/text-model.ts';
import { allowListOf, startPinnedClients } from '../support/federation.ts';

const HEAD: HeadSpec = { hidden: [], activation: 'relu', dropout: 0, classes: 2 };
const ROUNDS = 4;
const WIDEN_AT = 3;
const SCHEDULE = {
  stages: [
    { fromRound: 1, groups: [{ select: 'head' }] },
    { fromRound: WIDEN_AT, groups: [{ select: 'head' }, { select: 'pattern', pattern: '^glove_embedding$', lrMultiplier: 0.5 }] },
  ],
};

let work: string;
let glove: LoadedBase;
let parts: LabeledDataset[];
const coordinatorIdentity: Identity = generateIdentity();
const identities = [generateIdentity(), generateIdentity()];

beforeAll(async () => {
  await selectBackend({ log: false });
  work = await mkdtemp(path.join(os.tmpdir(), 'fedtl-finetune-socket-'));
  glove = await openBase('glove-100d', { cacheDir: path.join(work, 'bases'), ...SMALL_GLOVE });
  const reviews = await loadImdb({ limit: 120, seed: 4 });
  parts = [subset(reviews, Array.from({ length: 50 }, (_, i) => i)), subset(reviews, Array.from({ length: 70 }, (_, i) => 50 + i))];
});
afterAll(async () => {
  glove.dispose();
  await rm(work, { recursive: true, force: true });
});

interface Run {
  coordinator: Coordinator;
  clients: FedtlClient[];
  events: ClientRoundEvent[][];
  tensors: number[];
}

async function startRun(options: { checkpointDir: string; stopAfter?: number; tag: string; client?: Partial<ClientOptions> }): Promise<Run> {
  const allowList = allowListOf(identities);
  const tensors: number[] = [];
  const coordinator: Coordinator = await startCoordinator({
    identity: coordinatorIdentity,
    allowList,
    base: glove,
    baseDirectory: glove.dir,
    headSpec: HEAD,
    // Clients without validation data still answer evaluations (zero examples), after verifying their weights.
    strategy: new FedAvg({ minClients: 2, epochs: 1, batchSize: 16, learningRate: 0.05 }),
    rounds: ROUNDS,
    seed: 5,
    trainable: SCHEDULE,
    loop: {
      roundTimeoutMs: 60_000,
      waitForClientsMs: 60_000,
      checkpointDir: options.checkpointDir,
      onRound: (record) => {
        tensors.push(tf.memory().numTensors);
        if (record.round === options.stopAfter) coordinator.loop.stop();
      },
    },
  });
  const events: ClientRoundEvent[][] = [[], []];
  const clients = startPinnedClients({ url: coordinator.url, coordinatorIdentity, identities, parts, cacheDir: work, tag: options.tag, extra: (i) => ({ onRound: (event) => events[i]!.push(event), ...options.client }) });
  return { coordinator, clients, events, tensors };
}

async function finish(run: Run): Promise<Float32Array> {
  await run.coordinator.run();
  const weights = run.coordinator.loop.weights.slice();
  for (const client of run.clients) client.close();
  await run.coordinator.close();
  return weights;
}

describe('fine-tuning over real sockets', () => {
  let straight: Float32Array;
  let straightRun: Run;

  it('widens the trainable set at round 3: requests and deltas cover exactly the stage, the coordinator holds the whole model', async () => {
    // Prepare
    const model = initialModelWeights(glove, HEAD, 5);
    const headOnly = selectManifest(model.manifest, stageWeightNames(glove, HEAD, { index: 0, fromRound: 1, headLrMultiplier: 1, layers: [] }));
    const withTable = selectManifest(model.manifest, stageWeightNames(glove, HEAD, { index: 1, fromRound: WIDEN_AT, headLrMultiplier: 1, layers: [{ name: 'glove_embedding', lrMultiplier: 0.5 }] }));

    // Execute
    straightRun = await startRun({ checkpointDir: path.join(work, 'straight'), tag: 'straight' });
    straight = await finish(straightRun);

    // Assert: delta sizes follow the stage, round by round, for both clients
    for (const events of straightRun.events) {
      expect(events.map((e) => e.round)).toEqual([1, 2, 3, 4]);
      expect(events.every((e) => e.accepted)).toBe(true);
      expect(events.map((e) => e.delta.length)).toEqual([headOnly.parameterCount, headOnly.parameterCount, withTable.parameterCount, withTable.parameterCount]);
    }
    expect(withTable.entries.map((e) => e.name)).toEqual(['glove_embedding/embeddings', 'head_output/kernel', 'head_output/bias']);
    // Each stage's slice goes down once per round: a fit refers to the slice the client verified in
    // the last evaluation, except at round 3, where the stage (and so the slice and its digest) changed.
    const [s0, s1] = [headOnly.parameterCount * 4 * 2, withTable.parameterCount * 4 * 2];
    expect(straightRun.coordinator.loop.history.map((r) => r.bytesDown)).toEqual([2 * s0, s0, 2 * s1, s1]);
    // The coordinator's model is the whole model; the table moved only in rows some client's words use.
    expect(straight.length).toBe(model.manifest.parameterCount);
    const before = gatherWeights(model, withTable);
    const after = gatherWeights({ manifest: model.manifest, data: straight }, withTable);
    const dims = 100;
    let moved = 0;
    for (let row = 0; row < SMALL_GLOVE.vocabularySize + 2; row++) {
      if (after.subarray(row * dims, (row + 1) * dims).some((v, d) => v !== before[row * dims + d])) moved++;
    }
    expect(moved).toBeGreaterThan(50);
    expect(moved).toBeLessThan(SMALL_GLOVE.vocabularySize);
    // The padding row never moves.
    expect(after.subarray(0, dims).every((v) => v === 0)).toBe(true);
  });

  it('keeps tf.memory().numTensors flat across the unfreezing', () => {
    const [r1, r2, r3, r4] = straightRun.tensors;
    expect(r2).toBe(r1);
    expect(r4).toBe(r3);
    expect(Math.abs(r3! - r2!)).toBeLessThanOrEqual(2);
  });

  it('resumes mid-schedule from its checkpoint and ends byte-identical to the uninterrupted run', async () => {
    // Execute: stop after round 2 (still a linear probe), then a new coordinator resumes rounds 3–4
    const checkpointDir = path.join(work, 'resumed');
    const first = await startRun({ checkpointDir, stopAfter: 2, tag: 'first' });
    await finish(first);
    const second = await startRun({ checkpointDir, tag: 'second' });
    const resumed = await finish(second);

    // Assert
    expect(first.events[0]!.map((e) => e.round)).toEqual([1, 2]);
    expect(second.events[0]!.map((e) => e.round)).toEqual([3, 4]);
    expect(Buffer.from(resumed.buffer).equals(Buffer.from(straight.buffer))).toBe(true);
  });

  it.each([
    ['a pattern that matches no layer', { stages: [{ fromRound: 1, groups: [{ select: 'pattern', pattern: '^conv' }] }] }, 'matches no layer'],
    ['a multiplier of 0', { stages: [{ fromRound: 1, groups: [{ select: 'head', lrMultiplier: 0 }] }] }, 'lrMultiplier'],
    ['a schedule past the last round', { stages: [{ fromRound: 1, groups: [{ select: 'head' }] }, { fromRound: 9, groups: [{ select: 'top', count: 1 }] }] }, 'past the last round'],
  ])('refuses %s before opening a port', async (_name, trainable, message) => {
    const allowList = AllowList.fromText('');
    const start = startCoordinator({ identity: coordinatorIdentity, allowList, base: glove, baseDirectory: glove.dir, headSpec: HEAD, strategy: new FedAvg({ minClients: 1 }), rounds: ROUNDS, trainable });
    await expect(start).rejects.toThrow(FedtlError);
    await expect(start).rejects.toThrow(message);
  });
});

describe('a client\'s augmentation over a widening trainable set', () => {
  it('is reported once, for the stage that does not train from the raw input, and not for the one that does', async () => {
    const warnings: string[] = [];
    const logger = { debug() {}, info() {}, error() {}, warn: (message: string) => warnings.push(message) };
    const run = await startRun({ checkpointDir: path.join(work, 'augment'), tag: 'augment', client: { augmentation: { tokenDropout: 0.1 }, logger } });
    await finish(run);
    const ignored = warnings.filter((w) => w.includes('is ignored'));
    // Two clients, each told once about stage 0 (the head alone); stage 1 trains the table, where token dropout applies.
    expect(ignored).toHaveLength(2);
    expect(ignored.every((w) => w.startsWith('round stage 0: augmentation {"tokenDropout":0.1} is ignored') && w.includes('this stage does not'))).toBe(true);
  });
});
