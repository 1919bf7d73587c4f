/**
 * Server-side iterate averaging through the real round loop: a coordinator on port 0 fine-tunes a
 * real (tiny) split-class CNN base with two real socket.io clients; the trainable set widens at
 * round 3. The model the coordinator evaluates and exports is the mean of each stage's global
 * models, restarted when the set widens, and a run stopped mid-window resumes from its checkpoint
 * to the same bytes.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FedtlClient } from '../../client/client.ts';
import type { LabeledDataset } from '../../client/data/dataset.ts';
import { loadCheckpoint } from '../../server/checkpoint.ts';
import type { Coordinator } from '../../server/coordinator.ts';
import type { RoundRecord } from '../../server/round-record.ts';
import { startCoordinator } from '../../server/start-coordinator.ts';
import { generateIdentity } from '../../shared/crypto/identity.ts';
import type { LoadedBase } from '../../shared/model/base-loader.ts';
import type { HeadSpec } from '../../shared/model/head.ts';
import type { IterateAveragingOptions } from '../../shared/model/iterate-averaging.ts';
import type { TrainableSetSpec } from '../../shared/model/trainable-set.ts';
import { FedAvgM } from '../../shared/strategy/fed-avg-m.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { buildTinySplitCnn, tinyImages } from '../support/tiny-split-cnn.ts';
import { allowListOf, startPinnedClients } from '../support/federation.ts';

const HEAD: HeadSpec = { hidden: [], activation: 'relu', dropout: 0, classes: 2 };
const ROUNDS = 5;
const SCHEDULE: TrainableSetSpec = {
  stages: [
    { fromRound: 1, groups: [{ select: 'head' }] },
    { fromRound: 3, groups: [{ select: 'head' }, { select: 'top', count: 1, unit: 'layers', lrMultiplier: 1 }] },
  ],
};
// The whole of each stage: rounds 1–2 are averaged, then rounds 3–5 alone.
const AVERAGING: IterateAveragingOptions = { tailFraction: 1 };

let work: string;
let base: LoadedBase;
let parts: LabeledDataset[];
const coordinatorIdentity = generateIdentity();
const identities = [generateIdentity(), generateIdentity()];

beforeAll(async () => {
  await selectBackend({ log: false });
  work = await mkdtemp(path.join(os.tmpdir(), 'fedtl-iterate-averaging-'));
  base = await buildTinySplitCnn(path.join(work, 'base'));
  parts = [tinyImages(40, 'client-0'), tinyImages(56, 'client-1')];
});
afterAll(async () => {
  base?.dispose();
  await rm(work, { recursive: true, force: true });
});

interface Run {
  coordinator: Coordinator;
  clients: FedtlClient[];
  /** Per completed round: the global model clients train from, and the one the loop evaluated and handed on. */
  iterates: Float32Array[];
  exported: Float32Array[];
  /** Per round: the model the coordinator's server-side evaluation received. */
  evaluated: Float32Array[];
  records: RoundRecord[];
  tensors: number[];
}

async function startRun(options: { tag: string; checkpointDir?: string; stopAfter?: number; averaging?: IterateAveragingOptions | null; overlapServerEvaluation?: boolean }): Promise<Run> {
  const allowList = allowListOf(identities);
  const run: Omit<Run, 'coordinator' | 'clients'> = { iterates: [], exported: [], evaluated: [], records: [], tensors: [] };
  const coordinator: Coordinator = await startCoordinator({
    identity: coordinatorIdentity,
    allowList,
    base,
    baseDirectory: base.dir,
    headSpec: HEAD,
    strategy: new FedAvgM({ minClients: 2, epochs: 1, batchSize: 8, learningRate: 0.02 }),
    rounds: ROUNDS,
    seed: 9,
    trainable: SCHEDULE,
    loop: {
      roundTimeoutMs: 60_000,
      waitForClientsMs: 60_000,
      ...(options.checkpointDir ? { checkpointDir: options.checkpointDir } : {}),
      ...(options.averaging === null ? {} : { iterateAveraging: options.averaging ?? AVERAGING }),
      // Server-side evaluation records the model it is given; its figures are the model's mean weight, so they are finite and differ by model.
      evaluateGlobal: async (weights, round) => {
        run.evaluated[round - 1] = weights.slice();
        return { loss: 0, accuracy: weights.reduce((sum, w) => sum + w, 0) / weights.length };
      },
      ...(options.overlapServerEvaluation ? { overlapServerEvaluation: true, federatedEvaluation: false } : {}),
      onRound: (record, weights) => {
        run.records.push(record);
        run.iterates.push(coordinator.loop.weights.slice());
        run.exported.push(weights.slice());
        run.tensors.push(tf.memory().numTensors);
        if (record.round === options.stopAfter) coordinator.loop.stop();
      },
    },
  });
  const clients = startPinnedClients({ url: coordinator.url, coordinatorIdentity, identities, parts, cacheDir: work, tag: options.tag });
  return { ...run, coordinator, clients };
}

