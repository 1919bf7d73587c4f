/**
 * The one wire contract between a coordinator and its clients: socket.io event maps, message
 * types, limits and the parsers that turn untrusted `unknown` payloads into typed messages.
 *
 * Every round message carries a `roundId` (unique per attempt of a round) so that anything that
 * arrives late or twice is recognisably stale. Weights always travel as binary (`Uint8Array` of
 * little-endian float32), never as JSON numbers; weights from a client travel only inside a sealed
 * update envelope (shared/crypto).
 */
import { createHash } from 'node:crypto';
import { FedtlError, isErrorCode, type ErrorCode } from '../core/errors.ts';
import type { HeadSpec } from '../model/head.ts';
import { parseHeadSpec } from '../model/head.ts';
import { parseTrainableStage, trainableStageText, type TrainableStage } from '../model/trainable-set.ts';
import type { ConfigValue, FitConfig } from '../strategy/strategy.ts';
import { parseManifest, type WeightManifest } from '../weights/flat-weights.ts';
import type { SecAggDown, SecAggUp } from './secagg-messages.ts';

/**
 * v2: fit configs may carry `proximalMu` and `extra`, and are signed whole (as sorted JSON).
 * v3: hellos are bound to their connection; `ready` and `evaluation` are signed.
 * v4: a round message may refer to weights the client already holds (`weightsDigest`) instead of
 * carrying them, and a client that does not hold them asks for them with `weights:missing`.
 * v5: an update's sealed payload may be row-sparse (its header's `encoding`): a fine-tuned
 * embedding table travels as the rows a client used, where the round accepts it (not under secure
 * aggregation).
 * v6: drift correction (shared/strategy/drift-correction.ts): a fit config may ask for the
 * client's gradient instead of training (`extra['drift.phase']`), and a fit request may carry the
 * federation's mean gradient (`control`), named by a digest in its signed config.
 */
export const PROTOCOL_VERSION = 6;

/** Byte limits the coordinator announces and enforces. */
export interface ProtocolLimits {
  /** Largest sealed update accepted, in bytes. */
  maxUpdateBytes: number;
  /** Size of one base chunk a client may request. */
  chunkBytes: number;
  /** socket.io's `maxHttpBufferSize`: the largest frame a client may send (an update plus framing). */
  maxMessageBytes: number;
}

/** Sent by a client in socket.io's `auth` at connection time, signed with its Ed25519 key. */
export interface Hello {
  protocolVersion: number;
  /** Client's Ed25519 public key, base64. */
  signingKey: string;
  /** Client's X25519 public key, base64. */
  boxKey: string;
  /** Milliseconds since the epoch; the coordinator refuses hellos older than a few minutes. */
  timestamp: number;
  /** 16 random bytes, base64; a nonce seen before is a replayed hello. */
  nonce: string;
  /**
   * Ed25519 signature, base64, over {@link helloSignedText}: it names the coordinator's key and the
   * engine.io session id of the connection the hello travels on, so it is good for that one
   * connection only.
   */
  signature: string;
}

/** One file of a base model directory, as served to clients. */
export interface BaseFile {
  name: string;
  bytes: number;
  sha256: string;
}

export interface BaseDescriptor {
  name: string;
  /** Content hash of the base; the directory a client caches it in. */
  hash: string;
  /** Files of the base's model directory; empty for the identity base (no frozen model). */
  files: BaseFile[];
  /** Input size of the identity base (features are the inputs); absent for real bases. */
  identitySize?: number;
}

export interface Welcome {
  protocolVersion: number;
  clientId: string;
  /** Coordinator's Ed25519 signature over {@link welcomeSignedText}; proves it holds the pinned key. */
  signature: string;
  base: BaseDescriptor;
  headSpec: HeadSpec;
  manifest: WeightManifest;
  limits: ProtocolLimits;
  /**
   * The federation's class names in label order, when the coordinator was given them: a client
   * numbers its labels by this list, and a client whose names differ is refused.
   */
  classNames?: string[];
  /** Feature column names in input order (CSV data), when the coordinator knows them. */
  featureColumns?: string[];
}

