/**
 * Test fixture: a real coordinator on port 0 and real socket.io clients on loopback, with real
 * tweetnacl identities and real MNIST digits behind an identity base (features = pixels), so a
 * whole federation runs in seconds. Everything it starts, it stops in `close()`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll } from 'vitest';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { FedtlClient, type ClientOptions, type ClientRoundEvent } from '../../client/client.ts';
import { subset, type LabeledDataset } from '../../client/data/dataset.ts';
import { loadMnist } from '../../client/data/mnist.ts';
import { Coordinator } from '../../server/coordinator.ts';
import { startCoordinator } from '../../server/start-coordinator.ts';
import { createIdentityBase } from '../../shared/bases/identity.ts';
import { AllowList } from '../../shared/crypto/allow-list.ts';
import { formatPublicIdentity, generateIdentity, publicIdentity, type Identity } from '../../shared/crypto/identity.ts';
import type { HeadSpec } from '../../shared/model/head.ts';
import { FedAvg, type FedAvgOptions } from '../../shared/strategy/fed-avg.ts';
import type { Strategy } from '../../shared/strategy/strategy.ts';
import type { CoordinatorOptions } from '../../server/coordinator.ts';

export const DIGIT_HEAD: HeadSpec = { hidden: [], activation: 'relu', dropout: 0, classes: 10 };

let mnistCache: { train: LabeledDataset; test: LabeledDataset } | null = null;

/** 1,500 training and 500 test MNIST digits as 784-float rows. */
export async function digits(): Promise<{ train: LabeledDataset; test: LabeledDataset }> {
  mnistCache ??= {
    train: await loadMnist({ split: 'train', limit: 1500, seed: 1, format: 'tensor' }),
    test: await loadMnist({ split: 'test', limit: 500, seed: 2, format: 'tensor' }),
  };
  return mnistCache;
}

/** Splits `dataset` into `n` disjoint contiguous parts of unequal size (so example weighting matters). */
export function disjointParts(dataset: LabeledDataset, sizes: number[]): LabeledDataset[] {
  let start = 0;
  return sizes.map((size, i) => {
    const indices = Array.from({ length: size }, (_, j) => start + j);
    start += size;
    return subset(dataset, indices, { name: `${dataset.name}-part${i}` });
  });
}

export interface FederationOptions {
  clients: number;
  rounds: number;
  /** Examples per client. */
  sizes?: number[];
  strategy?: FedAvgOptions;
  /** Builds the strategy from the fixture's FedAvg options instead of plain FedAvg. @default FedAvg */
  makeStrategy?: (options: FedAvgOptions, coordinator: Identity) => Strategy;
  loop?: CoordinatorOptions['loop'];
  /** Identities on the allow list beyond the clients'. */
  extraAllowed?: string[];
  checkpointDir?: string;
  /** Serve the coordinator's dashboard. @default off */
  dashboard?: CoordinatorOptions['dashboard'];
  /** Serve over TLS with this certificate; clients trust `tls.cert`. */
  tls?: { cert: string; key: string };
}

export class Federation {
  coordinator!: Coordinator;
  readonly coordinatorIdentity: Identity = generateIdentity();
  readonly identities: Identity[] = [];
  readonly clients: FedtlClient[] = [];
  readonly events: ClientRoundEvent[][] = [];
  readonly roundWeights: Float32Array[] = [];
  /** The coordinator's head before round 1. */
  initialWeights = new Float32Array(0);
  /** `tf.memory().numTensors` when each round completed. */
  readonly tensorsAfterRound: number[] = [];
  allowList!: AllowList;
  parts: LabeledDataset[] = [];
  test!: LabeledDataset;
  cacheDir = '';
  #ca: string | undefined;

  static async start(options: FederationOptions): Promise<Federation> {
    const federation = new Federation();
    await federation.#start(options);
    return federation;
  }

