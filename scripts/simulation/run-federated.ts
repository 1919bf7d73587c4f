/**
 * One federated run of a simulation, in either mode, through the coordinator's round loop:
 *
 * - `virtual`: clients are index arrays into the cached feature matrix. Each selected client
 *   trains the shared head on its rows, seals its delta with its own key, and hands the envelope to
 *   `RoundLoop.receiveUpdate`: the same training, sealing, validation and aggregation as a
 *   deployment, minus the sockets. Memory per client is its indices.
 * - `socket`: a real coordinator on a loopback port and one real `FedtlClient` per client, each
 *   downloading the base, computing its own features and training over socket.io.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { FedtlClient } from '../../client/client.ts';
import { subset, type LabeledDataset } from '../../client/data/dataset.ts';
import { splitTrainTest } from '../../client/data/split.ts';
import { LocalTrainer } from '../../client/local-trainer.ts';
import { RoundLoop } from '../../server/round-loop.ts';
import type { RoundRecord } from '../../server/round-record.ts';
import { initialHeadWeights, startCoordinator } from '../../server/start-coordinator.ts';
import { createUpdateOpener } from '../../server/update-opener.ts';
import { createLogger } from '../../shared/core/log.ts';
import { AllowList } from '../../shared/crypto/allow-list.ts';
import { clientIdFromSigningKey, encodeKey, formatPublicIdentity, generateIdentity, publicIdentity, type Identity } from '../../shared/crypto/identity.ts';
import { sealUpdate } from '../../shared/crypto/update-envelope.ts';
import { createRandom } from '../../shared/math/random.ts';
import { selectRows, type FeatureMatrix } from '../../shared/model/feature-matrix.ts';
import type { FrozenBase } from '../../shared/model/frozen-base.ts';
import { buildHead, setHeadWeights } from '../../shared/model/head.ts';
import { evaluateHead } from '../../shared/model/head-training.ts';
import { FedAvg } from '../../shared/strategy/fed-avg.ts';
import { FedAvgM } from '../../shared/strategy/fed-avg-m.ts';
import nacl from 'tweetnacl';
import type { SimulationConfig } from './presets.ts';
import { nativeIdentity } from './virtual-identities.ts';

export interface FederatedRunInput {
  config: SimulationConfig;
  base: FrozenBase;
  baseDirectory: string | null;
  /** Per-client example indices into the training set. */
  parts: Int32Array[];
  /** Virtual mode: the training set's features; socket mode: the raw training set. */
  trainFeatures: FeatureMatrix;
  trainLabels: Int32Array;
  trainDataset?: LabeledDataset;
  testFeatures: FeatureMatrix;
  testLabels: Int32Array;
  mode: 'virtual' | 'socket';
  label: string;
  onRound?: (record: RoundRecord) => void;
}

export interface FederatedRunResult {
  history: RoundRecord[];
  weights: Float32Array;
  seconds: number;
}

/** Server-side evaluation of a global head on the held-out test features. */
function makeEvaluator(input: FederatedRunInput, head: tf.LayersModel, manifest: ReturnType<typeof initialHeadWeights>['manifest']) {
  return async (weights: Float32Array) => {
    setHeadWeights(head, { manifest, data: weights });
    const result = await evaluateHead(head, input.testFeatures, input.testLabels);
    return { loss: result.loss, accuracy: result.accuracy };
  };
}

function strategyOf(config: SimulationConfig): FedAvg {
  const options = {
    fractionFit: config.fractionFit,
    minClients: config.minClients,
    minUpdates: Math.max(1, Math.floor(config.minClients * 0.5)),
    epochs: config.epochs,
    batchSize: config.batchSize,
    learningRate: config.learningRate,
    optimizer: config.optimizer,
  };
  return config.serverMomentum > 0 ? new FedAvgM({ ...options, serverMomentum: config.serverMomentum }) : new FedAvg(options);
}

export async function runFederated(input: FederatedRunInput): Promise<FederatedRunResult> {
  return input.mode === 'virtual' ? runVirtual(input) : runSocket(input);
}