export interface FitRequest {
  roundId: string;
  round: number;
  /**
   * Global head, float32 little-endian; empty when {@link FitRequest.weightsDigest} refers to
   * weights the client already holds.
   */
  weights: Uint8Array;
  /**
   * Present instead of the weights: the {@link roundWeightsDigest} of weights this client received
   * and verified in an earlier message (typically the last round's evaluation), which the
   * signature covers as it covers sent weights. A client that does not hold them answers
   * `weights:missing`, and the coordinator sends them in full. Absent: `weights` are here.
   */
  weightsDigest?: string;
  config: FitConfig;
  /** Milliseconds since the epoch after which the coordinator ignores this round's updates. */
  deadline: number;
  /** Coordinator's signature over {@link roundSignedText}. */
  signature: string;
  /**
   * What trains this round when the coordinator fine-tunes (see shared/model/trainable-set.ts):
   * `weights` is then that stage's slice of the model. Covered by the signature through
   * {@link roundWeightsDigest}. Absent: the head alone (feature extraction).
   */
  trainable?: TrainableStage;
  /**
   * Drift correction: the federation's mean gradient c at these weights, float32 little-endian, one
   * value per weight. Covered by the signature through the SHA-256 its config names
   * (`extra['drift.control']`, shared/strategy/drift-correction.ts). @default absent
   */
  control?: Uint8Array;
}

export interface EvaluateRequest {
  roundId: string;
  round: number;
  /** As in {@link FitRequest.weights}. */
  weights: Uint8Array;
  /** As in {@link FitRequest.weightsDigest}. */
  weightsDigest?: string;
  deadline: number;
  signature: string;
  /** As in {@link FitRequest.trainable}. */
  trainable?: TrainableStage;
}

export interface EvaluationReport {
  roundId: string;
  /** Validation examples evaluated; at most the `validationExamples` declared in `ready`. */
  examples: number;
  loss: number;
  accuracy: number;
  /** Client's Ed25519 signature, base64, over {@link evaluationSignedText}. */
  signature: string;
}

/** An evaluation as the round loop folds it; the signature is checked at the transport. */
export type EvaluationResult = Omit<EvaluationReport, 'signature'>;

export interface BaseReadRequest {
  hash: string;
  file: string;
  offset: number;
  length: number;
}

export type Ack = { ok: true } | { ok: false; code: ErrorCode; message: string };
export type BaseReadReply = { ok: true; bytes: Uint8Array } | { ok: false; code: ErrorCode; message: string };

export interface ReadyReport {
  baseHash: string;
  /** Training examples the client holds (a count, never data). */
  examples: number;
  /** Size of the client's validation split; its evaluation reports may not count more. */
  validationExamples: number;
  /** Client's Ed25519 signature, base64, over {@link readySignedText}. */
  signature: string;
  /** The client's class names in label order; the coordinator refuses names that differ from its own. */
  classNames?: string[];
  /** The client's feature column names in input order (CSV data); must match the federation's. */
  featureColumns?: string[];
}

/**
 * A client's refusal of a round message that refers to weights it does not hold (it restarted, or
 * never verified them): the coordinator answers by sending that round's message again in full.
 */
export interface WeightsMissing {
  roundId: string;
  /** The `weightsDigest` of the refused message. */
  weightsDigest: string;
}

export interface FinishedNotice {
  rounds: number;
  reason: string;
}

export interface ServerToClientEvents {
  welcome: (message: Welcome) => void;
  fit: (message: FitRequest) => void;
  evaluate: (message: EvaluateRequest) => void;
  finished: (message: FinishedNotice) => void;
  /** An error about something the client sent outside an acknowledged call. */
  problem: (message: { code: ErrorCode; message: string }) => void;
  /** One step of secure aggregation over sockets (shared/protocol/secagg-messages.ts). */
  secagg: (message: SecAggDown) => void;
}

export interface ClientToServerEvents {
  ready: (message: ReadyReport, ack: (reply: Ack) => void) => void;
  'base:read': (request: BaseReadRequest, ack: (reply: BaseReadReply) => void) => void;
  update: (sealed: Uint8Array, ack: (reply: Ack) => void) => void;
  evaluation: (report: EvaluationReport, ack: (reply: Ack) => void) => void;
  /** A round message referred to weights this client does not hold; the coordinator re-sends it in full. */
  'weights:missing': (message: WeightsMissing, ack: (reply: Ack) => void) => void;
  /** A client's sealed reply to a secure-aggregation step. */
  secagg: (message: SecAggUp, ack: (reply: Ack) => void) => void;
}

// ---------------------------------------------------------------------------------------------
// Signed texts. Domain-separated so a signature made for one purpose is useless for another.

/** `connectionId` is the engine.io session id the coordinator chose for the connection. */
export function helloSignedText(coordinatorSigningKey: string, connectionId: string, hello: Omit<Hello, 'signature'>): string {
  return `fedtl-hello/v${hello.protocolVersion}|${coordinatorSigningKey}|${connectionId}|${hello.signingKey}|${hello.boxKey}|${hello.timestamp}|${hello.nonce}`;
}