  async #start(options: FederationOptions): Promise<void> {
    this.#ca = options.tls?.cert;
    this.cacheDir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-test-'));
    const data = await digits();
    this.test = data.test;
    this.parts = disjointParts(data.train, options.sizes ?? Array.from({ length: options.clients }, (_, i) => 200 + 100 * i));
    for (let i = 0; i < options.clients; i++) this.identities.push(generateIdentity());
    const lines = [...this.identities.map((id, i) => `${formatPublicIdentity(publicIdentity(id))} client-${i}`), ...(options.extraAllowed ?? [])];
    this.allowList = AllowList.fromText(lines.join('\n'));
    this.coordinator = await startCoordinator({
      identity: this.coordinatorIdentity,
      allowList: this.allowList,
      base: createIdentityBase(784, { name: 'pixels-784' }),
      baseDirectory: null,
      headSpec: DIGIT_HEAD,
      // Adam restarts every round; at 0.05 its first steps overshoot and the evaluation loss of a
      // 3-round run rises or falls depending on the digit sample. 0.01 (the FedAvg default) falls
      // monotonically on every sample tried.
      strategy: (options.makeStrategy ?? ((o) => new FedAvg(o)))({ minClients: options.clients, learningRate: 0.01, epochs: 1, batchSize: 32, ...options.strategy }, this.coordinatorIdentity),
      rounds: options.rounds,
      seed: 3,
      ...(options.dashboard ? { dashboard: options.dashboard } : {}),
      ...(options.tls ? { tls: options.tls } : {}),
      loop: {
        roundTimeoutMs: 30_000,
        evaluateTimeoutMs: 30_000,
        waitForClientsMs: 60_000,
        onRound: (_record, weights) => {
          this.roundWeights.push(weights);
          this.tensorsAfterRound.push(tf.memory().numTensors);
        },
        ...(options.checkpointDir ? { checkpointDir: options.checkpointDir } : {}),
        ...options.loop,
      },
    });
    this.initialWeights = Float32Array.from(this.coordinator.loop.weights);
  }

  /** The global head round `round` (1-based) started from. */
  headBefore(round: number): Float32Array {
    return round === 1 ? this.initialWeights : this.roundWeights[round - 2]!;
  }

  /** Starts client `i` with its own identity and data part. */
  startClient(i: number, extra: { identity?: Identity; url?: string; ca?: string | null; transformDelta?: ClientOptions['transformDelta']; onRound?: (event: ClientRoundEvent, client: FedtlClient) => void } = {}): FedtlClient {
    const events: ClientRoundEvent[] = (this.events[i] ??= []);
    const pub = publicIdentity(this.coordinatorIdentity);
    const client = new FedtlClient({
      url: extra.url ?? this.coordinator.url,
      coordinator: { signingKey: pub.signingKey, boxKey: pub.boxKey },
      identity: extra.identity ?? this.identities[i]!,
      data: { train: this.parts[i]!, validation: subset(this.test, Array.from({ length: 100 }, (_, j) => j + 100 * (i % 5))) },
      cacheDir: path.join(this.cacheDir, `client-${i}`),
      seed: i,
      backoff: { min: 100, max: 500 },
      ...((extra.ca === undefined ? this.#ca : extra.ca) ? { ca: (extra.ca === undefined ? this.#ca : extra.ca)! } : {}),
      onRound: (event) => {
        events.push(event);
        extra.onRound?.(event, client);
      },
      ...(extra.transformDelta ? { transformDelta: extra.transformDelta } : {}),
    }).start();
    this.clients.push(client);
    return client;
  }

  async close(): Promise<void> {
    for (const client of this.clients) client.close();
    await this.coordinator.close();
    await rm(this.cacheDir, { recursive: true, force: true });
  }
}

/**
 * The largest difference between `actual` and `previous + Σ n_k Δ_k / Σ n_k` over `sent` (what the
 * clients reported sending): how far a round's head is from the example-weighted mean of its deltas.
 */
export function weightedMeanError(previous: Float32Array, sent: readonly ClientRoundEvent[], actual: Float32Array): number {
  const total = sent.reduce((sum, e) => sum + e.exampleCount, 0);
  let maxError = 0;
  for (let j = 0; j < previous.length; j++) {
    const expected = previous[j]! + sent.reduce((sum, e) => sum + e.exampleCount * e.delta[j]!, 0) / total;
    maxError = Math.max(maxError, Math.abs(expected - actual[j]!));
  }
  return maxError;
}

/**
 * For a describe block whose tests each start one {@link Federation}: selects the backend once and
 * closes the test's federation after it. A test sets `started.federation`.
 */
export function useFederation(): { federation: Federation | undefined } {
  const started: { federation: Federation | undefined } = { federation: undefined };
  beforeAll(async () => {
    await selectBackend({ log: false });
  });
  afterEach(async () => {
    await started.federation?.close();
    started.federation = undefined;
  });
  return started;
}

/** The allow list of `identities`, named client-0, client-1, … in order. */
export function allowListOf(identities: readonly Identity[]): AllowList {
  return AllowList.fromText(identities.map((id, i) => `${formatPublicIdentity(publicIdentity(id))} client-${i}`).join('\n'));
}

/**
 * Starts one real client per identity: client i trains on `parts[i]`, pins the coordinator's public
 * keys, caches under `<cacheDir>/<tag>-client-<i>` and is seeded with i; `extra(i)` adds options.
 */
export function startPinnedClients(options: {
  url: string;
  coordinatorIdentity: Identity;
  identities: readonly Identity[];
  parts: readonly LabeledDataset[];
  cacheDir: string;
  tag: string;
  extra?: (i: number) => Partial<ClientOptions>;
}): FedtlClient[] {
  const pub = publicIdentity(options.coordinatorIdentity);
  return options.identities.map((identity, i) =>
    new FedtlClient({
      url: options.url,
      coordinator: { signingKey: pub.signingKey, boxKey: pub.boxKey },
      identity,
      data: { train: options.parts[i]! },
      cacheDir: path.join(options.cacheDir, `${options.tag}-client-${i}`),
      seed: i,
      backoff: { min: 100, max: 500 },
      ...options.extra?.(i),
    }).start(),
  );
}
