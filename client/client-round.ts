/**
 * A client's round, written once: verify the coordinator's signed request → train (or evaluate)
 * on the client's cached features → seal the delta. The socket client (client.ts, and through it
 * every `fedtl client` process) and the simulator's virtual clients all call these functions, so
 * they share one seed formula, one bytes→floats conversion and one signature check.
 */
import { FedtlError } from '../shared/core/errors.ts';
import type { Identity } from '../shared/crypto/identity.ts';
import { decodeKey } from '../shared/crypto/identity.ts';
import { verifyText } from '../shared/crypto/signatures.ts';
import { sealUpdate } from '../shared/crypto/update-envelope.ts';
import { controlDigest, roundSignedText, roundWeightsDigest, type EvaluateRequest, type EvaluationResult, type FitRequest } from '../shared/protocol/protocol.ts';
import { driftInstruction } from '../shared/strategy/drift-correction.ts';
import { bytesToFloat32 } from '../shared/weights/flat-weights.ts';
import type { LabeledFeatures, LocalFitResult, LocalTrainer } from './local-trainer.ts';
import { wantsSecAgg } from './secagg-party.ts';
import type { StageTrainer } from './stage-trainer.ts';

/** Seed of client `index` of a run seeded with `runSeed` (simulations give each client its own). */
export function clientSeed(runSeed: number, index: number): number {
  return runSeed * 7919 + index;
}

/** Seed of a client's local shuffles in one round: one formula for every mode. */
export function roundSeed(seed: number, round: number): number {
  return seed * 100_003 + round;
}

export interface ClientRoundContext {
  identity: Identity;
  /** The pinned coordinator's public keys (raw bytes or base64). */
  coordinator: { signingKey: Uint8Array; boxKey: Uint8Array | string };
  /** A {@link LocalTrainer}, or anything that trains the same way (a simulation's worker pool). */
  trainer: Pick<LocalTrainer, 'fit' | 'evaluate'>;
  train: LabeledFeatures;
  /** Local validation split; evaluation answers with zero examples without one. @default null */
  validation?: LabeledFeatures | null;
  /** This client's seed ({@link clientSeed}); each round trains with {@link roundSeed}. @default 0 */
  seed?: number;
  /** Largest sealed update the coordinator accepts (its announced limit). @default no check */
  maxUpdateBytes?: number;
  /**
   * Verified requests and their weights. Virtual clients of one simulation receive the same
   * request object and share this cache, so each round message is checked once, not once per client.
   * @default none
   */
  verified?: WeakMap<FitRequest | EvaluateRequest, Float32Array>;
  /**
   * The last global weights this client verified, kept so a round message may refer to them by
   * digest instead of carrying them again. Without it, such a message is refused with
   * `WEIGHTS_NOT_HELD`. @default none
   */
  held?: HeldWeights;
  /**
   * Client-side counterpart of a strategy wrapper (e.g. masking for secure aggregation): receives
   * the trained delta and the request, returns the delta to seal. @default identity
   */
  transformDelta?: (delta: Float32Array, request: FitRequest) => Float32Array;
  /**
   * Fine-tuning: trains and evaluates the stage a request names (`request.trainable`). Without
   * it, such a request is refused. A {@link StageTrainer}, or anything that trains the same way (a
   * simulation's worker pool). @default none (feature extraction only)
   */
  stages?: Pick<StageTrainer, 'fit' | 'evaluate'>;
}

function stageTrainer(context: ClientRoundContext, request: FitRequest | EvaluateRequest): Pick<StageTrainer, 'fit' | 'evaluate'> {
  if (!context.stages) throw new FedtlError('BAD_CONFIG', `round ${request.round} fine-tunes base layers, but this client was set up for the head alone`);
  return context.stages;
}

/** Throws `BAD_SIGNATURE` unless `signature` (base64) is the pinned coordinator key's signature of `text`. */
export function verifyCoordinatorSignature(text: string, signature: string, coordinatorSigningKey: Uint8Array): void {
  let raw: Uint8Array;
  try {
    raw = decodeKey(signature, 'signature', 64);
  } catch {
    throw new FedtlError('BAD_SIGNATURE', 'coordinator signature is malformed');
  }
  if (!verifyText(text, raw, coordinatorSigningKey)) throw new FedtlError('BAD_SIGNATURE', 'message is not signed by the pinned coordinator key');
}

/**
 * The global weights a client last verified, under their {@link roundWeightsDigest}: one entry,
 * because the coordinator refers only to the last weights it knows the client holds.
 */
export class HeldWeights {
  #digest: string | null = null;
  #weights: Float32Array | null = null;

  /** The weights held under `digest`, if these are the ones held. */
  get(digest: string): Float32Array | undefined {
    return digest === this.#digest && this.#weights ? this.#weights : undefined;
  }

  /** Keeps `weights`, verified under `digest`, in place of the previous ones. */
  set(digest: string, weights: Float32Array): void {
    this.#digest = digest;
    this.#weights = weights;
  }
}

/**
 * Checks a round message's signature with the pinned coordinator key and returns its weights as
 * float32 values: the message's own, or, when it refers to weights by `weightsDigest`, the ones
 * held under that digest. Throws `BAD_SIGNATURE` for a message the coordinator did not sign, and
 * `WEIGHTS_NOT_HELD` for a signed reference to weights this client does not hold.
 */