/**
 * `ready` and `evaluation` are signed by the client over the coordinator's key and the nonce of the
 * hello that opened the connection, so they cannot be injected by anyone on the path, nor replayed
 * on another connection; an evaluation also names its round id, unique per run and attempt.
 */
export function readySignedText(coordinatorSigningKey: string, helloNonce: string, ready: Omit<ReadyReport, 'signature'>): string {
  // Names as JSON: they may hold any character, including the separator.
  const names = `${JSON.stringify(ready.classNames ?? null)}|${JSON.stringify(ready.featureColumns ?? null)}`;
  return `fedtl-ready/v${PROTOCOL_VERSION}|${coordinatorSigningKey}|${helloNonce}|${ready.baseHash}|${ready.examples}|${ready.validationExamples}|${names}`;
}

export function evaluationSignedText(coordinatorSigningKey: string, helloNonce: string, report: Omit<EvaluationReport, 'signature'>): string {
  return `fedtl-evaluation/v${PROTOCOL_VERSION}|${coordinatorSigningKey}|${helloNonce}|${report.roundId}|${report.examples}|${report.loss}|${report.accuracy}`;
}

/**
 * The welcome signature covers the whole base descriptor (every file's name, size and SHA-256),
 * not only the model hash: a text base's vocabulary is not part of the model hash, and a client
 * must be able to trust every file it downloads.
 */
export function welcomeSignedText(clientSigningKey: string, helloNonce: string, base: BaseDescriptor): string {
  const files = base.files.map((f) => `${f.name}:${f.bytes}:${f.sha256}`).join(',');
  return `fedtl-welcome/v${PROTOCOL_VERSION}|${clientSigningKey}|${helloNonce}|${base.name}|${base.hash}|${base.identitySize ?? ''}|${files}`;
}

/** A fit config as signed text: JSON with sorted keys at every level, so both sides write the same bytes. */
export function fitConfigText(config: FitConfig): string {
  const sorted = (value: unknown): unknown =>
    typeof value === 'object' && value !== null ? Object.fromEntries(Object.keys(value).sort().map((key) => [key, sorted((value as Record<string, unknown>)[key])])) : value;
  return JSON.stringify(sorted(config));
}

/**
 * The digest a round message's signature covers: SHA-256 of the weights, and of the trainable
 * stage after them when there is one (so a relay cannot swap what the weights mean).
 */
export function roundWeightsDigest(weights: Uint8Array, trainable?: TrainableStage): string {
  const hash = createHash('sha256').update(weights);
  if (trainable) hash.update(`\nfedtl-trainable/v1|${trainableStageText(trainable)}`);
  return hash.digest('hex');
}

/** SHA-256 (hex) of a fit request's control vector: its signed config names it (shared/strategy/drift-correction.ts). */
export function controlDigest(control: Uint8Array): string {
  return createHash('sha256').update(control).digest('hex');
}

export function roundSignedText(kind: 'fit' | 'evaluate', roundId: string, round: number, deadline: number, weightsSha256: string, config?: FitConfig): string {
  // The whole config is signed, the strategy's extensions included: a relay cannot change μ or an `extra` setting.
  const configText = config ? fitConfigText(config) : '';
  return `fedtl-${kind}/v${PROTOCOL_VERSION}|${roundId}|${round}|${deadline}|${weightsSha256}|${configText}`;
}

// ---------------------------------------------------------------------------------------------
// Parsers: untrusted `unknown` in, typed message out, or a FedtlError('BAD_MESSAGE') that says what is wrong.

type Fields = Record<string, unknown>;

function object(value: unknown, what: string): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    throw new FedtlError('BAD_MESSAGE', `${what}: expected an object`);
  }
  return value as Fields;
}

function string(fields: Fields, key: string, what: string, maxLength = 512): string {
  const value = fields[key];
  if (typeof value !== 'string' || value.length === 0 || value.length > maxLength) {
    throw new FedtlError('BAD_MESSAGE', `${what}.${key}: expected a non-empty string of at most ${maxLength} characters`);
  }
  return value;
}

function integer(fields: Fields, key: string, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const value = fields[key];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new FedtlError('BAD_MESSAGE', `${what}.${key}: expected an integer in [${min}, ${max}]`);
  }
  return value;
}