async function runVirtual(input: FederatedRunInput): Promise<FederatedRunResult> {
  const { config } = input;
  const started = Date.now();
  const coordinator = nativeIdentity();
  const initial = initialHeadWeights(input.base.embeddingSize, config.head, config.seed);
  const serverHead = buildHead(input.base.embeddingSize, config.head);
  const clientHead = buildHead(input.base.embeddingSize, config.head);
  const trainer = new LocalTrainer(clientHead, initial.manifest);
  const keysById = new Map<string, { signingKey: string; boxKey: string }>();
  const identities: Identity[] = [];
  const faults = createRandom(`${config.seed}-faults-${input.label}`);
  const log = createLogger('simulation');
  const loop = new RoundLoop({
    strategy: strategyOf(config),
    headSpec: config.head,
    manifest: initial.manifest,
    initialWeights: initial.data,
    baseHash: input.base.hash,
    rounds: config.rounds,
    openUpdate: createUpdateOpener(coordinator, (clientId) => keysById.get(clientId)),
    sign: (text) => encodeKey(nacl.sign.detached(new TextEncoder().encode(text), coordinator.signing.secretKey)),
    federatedEvaluation: false,
    evaluateGlobal: makeEvaluator(input, serverHead, initial.manifest),
    roundTimeoutMs: 3_600_000,
    waitForClientsMs: 1_000,
    seed: config.seed,
    logger: { ...log, info: () => undefined },
    ...(input.onRound ? { onRound: (record: RoundRecord) => input.onRound!(record) } : {}),
  });
  // Virtual clients train one at a time on the shared head: a chain of jobs.
  let queue: Promise<void> = Promise.resolve();
  input.parts.forEach((indices, i) => {
    const identity = nativeIdentity();
    identities.push(identity);
    const clientId = clientIdFromSigningKey(identity.signing.publicKey);
    keysById.set(clientId, { signingKey: encodeKey(identity.signing.publicKey), boxKey: encodeKey(identity.box.publicKey) });
    loop.addParticipant(
      {
        clientId,
        sendEvaluate: () => undefined,
        sendFit: (request) => {
          queue = queue.then(async () => {
            if (faults.nextFloat() < config.dropoutRate) return loop.reportDropped(clientId, 'crashed');
            if (faults.nextFloat() < config.stragglerRate) return loop.reportDropped(clientId, 'missed the deadline');
            const data = { features: selectRows(input.trainFeatures, indices), labels: Int32Array.from(indices, (row) => input.trainLabels[row]!) };
            const weights = new Float32Array(request.weights.buffer, request.weights.byteOffset, request.weights.byteLength / 4);
            const result = await trainer.fit(weights, data, request.config, config.seed * 7919 + request.round * 104_729 + i);
            const sealed = sealUpdate(
              { header: { roundId: request.roundId, exampleCount: result.exampleCount, metrics: result.metrics }, delta: result.delta },
              { clientIdentity: identity, coordinatorBoxKey: coordinator.box.publicKey },
            );
            const ack = loop.receiveUpdate(clientId, sealed);
            if (!ack.ok) log.warn(`virtual client ${i}: update rejected: ${ack.code}: ${ack.message}`);
          });
        },
      },
      indices.length,
    );
  });
  try {
    const history = await loop.run();
    return { history: [...history], weights: loop.weights, seconds: (Date.now() - started) / 1000 };
  } finally {
    serverHead.dispose();
    clientHead.dispose();
  }
}

async function runSocket(input: FederatedRunInput): Promise<FederatedRunResult> {
  const { config } = input;
  const dataset = input.trainDataset;
  if (!dataset) throw new Error('socket mode needs the raw training set');
  const started = Date.now();
  const cacheDir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-sim-'));
  const coordinatorIdentity = generateIdentity();
  const identities = input.parts.map(() => generateIdentity());
  const allowList = AllowList.fromText(identities.map((id, i) => `${formatPublicIdentity(publicIdentity(id))} sim-client-${i}`).join('\n'));
  const initial = initialHeadWeights(input.base.embeddingSize, config.head, config.seed);
  const serverHead = buildHead(input.base.embeddingSize, config.head);
  const quiet = { ...createLogger('coordinator'), info: () => undefined };
  const coordinator = await startCoordinator({
    identity: coordinatorIdentity,
    allowList,
    base: input.base,
    baseDirectory: input.baseDirectory,
    headSpec: config.head,
    strategy: strategyOf(config),
    rounds: config.rounds,
    seed: config.seed,
    logger: quiet,
    loop: {
      roundTimeoutMs: config.roundTimeoutMs,
      evaluateTimeoutMs: config.roundTimeoutMs,
      waitForClientsMs: 600_000,
      evaluateGlobal: makeEvaluator(input, serverHead, initial.manifest),
      ...(input.onRound ? { onRound: (record: RoundRecord) => input.onRound!(record) } : {}),
    },
  });
  const pub = publicIdentity(coordinatorIdentity);
  const clients = input.parts.map((indices, i) => {
    const own = subset(dataset, indices, { name: `client-${i}` });
    // Each client keeps a slice of its own data for federated evaluation, when it has enough.
    const split = own.size >= 20 ? splitTrainTest(own, { testFraction: config.validationFraction, seed: config.seed + i }) : { train: own, test: null };
    return new FedtlClient({
      url: coordinator.url,
      coordinator: { signingKey: pub.signingKey, boxKey: pub.boxKey },
      identity: identities[i]!,
      data: { train: split.train, ...(split.test ? { validation: split.test } : {}) },
      // Each client its own cache, as on separate machines: each downloads and verifies the base.
      cacheDir: path.join(cacheDir, `client-${i}`),
      seed: config.seed * 7919 + i,
      faults: { dropRate: config.dropoutRate, seed: config.seed + i },
      logger: { ...createLogger(`client-${i}`), info: () => undefined },
    }).start();
  });
  try {
    const history = await coordinator.run();
    return { history: [...history], weights: coordinator.loop.weights, seconds: (Date.now() - started) / 1000 };
  } finally {
    for (const client of clients) client.close();
    await coordinator.close();
    serverHead.dispose();
    await rm(cacheDir, { recursive: true, force: true });
  }
}