export function verifyRoundRequest(context: Pick<ClientRoundContext, 'coordinator' | 'verified' | 'held'>, request: FitRequest | EvaluateRequest): Float32Array {
  const cached = context.verified?.get(request);
  if (cached) return cached;
  const kind = 'config' in request ? 'fit' : 'evaluate';
  const referred = request.weightsDigest !== undefined && request.weights.byteLength === 0;
  const digest = referred ? request.weightsDigest! : roundWeightsDigest(request.weights, request.trainable);
  const text = roundSignedText(kind, request.roundId, request.round, request.deadline, digest, 'config' in request ? request.config : undefined);
  // Signature first: a forged digest is refused as forged, whatever this client holds.
  verifyCoordinatorSignature(text, request.signature, context.coordinator.signingKey);
  let weights: Float32Array;
  if (referred) {
    const held = context.held?.get(digest);
    if (!held) throw new FedtlError('WEIGHTS_NOT_HELD', `round ${request.round}: the ${kind} request refers to weights ${digest.slice(0, 12)} that this client does not hold`);
    weights = held;
  } else {
    weights = bytesToFloat32(request.weights, `${kind}.weights`);
    // Kept under the digest computed here from the bytes: a later reference matches only these exact weights.
    context.held?.set(digest, weights);
  }
  context.verified?.set(request, weights);
  return weights;
}

/** Control vectors already checked against their digest, by the bytes (virtual clients share a request). */
const checkedControls = new WeakMap<Uint8Array, Float32Array>();

/**
 * A fit request's control vector (drift correction), checked: present exactly when the signed
 * config names one, its SHA-256 the one named (`BAD_SIGNATURE` otherwise: the signature covers it
 * through that digest), one value per weight.
 */
export function verifiedControl(request: FitRequest, parameterCount: number): Float32Array | undefined {
  const drift = driftInstruction(request.config);
  if (drift?.kind !== 'corrected') {
    if (request.control) throw new FedtlError('BAD_MESSAGE', `round ${request.round}: the fit request carries a control vector its signed config does not name`);
    return undefined;
  }
  if (!request.control) throw new FedtlError('BAD_MESSAGE', `round ${request.round}: the drift-corrected fit request carries no control vector`);
  let control = checkedControls.get(request.control);
  if (!control) {
    if (controlDigest(request.control) !== drift.controlDigest) throw new FedtlError('BAD_SIGNATURE', `round ${request.round}: the control vector is not the one the signed config names`);
    control = bytesToFloat32(request.control, 'fit.control');
    checkedControls.set(request.control, control);
  }
  if (control.length !== parameterCount) throw new FedtlError('BAD_SHAPE', `round ${request.round}: the control vector has ${control.length} values, the weights ${parameterCount}`);
  return control;
}

export interface FitRoundResult extends LocalFitResult {
  /** The sealed envelope to send to the coordinator. */
  sealed: Uint8Array;
}

/** verify → train → seal: one client's answer to a fit request. */
export async function runFitRound(context: ClientRoundContext, request: FitRequest): Promise<FitRoundResult> {
  const weights = verifyRoundRequest(context, request);
  const control = verifiedControl(request, weights.length);
  const seed = roundSeed(context.seed ?? 0, request.round);
  const result = request.trainable
    ? await stageTrainer(context, request).fit(request.trainable, weights, request.config, seed, control)
    : await context.trainer.fit(weights, context.train, request.config, seed, control);
  const delta = context.transformDelta ? context.transformDelta(result.delta, request) : result.delta;
  // Embedding tables row-sparse where smaller, except when the delta is transformed (a mask needs
  // every coordinate) or aggregated securely (the row indices would tell which words: SECURITY.md).
  const rowSparse = result.manifest && !context.transformDelta && !wantsSecAgg(request.config) ? { rowSparse: result.manifest } : {};
  // A trainer's own envelope holds the untransformed delta: it stands only when nothing transforms it.
  const sealed =
    result.sealed && !context.transformDelta
      ? result.sealed
      : sealUpdate({ header: { roundId: request.roundId, exampleCount: result.exampleCount, metrics: result.metrics }, delta }, { clientIdentity: context.identity, coordinatorBoxKey: context.coordinator.boxKey, ...rowSparse });
  if (context.maxUpdateBytes !== undefined && sealed.byteLength > context.maxUpdateBytes) {
    throw new FedtlError('TOO_LARGE', `sealed update is ${sealed.byteLength} bytes, over the coordinator's limit of ${context.maxUpdateBytes}`);
  }
  return { ...result, delta, sealed };
}

/** verify → evaluate: one client's answer to an evaluate request (zero examples without validation data). */
export async function runEvaluateRound(context: ClientRoundContext, request: EvaluateRequest): Promise<EvaluationResult> {
  const weights = verifyRoundRequest(context, request);
  const validation = context.validation;
  // A client without validation data still answers, so the round does not wait for it.
  const none = { examples: 0, loss: 0, accuracy: 0 };
  const result = request.trainable
    ? ((await stageTrainer(context, request).evaluate(request.trainable, weights)) ?? none)
    : validation && validation.features.rows > 0
      ? await context.trainer.evaluate(weights, validation)
      : none;
  return { roundId: request.roundId, examples: result.examples, loss: result.loss, accuracy: result.accuracy };
}