function finite(fields: Fields, key: string, what: string): number {
  const value = fields[key];
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new FedtlError('BAD_MESSAGE', `${what}.${key}: expected a finite number`);
  return value;
}

/** socket.io delivers binary as Buffer (a Uint8Array) in Node and ArrayBuffer elsewhere. */
export function bytes(value: unknown, what: string, maxBytes: number): Uint8Array {
  let out: Uint8Array;
  if (value instanceof Uint8Array) out = value;
  else if (value instanceof ArrayBuffer) out = new Uint8Array(value);
  else throw new FedtlError('BAD_MESSAGE', `${what}: expected binary data`);
  if (out.byteLength > maxBytes) throw new FedtlError('TOO_LARGE', `${what}: ${out.byteLength} bytes is over the limit of ${maxBytes}`);
  return out;
}

export function parseHello(value: unknown): Hello {
  const fields = object(value, 'hello');
  const protocolVersion = integer(fields, 'protocolVersion', 'hello', 0, 1_000_000);
  if (protocolVersion !== PROTOCOL_VERSION) {
    throw new FedtlError('PROTOCOL_VERSION', `client speaks protocol v${protocolVersion}, this coordinator speaks v${PROTOCOL_VERSION}: upgrade the older side`);
  }
  return {
    protocolVersion,
    signingKey: string(fields, 'signingKey', 'hello', 64),
    boxKey: string(fields, 'boxKey', 'hello', 64),
    timestamp: integer(fields, 'timestamp', 'hello'),
    nonce: string(fields, 'nonce', 'hello', 64),
    signature: string(fields, 'signature', 'hello', 128),
  };
}

function parseLimits(value: unknown): ProtocolLimits {
  const fields = object(value, 'welcome.limits');
  return {
    maxUpdateBytes: integer(fields, 'maxUpdateBytes', 'welcome.limits', 1),
    chunkBytes: integer(fields, 'chunkBytes', 'welcome.limits', 1),
    maxMessageBytes: integer(fields, 'maxMessageBytes', 'welcome.limits', 1),
  };
}

function parseBaseDescriptor(value: unknown): BaseDescriptor {
  const fields = object(value, 'welcome.base');
  const files = fields['files'];
  if (!Array.isArray(files) || files.length > 64) throw new FedtlError('BAD_MESSAGE', 'welcome.base.files: expected up to 64 files');
  const identitySize = fields['identitySize'];
  if (files.length === 0 && identitySize === undefined) throw new FedtlError('BAD_MESSAGE', 'welcome.base: a base without files must give identitySize');
  return {
    ...(identitySize !== undefined ? { identitySize: integer(fields, 'identitySize', 'welcome.base', 1, 1 << 24) } : {}),
    name: string(fields, 'name', 'welcome.base'),
    hash: parseHash(fields['hash'], 'welcome.base.hash'),
    files: files.map((file, i) => {
      const f = object(file, `welcome.base.files[${i}]`);
      const name = string(f, 'name', `welcome.base.files[${i}]`, 128);
      // The client writes these names under its cache directory: no path tricks.
      if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.')) throw new FedtlError('BAD_MESSAGE', `welcome.base.files[${i}].name "${name}" is not a plain file name`);
      return { name, bytes: integer(f, 'bytes', `welcome.base.files[${i}]`), sha256: parseHash(f['sha256'], `welcome.base.files[${i}].sha256`) };
    }),
  };
}

export function parseHash(value: unknown, what: string): string {
  if (typeof value !== 'string' || !/^[0-9a-f]{64}$/.test(value)) throw new FedtlError('BAD_MESSAGE', `${what}: expected a SHA-256 hex digest`);
  return value;
}

/** Limits of a name list (class names, CSV columns) in a message. */
const MAX_NAMES = 100_000;
const MAX_NAME_LENGTH = 256;

/** An optional list of distinct non-empty names; absent stays absent. */
function optionalNames<K extends string>(fields: Fields, key: K, what: string): Partial<Record<K, string[]>> {
  const value = fields[key];
  if (value === undefined) return {};
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_NAMES || !value.every((n) => typeof n === 'string' && n.length > 0 && n.length <= MAX_NAME_LENGTH)) {
    throw new FedtlError('BAD_MESSAGE', `${what}.${key}: expected 1 to ${MAX_NAMES} non-empty strings of at most ${MAX_NAME_LENGTH} characters`);
  }
  if (new Set(value).size !== value.length) throw new FedtlError('BAD_MESSAGE', `${what}.${key}: names must be distinct`);
  return { [key]: value as string[] } as Partial<Record<K, string[]>>;
}