async function finish(run: Run): Promise<{ exported: Float32Array; weights: Float32Array }> {
  await run.coordinator.run();
  const result = { exported: run.coordinator.loop.bestWeights.slice(), weights: run.coordinator.loop.weights.slice() };
  for (const client of run.clients) client.close();
  await run.coordinator.close();
  return result;
}

/** The float32 mean of `models`, summed in float64 (what the averaging promises). */
function meanOf(models: readonly Float32Array[]): Float32Array {
  const mean = new Float32Array(models[0]!.length);
  for (let i = 0; i < mean.length; i++) {
    let sum = 0;
    for (const model of models) sum += model[i]!;
    mean[i] = sum / models.length;
  }
  return mean;
}

const bytes = (values: Float32Array) => Buffer.from(values.buffer, values.byteOffset, values.byteLength);

describe('iterate averaging in the round loop, over real sockets', () => {
  let straight: Run;
  let straightResult: { exported: Float32Array; weights: Float32Array };

  it('evaluates and exports the mean of each stage’s global models, restarting when the trainable set widens', async () => {
    // Execute
    straight = await startRun({ tag: 'straight' });
    straightResult = await finish(straight);

    // Assert: the iterates differ from round to round (training happened) …
    const { iterates, exported, records } = straight;
    expect(records.map((r) => r.round)).toEqual([1, 2, 3, 4, 5]);
    expect(bytes(iterates[4]!).equals(bytes(iterates[3]!))).toBe(false);
    // … the exported model after each round is the mean over its stage so far …
    expect(records.map((r) => r.averagedRounds)).toEqual([1, 2, 1, 2, 3]);
    expect(bytes(exported[0]!).equals(bytes(iterates[0]!))).toBe(true);
    expect(bytes(exported[1]!).equals(bytes(meanOf(iterates.slice(0, 2))))).toBe(true);
    expect(bytes(exported[2]!).equals(bytes(iterates[2]!))).toBe(true);
    expect(bytes(exported[4]!).equals(bytes(meanOf(iterates.slice(2, 5))))).toBe(true);
    // … the coordinator exports the last one, while clients went on from the last iterate.
    expect(bytes(straightResult.exported).equals(bytes(exported[4]!))).toBe(true);
    expect(bytes(straightResult.weights).equals(bytes(iterates[4]!))).toBe(true);
    expect(bytes(straightResult.exported).equals(bytes(straightResult.weights))).toBe(false);
    // The server-side evaluation ran on the exported model every round, not on the last iterate.
    expect(straight.evaluated.map((model) => bytes(model).equals(bytes(exported[straight.evaluated.indexOf(model)]!)))).toEqual([true, true, true, true, true]);
    expect(bytes(straight.evaluated[4]!).equals(bytes(iterates[4]!))).toBe(false);
  });

  it('evaluates the averaged model when the evaluation overlaps the next round', async () => {
    const overlapped = await startRun({ tag: 'overlapped', overlapServerEvaluation: true });
    await finish(overlapped);
    expect(overlapped.records.map((r) => r.round)).toEqual([1, 2, 3, 4, 5]);
    for (let r = 0; r < ROUNDS; r++) {
      expect(bytes(overlapped.evaluated[r]!).equals(bytes(straight.exported[r]!))).toBe(true);
      expect(overlapped.records[r]!.serverAccuracy).toBe(straight.records[r]!.serverAccuracy);
    }
  });

  it('keeps tf.memory().numTensors flat across rounds and the unfreezing', () => {
    const [r1, r2, r3, r4, r5] = straight.tensors;
    expect(r2).toBe(r1);
    expect(r4).toBe(r3);
    expect(r5).toBe(r3);
  });

  it('does not change the training: without averaging the iterates are the same bytes', async () => {
    const plain = await startRun({ tag: 'plain', averaging: null });
    const result = await finish(plain);
    expect(plain.records.every((r) => r.averagedRounds === undefined)).toBe(true);
    expect(bytes(result.weights).equals(bytes(straightResult.weights))).toBe(true);
    expect(bytes(result.exported).equals(bytes(result.weights))).toBe(true);
  });

  it('resumes mid-window from its checkpoint and exports the same bytes as the uninterrupted run', async () => {
    // Execute: stop after round 4 (two of stage 2's three averaged rounds summed), then a new coordinator resumes round 5
    const checkpointDir = path.join(work, 'resumed');
    const first = await startRun({ tag: 'first', checkpointDir, stopAfter: 4 });
    await finish(first);
    const saved = await loadCheckpoint(checkpointDir);
    const second = await startRun({ tag: 'second', checkpointDir });
    const resumed = await finish(second);

    // Assert: the checkpoint holds the last iterate and the sum; the resumed run ends on the same bytes
    expect(saved?.round).toBe(4);
    expect(bytes(saved!.weights).equals(bytes(straight.iterates[3]!))).toBe(true);
    expect(saved?.averaging).toMatchObject({ from: 3, count: 2 });
    expect(second.records.map((r) => r.round)).toEqual([5]);
    expect(second.records[0]!.averagedRounds).toBe(3);
    expect(bytes(resumed.weights).equals(bytes(straightResult.weights))).toBe(true);
    expect(bytes(resumed.exported).equals(bytes(straightResult.exported))).toBe(true);
  });
});
