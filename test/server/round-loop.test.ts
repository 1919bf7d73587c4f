import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadCheckpoint, saveCheckpoint } from '../../server/checkpoint.ts';
import { RoundLoop, type RoundLoopOptions } from '../../server/round-loop.ts';
import type { HeadSpec } from '../../shared/model/head.ts';
import { FedAvg } from '../../shared/strategy/fed-avg.ts';
import { createUpdateOpener } from '../../server/update-opener.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import { generateIdentity, publicIdentity, sealUpdate, type Identity } from '../../shared/crypto/index.ts';
import type { FitRequest } from '../../shared/protocol/protocol.ts';
import { StrategyWrapper } from '../../shared/strategy/strategy-wrapper.ts';
import type { Aggregation } from '../../shared/strategy/strategy.ts';
import { manifestFromShapes } from '../../shared/weights/flat-weights.ts';

const SPEC: HeadSpec = { hidden: [], activation: 'relu', dropout: 0, classes: 2 };
const MANIFEST = manifestFromShapes([
  { name: 'head_output/kernel', shape: [3, 2] },
  { name: 'head_output/bias', shape: [2] },
]);

function loop(checkpointDir: string, overrides: Partial<RoundLoopOptions> = {}): RoundLoop {
  return new RoundLoop({
    strategy: new FedAvg({ minClients: 1 }),
    headSpec: SPEC,
    manifest: MANIFEST,
    initialWeights: new Float32Array(MANIFEST.parameterCount),
    baseHash: 'a'.repeat(64),
    rounds: 3,
    openUpdate: () => {
      throw new Error('not used');
    },
    sign: () => 'signature',
    checkpointDir,
    logger: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
    ...overrides,
  });
}

/** Adds `clients` to `rounds`, each answering every fit with a delta of 0.5 over 10 examples, after telling `onFit`. */
/** Clients that answer every fit with a delta of 0.5: at once, or after `answerAfterMs` (a round then lasts that long). */
function addAnsweringClients(rounds: RoundLoop, coordinator: Identity, clients: Identity[], onFit: (index: number, request: FitRequest) => void, answerAfterMs?: number): void {
  clients.forEach((identity, index) => {
    const clientId = publicIdentity(identity).clientId;
    rounds.addParticipant(
      {
        clientId,
        sendFit: (request) => {
          onFit(index, request);
          const delta = new Float32Array(MANIFEST.parameterCount).fill(0.5);
          const answer = () => rounds.receiveUpdate(clientId, sealUpdate({ header: { roundId: request.roundId, exampleCount: 10 }, delta }, { clientIdentity: identity, coordinatorBoxKey: coordinator.box.publicKey }));
          if (answerAfterMs === undefined) queueMicrotask(answer);
          else setTimeout(answer, answerAfterMs);
        },
        sendEvaluate: () => undefined,
      },
      10,
    );
  });
}

let dir = '';
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = '';
});

describe('RoundLoop.resume', () => {

  it('resumes the head, history and round of a checkpoint that fits this run', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-resume-'));
    const weights = Float32Array.from({ length: MANIFEST.parameterCount }, (_, i) => i / 10);
    await saveCheckpoint(dir, { round: 2, runId: 'run1', baseHash: 'a'.repeat(64), headSpec: SPEC, manifest: MANIFEST, weights, history: [] });
    const resumed = loop(dir);
    expect(await resumed.resume()).toBe(2);
    expect(Array.from(resumed.weights)).toEqual(Array.from(weights));
    expect(resumed.completedRounds).toBe(2);
  });

  it('refuses a checkpoint of another base, or of a head with the same size but another spec', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-resume-'));
    const weights = new Float32Array(MANIFEST.parameterCount);
    await saveCheckpoint(dir, { round: 1, runId: 'run1', baseHash: 'a'.repeat(64), headSpec: SPEC, manifest: MANIFEST, weights, history: [] });
    await expect(loop(dir, { baseHash: 'b'.repeat(64) }).resume()).rejects.toThrow(/another base/);
    // Same parameter count, different activation: resuming would silently train a different model.
    await expect(loop(dir, { headSpec: { ...SPEC, activation: 'tanh' } }).resume()).rejects.toThrow(/another head/);
  });
});