/** Two name lists are the same when they hold the same names in the same order. */
export function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((name, i) => name === b[i]);
}

export function parseWelcome(value: unknown): Welcome {
  const fields = object(value, 'welcome');
  const protocolVersion = integer(fields, 'protocolVersion', 'welcome');
  if (protocolVersion !== PROTOCOL_VERSION) throw new FedtlError('PROTOCOL_VERSION', `coordinator speaks protocol v${protocolVersion}, this client v${PROTOCOL_VERSION}`);
  return {
    protocolVersion,
    clientId: string(fields, 'clientId', 'welcome', 64),
    signature: string(fields, 'signature', 'welcome', 128),
    base: parseBaseDescriptor(fields['base']),
    headSpec: parseHeadSpec(fields['headSpec'], 'welcome.headSpec'),
    manifest: parseManifest(fields['manifest'], 'welcome.manifest'),
    limits: parseLimits(fields['limits']),
    ...optionalNames(fields, 'classNames', 'welcome'),
    ...optionalNames(fields, 'featureColumns', 'welcome'),
  };
}

export function parseFitConfig(value: unknown, what = 'fit.config'): FitConfig {
  const fields = object(value, what);
  const optimizer = fields['optimizer'];
  if (optimizer !== 'sgd' && optimizer !== 'adam') throw new FedtlError('BAD_MESSAGE', `${what}.optimizer: expected "sgd" or "adam"`);
  const learningRate = finite(fields, 'learningRate', what);
  if (learningRate <= 0) throw new FedtlError('BAD_MESSAGE', `${what}.learningRate: must be positive`);
  const proximalMu = fields['proximalMu'];
  if (proximalMu !== undefined && !(typeof proximalMu === 'number' && Number.isFinite(proximalMu) && proximalMu >= 0)) {
    throw new FedtlError('BAD_MESSAGE', `${what}.proximalMu: expected a finite number ≥ 0`);
  }
  const extra = fields['extra'] === undefined ? undefined : parseConfigExtra(fields['extra'], `${what}.extra`);
  return {
    epochs: integer(fields, 'epochs', what, 1, 10_000),
    batchSize: integer(fields, 'batchSize', what, 1, 1_000_000),
    learningRate,
    optimizer,
    ...(proximalMu !== undefined ? { proximalMu } : {}),
    ...(extra !== undefined ? { extra } : {}),
  };
}

/** Settings a strategy wrapper adds to a fit config: up to 64 keys, finite numbers, booleans or short strings. */
function parseConfigExtra(value: unknown, what: string): Record<string, ConfigValue> {
  const fields = object(value, what);
  const entries = Object.entries(fields);
  if (entries.length > 64) throw new FedtlError('BAD_MESSAGE', `${what}: at most 64 keys, got ${entries.length}`);
  const out: Record<string, ConfigValue> = {};
  for (const [key, item] of entries) {
    if (!/^[a-zA-Z][\w.-]{0,63}$/.test(key)) throw new FedtlError('BAD_MESSAGE', `${what}: key ${JSON.stringify(key.slice(0, 70))} is not a plain name`);
    const ok = typeof item === 'boolean' || (typeof item === 'number' && Number.isFinite(item)) || (typeof item === 'string' && item.length <= 1024);
    if (!ok) throw new FedtlError('BAD_MESSAGE', `${what}.${key}: expected a finite number, a boolean or a string of at most 1024 characters`);
    out[key] = item as ConfigValue;
  }
  return out;
}

/**
 * A round message's weights: either the bytes (non-empty) or a digest of weights the client holds,
 * never both, so a message cannot say one thing in its bytes and another in its digest.
 */
function roundWeights(fields: Fields, what: string, maxBytes: number): { weights: Uint8Array; weightsDigest?: string } {
  if (fields['weightsDigest'] === undefined) {
    const weights = bytes(fields['weights'], `${what}.weights`, maxBytes);
    if (weights.byteLength === 0) throw new FedtlError('BAD_MESSAGE', `${what}.weights: empty; a message without weights must name the ones it refers to in weightsDigest`);
    return { weights };
  }
  const weightsDigest = parseHash(fields['weightsDigest'], `${what}.weightsDigest`);
  const sent = fields['weights'];
  if (sent !== undefined && bytes(sent, `${what}.weights`, maxBytes).byteLength > 0) {
    throw new FedtlError('BAD_MESSAGE', `${what}: carries both weights and weightsDigest; a message either sends the weights or refers to held ones`);
  }
  return { weights: new Uint8Array(0), weightsDigest };
}

