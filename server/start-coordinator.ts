/**
 * One call from "a base, a head spec, an identity and an allow list" to a listening coordinator:
 * builds the initial head (seeded, so every run starts alike), describes the base for download,
 * and wires sealed-update opening to the allow list.
 */
import type { AllowList } from '../shared/crypto/allow-list.ts';
import type { Identity } from '../shared/crypto/identity.ts';
import type { FrozenBase } from '../shared/model/frozen-base.ts';
import { buildHead, getHeadWeights, type HeadSpec } from '../shared/model/head.ts';
import { initialModelWeights } from '../shared/model/fine-tune-model.ts';
import { ModelSchedule } from '../shared/model/model-schedule.ts';
import { trainableScheduleFromConfig } from '../shared/model/trainable-set.ts';
import type { BaseDescriptor } from '../shared/protocol/protocol.ts';
import type { Strategy } from '../shared/strategy/strategy.ts';
import { describeBaseDirectory } from './base-server.ts';
import { Coordinator, type CoordinatorOptions } from './coordinator.ts';
import { defaultIngestWorkers } from './update-ingest.ts';
import { createUpdateOpener, type UpdateOpenerOptions } from './update-opener.ts';

export interface StartCoordinatorOptions {
  identity: Identity;
  allowList: AllowList;
  /** The frozen base, and the model directory clients download it from (`null` for the identity base). */
  base: FrozenBase;
  baseDirectory: string | null;
  headSpec: HeadSpec;
  /** See {@link CoordinatorOptions.classNames}. @default adopted from the first ready client */
  classNames?: readonly string[];
  /** See {@link CoordinatorOptions.featureColumns}. @default adopted from the first ready client */
  featureColumns?: readonly string[];
  /** See {@link CoordinatorOptions.dashboard}. @default off */
  dashboard?: CoordinatorOptions['dashboard'];
  strategy: Strategy;
  rounds: number;
  /**
   * What trains, by round (`{ stages: [...] }`, see shared/model/trainable-set.ts), as read from a
   * config file. Resolved against the base before the port opens: a bad one throws `BAD_CONFIG`.
   * @default the head alone (feature extraction)
   */
  trainable?: unknown;
  /** Seed of the initial head and of client selection. @default 0 */
  seed?: number;
  port?: number;
  host?: string;
  validation?: UpdateOpenerOptions;
  /**
   * Worker threads that open (and for weighted-mean strategies sum) sealed updates, see
   * server/update-ingest.ts; 0 opens them on the event loop.
   * @default defaultIngestWorkers(parameters): one per core for heads of ≥ 100k parameters, else 0
   */
  ingestWorkers?: number;
  /** Serve HTTPS/WSS with this certificate and key. @default null (plain HTTP) */
  tls?: CoordinatorOptions['tls'];
  /** Limits of the admission path (server/admission.ts). @default ADMISSION_DEFAULTS */
  admissionLimits?: CoordinatorOptions['admissionLimits'];
  loop?: CoordinatorOptions['loop'];
  logger?: CoordinatorOptions['logger'];
}

export async function describeBase(base: FrozenBase, directory: string | null): Promise<BaseDescriptor> {
  if (directory === null) {
    if (base.input.kind !== 'tensor' || base.model !== null) throw new Error(`base ${base.name} has a model; give the directory clients download it from`);
    return { name: base.name, hash: base.hash, files: [], identitySize: base.input.size };
  }
  return describeBaseDirectory(directory, base.name, base.hash);
}

/** The initial head's weights for a spec and seed (the model itself is disposed). */
export function initialHeadWeights(embeddingSize: number, headSpec: HeadSpec, seed: number): ReturnType<typeof getHeadWeights> {
  const head = buildHead(embeddingSize, headSpec, { seed });
  try {
    return getHeadWeights(head);
  } finally {
    head.dispose();
  }
}

export async function startCoordinator(options: StartCoordinatorOptions): Promise<Coordinator> {
  const seed = options.seed ?? 0;
  const schedule = options.trainable === undefined ? null : trainableScheduleFromConfig(options.trainable, options.base.model, options.rounds);
  // Fine-tuning: the coordinator holds the whole model; each round sends its stage's slice.
  const initial = schedule ? initialModelWeights(options.base, options.headSpec, seed) : initialHeadWeights(options.base.embeddingSize, options.headSpec, seed);
  const trainable = schedule ? new ModelSchedule(options.base, options.headSpec, schedule, initial.manifest) : null;
  const allowList = options.allowList;
  return Coordinator.start({
    identity: options.identity,
    admission: { status: (signingKey) => allowList.isAllowed(signingKey) },
    base: { descriptor: await describeBase(options.base, options.baseDirectory), directory: options.baseDirectory },
    headSpec: options.headSpec,
    ...(options.classNames ? { classNames: options.classNames } : {}),
    ...(options.featureColumns ? { featureColumns: options.featureColumns } : {}),
    ...(options.dashboard ? { dashboard: options.dashboard } : {}),
    manifest: initial.manifest,
    initialWeights: initial.data,
    strategy: options.strategy,
    rounds: options.rounds,
    openUpdate: createUpdateOpener(options.identity, (clientId) => allowList.resolveClient(clientId), options.validation),
    ingest: {
      workers: options.ingestWorkers ?? defaultIngestWorkers(initial.manifest.parameterCount),
      resolveClient: (clientId) => allowList.resolveClient(clientId),
      ...(options.validation ? { validation: options.validation } : {}),
    },
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.host !== undefined ? { host: options.host } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.admissionLimits ? { admissionLimits: options.admissionLimits } : {}),
    loop: { seed, ...options.loop, ...(trainable ? { trainable } : {}) },
  });
}