describe('RoundLoop with rowAveraging', () => {
  it('warns at start that it changes nothing when the model has no embedding table, and only then', () => {
    // Prepare: a head-only manifest (feature extraction), with and without the option
    const warned = (rowAveraging: boolean) => {
      const warnings: string[] = [];
      loop(os.tmpdir(), { strategy: new FedAvg({ minClients: 1, rowAveraging }), logger: { debug: () => undefined, info: () => undefined, warn: (m) => warnings.push(m), error: (m) => warnings.push(m) } });
      return warnings;
    };

    // Execute + Assert
    expect(warned(true)).toEqual([expect.stringMatching(/^rowAveraging \(--row-averaging 1\) changes nothing here: the model the rounds train has no embedding table/)]);
    expect(warned(false)).toEqual([]);
  });
});

describe('RoundLoop and a failed secure aggregation', () => {
  it('keeps the last good head when a round\'s sum cannot be verified, and retries the round', async () => {
    const coordinator = generateIdentity();
    const clients = [generateIdentity(), generateIdentity()];
    const keys = new Map(clients.map((c) => [publicIdentity(c).clientId, publicIdentity(c)]));
    /** Fails the first finish as secure aggregation does on inconsistent shares, then aggregates normally. */
    class FailOnce extends StrategyWrapper {
      readonly wrapperName = 'fail-once';
      failed = 0;
      override aggregateFit(round: number, global: Float32Array): Aggregation {
        const inner = this.inner.aggregateFit(round, global);
        return {
          add: (u) => inner.add(u),
          get count() {
            return inner.count;
          },
          get exampleCount() {
            return inner.exampleCount;
          },
          finish: () => {
            if (this.failed++ === 0) throw new FedtlError('SECAGG_FAILED', 'cannot recover the self-mask seed of a client (inconsistent shares)');
            return inner.finish();
          },
        };
      }
    }
    const strategy = new FailOnce(new FedAvg({ minClients: 2 }));
    const seen: number[] = [];
    const rounds = new RoundLoop({
      strategy,
      headSpec: SPEC,
      manifest: MANIFEST,
      initialWeights: new Float32Array(MANIFEST.parameterCount),
      baseHash: 'a'.repeat(64),
      rounds: 1,
      openUpdate: createUpdateOpener(coordinator, (id) => keys.get(id)),
      sign: () => 'signature',
      federatedEvaluation: false,
      logger: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
    });
    addAnsweringClients(rounds, coordinator, clients, (_, request) => {
      seen.push(Array.from(new Float32Array(request.weights.buffer.slice(request.weights.byteOffset, request.weights.byteOffset + request.weights.byteLength))).reduce((a, b) => a + b, 0));
    });
    const history = await rounds.run();
    expect(strategy.failed).toBe(2);
    expect(history[0]!.attempts).toBe(2);
    // Both attempts started from the initial head: the failed one changed nothing.
    expect(seen).toEqual([0, 0, 0, 0]);
    expect(Array.from(rounds.weights)).toEqual(new Array(MANIFEST.parameterCount).fill(0.5));
  });
});

/** A round loop whose server evaluation overlaps the next round, with two clients answering every fit with 0.5. */
async function overlappingLoop(
  rounds: number,
  evaluateGlobal: NonNullable<RoundLoopOptions['evaluateGlobal']>,
  onRound: NonNullable<RoundLoopOptions['onRound']>,
  onFit: (index: number, request: FitRequest) => void,
  { answerAfterMs, checkpoint = true }: { answerAfterMs?: number; checkpoint?: boolean } = {},
): Promise<RoundLoop> {
  dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-overlap-'));
  const coordinator = generateIdentity();
  const clients = [generateIdentity(), generateIdentity()];
  const keys = new Map(clients.map((c) => [publicIdentity(c).clientId, publicIdentity(c)]));
  const loop = new RoundLoop({
    strategy: new FedAvg({ minClients: 2 }),
    headSpec: SPEC,
    manifest: MANIFEST,
    initialWeights: new Float32Array(MANIFEST.parameterCount),
    baseHash: 'a'.repeat(64),
    rounds,
    openUpdate: createUpdateOpener(coordinator, (id) => keys.get(id)),
    sign: () => 'signature',
    federatedEvaluation: false,
    overlapServerEvaluation: true,
    ...(checkpoint ? { checkpointDir: dir } : {}),
    evaluateGlobal,
    onRound,
    logger: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
  });
  addAnsweringClients(loop, coordinator, clients, onFit, answerAfterMs);
  return loop;
}