export function parseFitRequest(value: unknown, maxBytes: number): FitRequest {
  const fields = object(value, 'fit');
  return {
    roundId: string(fields, 'roundId', 'fit', 128),
    round: integer(fields, 'round', 'fit'),
    ...roundWeights(fields, 'fit', maxBytes),
    config: parseFitConfig(fields['config']),
    deadline: integer(fields, 'deadline', 'fit'),
    signature: string(fields, 'signature', 'fit', 128),
    ...(fields['trainable'] !== undefined ? { trainable: parseTrainableStage(fields['trainable'], 'fit.trainable') } : {}),
    ...(fields['control'] !== undefined ? { control: controlBytes(fields['control'], maxBytes) } : {}),
  };
}

/** A fit request's control vector: non-empty whole float32 values within the message limit. */
function controlBytes(value: unknown, maxBytes: number): Uint8Array {
  const control = bytes(value, 'fit.control', maxBytes);
  if (control.byteLength === 0 || control.byteLength % 4 !== 0) throw new FedtlError('BAD_MESSAGE', `fit.control: ${control.byteLength} bytes is not a whole, non-empty number of float32 values`);
  return control;
}

export function parseEvaluateRequest(value: unknown, maxBytes: number): EvaluateRequest {
  const fields = object(value, 'evaluate');
  return {
    roundId: string(fields, 'roundId', 'evaluate', 128),
    round: integer(fields, 'round', 'evaluate'),
    ...roundWeights(fields, 'evaluate', maxBytes),
    deadline: integer(fields, 'deadline', 'evaluate'),
    signature: string(fields, 'signature', 'evaluate', 128),
    ...(fields['trainable'] !== undefined ? { trainable: parseTrainableStage(fields['trainable'], 'evaluate.trainable') } : {}),
  };
}

export function parseEvaluationReport(value: unknown): EvaluationReport {
  const fields = object(value, 'evaluation');
  const accuracy = finite(fields, 'accuracy', 'evaluation');
  if (accuracy < 0 || accuracy > 1) throw new FedtlError('BAD_MESSAGE', 'evaluation.accuracy: must be in [0, 1]');
  const loss = finite(fields, 'loss', 'evaluation');
  if (loss < 0) throw new FedtlError('BAD_MESSAGE', 'evaluation.loss: must not be negative');
  // examples = 0 is a client saying it has no validation data: it answers so the round need not wait for it.
  return {
    roundId: string(fields, 'roundId', 'evaluation', 128),
    examples: integer(fields, 'examples', 'evaluation', 0, 1e9),
    loss,
    accuracy,
    signature: string(fields, 'signature', 'evaluation', 128),
  };
}

export function parseWeightsMissing(value: unknown): WeightsMissing {
  const fields = object(value, 'weights:missing');
  return { roundId: string(fields, 'roundId', 'weights:missing', 128), weightsDigest: parseHash(fields['weightsDigest'], 'weights:missing.weightsDigest') };
}

export function parseBaseReadRequest(value: unknown, chunkBytes: number): BaseReadRequest {
  const fields = object(value, 'base:read');
  return {
    hash: parseHash(fields['hash'], 'base:read.hash'),
    file: string(fields, 'file', 'base:read', 128),
    offset: integer(fields, 'offset', 'base:read'),
    length: integer(fields, 'length', 'base:read', 1, chunkBytes),
  };
}

export function parseReadyReport(value: unknown): ReadyReport {
  const fields = object(value, 'ready');
  return {
    baseHash: parseHash(fields['baseHash'], 'ready.baseHash'),
    examples: integer(fields, 'examples', 'ready', 1, 1e9),
    validationExamples: integer(fields, 'validationExamples', 'ready', 0, 1e9),
    signature: string(fields, 'signature', 'ready', 128),
    ...optionalNames(fields, 'classNames', 'ready'),
    ...optionalNames(fields, 'featureColumns', 'ready'),
  };
}

export function parseAck(value: unknown): Ack {
  const fields = object(value, 'ack');
  if (fields['ok'] === true) return { ok: true };
  const code = fields['code'];
  return { ok: false, code: isErrorCode(code) ? code : 'INTERNAL', message: typeof fields['message'] === 'string' ? fields['message'] : 'rejected' };
}

/** Typed error reply for an acknowledged call. */
export function errorAck(error: FedtlError): { ok: false; code: ErrorCode; message: string } {
  return { ok: false, code: error.code, message: error.message };
}