describe('RoundLoop with the server evaluation overlapping the next round', () => {
  it('trains round r + 1 while round r is evaluated, and still records, checkpoints and reports each round in order with its own head', async () => {
    // Prepare: two clients that answer every fit with a delta of 0.5 (the head after round r is 0.5·r),
    // and a server evaluation that takes 30 ms and reports accuracy r / 10.
    const events: string[] = [];
    const reported: [number, number, number | null][] = [];
    const rounds = await overlappingLoop(
      3,
      async (weights, round) => {
        events.push(`evaluate ${round} from ${weights[0]}`);
        await new Promise((resolve) => setTimeout(resolve, 30));
        events.push(`evaluated ${round}`);
        return { loss: 1 / round, accuracy: round / 10 };
      },
      (record, weights) => reported.push([record.round, weights[0]!, record.serverAccuracy]),
      (index, request) => {
        if (index === 0) events.push(`fit ${request.round}`);
      },
    );

    // Execute
    const history = await rounds.run();

    // Assert: round 2 was sent before round 1's evaluation ended; each round evaluated and reported its own head, in order.
    expect(events.indexOf('fit 2')).toBeLessThan(events.indexOf('evaluated 1'));
    expect(events.filter((e) => e.startsWith('evaluate '))).toEqual(['evaluate 1 from 0.5', 'evaluate 2 from 1', 'evaluate 3 from 1.5']);
    expect(reported).toEqual([[1, 0.5, 0.1], [2, 1, 0.2], [3, 1.5, 0.3]]);
    expect(history.map((r) => [r.round, r.serverLoss, r.serverAccuracy])).toEqual([[1, 1, 0.1], [2, 0.5, 0.2], [3, 1 / 3, 0.3]]);
    expect(history.every((r) => r.seconds >= 0)).toBe(true);
    const checkpoint = await loadCheckpoint(dir);
    expect(checkpoint?.round).toBe(3);
    expect(Array.from(checkpoint!.weights)).toEqual(new Array(MANIFEST.parameterCount).fill(1.5));
    expect(checkpoint?.history.map((r) => r.serverAccuracy)).toEqual([0.1, 0.2, 0.3]);
  });

  it('stops at a failed evaluation: the error propagates, and no later round is trained or recorded', async () => {
    // Prepare: rounds that last 20 ms (the clients answer after that), and a server evaluation that fails at once for round 2.
    const fits: number[] = [];
    const reported: number[] = [];
    const rounds = await overlappingLoop(
      6,
      async (_weights, round) => {
        if (round === 2) throw new FedtlError('INTERNAL', 'evaluation of round 2 failed');
        return { loss: 1 / round, accuracy: round / 10 };
      },
      (record) => reported.push(record.round),
      (index, request) => {
        if (index === 0) fits.push(request.round);
      },
      // No checkpoint: a round's completion is then free of I/O, so when the failure is seen does not depend on the disk.
      { answerAfterMs: 20, checkpoint: false },
    );

    // Execute
    const failure = await rounds.run().then(() => null, (error: unknown) => error);

    // Assert: the evaluation's own error, rounds after the failure not trained, round 1 alone recorded.
    expect(failure).toBeInstanceOf(FedtlError);
    expect((failure as FedtlError).message).toMatch(/evaluation of round 2 failed/);
    expect(Math.max(...fits)).toBeLessThanOrEqual(3);
    expect(reported).toEqual([1]);
  });
});
