/**
 * Test fixture for hostile-input and fault tests: a real coordinator on loopback with a
 * file-backed allow list (so revocations are edits of a file on disk), and {@link RawClient}, a
 * hand-driven socket.io client that speaks the protocol byte by byte (signs hellos with
 * `helloSignedText`, seals with `sealUpdate`) so a test can send exactly what an attacker would.
 *
 * Honest behaviour is scripted too ({@link RawClient.answerFits}): known deltas and example counts
 * make the expected aggregate exact. Everything started here is stopped by `close()`.
 */
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import nacl from 'tweetnacl';
import { afterEach, beforeAll } from 'vitest';
import { io, type Socket } from 'socket.io-client';
import { Coordinator, type CoordinatorOptions } from '../../server/coordinator.ts';
import type { RoundLoop } from '../../server/round-loop.ts';
import type { RoundRecord } from '../../server/round-record.ts';
import { describeBase, initialHeadWeights } from '../../server/start-coordinator.ts';
import { createUpdateOpener } from '../../server/update-opener.ts';
import { createIdentityBase } from '../../shared/bases/identity.ts';
import { isErrorCode, type ErrorCode } from '../../shared/core/errors.ts';
import type { Logger } from '../../shared/core/log.ts';
import { AllowList } from '../../shared/crypto/allow-list.ts';
import { encodeKey, formatPublicIdentity, generateIdentity, publicIdentity, type Identity } from '../../shared/crypto/identity.ts';
import { sealUpdate } from '../../shared/crypto/update-envelope.ts';
import { signReady, type ReportBinding } from '../../shared/crypto/hello.ts';
import { PROTOCOL_VERSION, helloSignedText, parseAck, type Ack, type EvaluateRequest, type FitRequest, type Hello, type Welcome } from '../../shared/protocol/protocol.ts';
import { FedAvg, type FedAvgOptions } from '../../shared/strategy/fed-avg.ts';
import type { Strategy } from '../../shared/strategy/strategy.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { DIGIT_HEAD } from './federation.ts';

export const BASE = createIdentityBase(784, { name: 'pixels-784' });

/** Rejects with a message naming `what` if `promise` has not settled after `ms` (a guard, not a sleep). */
export function within<T>(promise: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

/** Items pushed by event handlers, consumed in order by `next()`. */
export class EventQueue<T> {
  readonly items: T[] = [];
  #cursor = 0;
  readonly #waiters: Array<(item: T) => void> = [];

  push(item: T): void {
    this.items.push(item);
    const waiter = this.#waiters.shift();
    if (waiter) {
      this.#cursor++;
      waiter(item);
    }
  }

  next(what = 'an event'): Promise<T> {
    if (this.#cursor < this.items.length) return Promise.resolve(this.items[this.#cursor++]!);
    return within(new Promise<T>((resolve) => this.#waiters.push(resolve)), what);
  }
}

/** A deterministic small delta: values in [-0.01, 0.01], different for every seed. */
export function makeDelta(length: number, seed: number): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = (((i * 7919 + seed * 104_729) % 2001) - 1000) / 100_000;
  return out;
}

/** previous + Σ n_k Δ_k / Σ n_k, in float64 (what FedAvg must produce). */
export function weightedMean(previous: Float32Array, updates: ReadonlyArray<{ delta: Float32Array; examples: number }>): Float64Array {
  const total = updates.reduce((sum, u) => sum + u.examples, 0);
  return Float64Array.from(previous, (value, j) => value + updates.reduce((sum, u) => sum + u.examples * u.delta[j]!, 0) / total);
}

export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** Resolves once `loop` has `n` ready members. Wraps `addParticipant` (the loop has no membership event). */
export function membersReached(loop: RoundLoop, n: number): Promise<void> {
  if (loop.memberCount >= n) return Promise.resolve();
  return within(
    new Promise<void>((resolve) => {
      const original = loop.addParticipant.bind(loop);
      loop.addParticipant = (participant, examples) => {
        original(participant, examples);
        if (loop.memberCount >= n) {
          loop.addParticipant = original;
          resolve();
        }
      };
    }),
    `${n} ready members`,
  );
}

/** A logger that records warnings (tests assert on them) and prints nothing. */
export function recordingLogger(): Logger & { warnings: EventQueue<string> } {
  const warnings = new EventQueue<string>();
  return { warnings, debug: () => undefined, info: () => undefined, warn: (m) => warnings.push(m), error: (m) => warnings.push(m) };
}

export interface HelloOptions {
  protocolVersion?: number;
  timestamp?: number;
  nonce?: string;
  /** Public signing key the hello claims. @default the identity's */
  claimedSigningKey?: string;
  /** Coordinator key the hello is signed for. @default the real coordinator's */
  signedFor?: string;
  /** Replaces the signature. */
  signature?: string;
  /** engine.io session id the hello is signed over. @default the connection's own (see {@link RawClient.connect}) */
  connectionId?: string;
}

/** A hello as FedtlClient builds it, with any field overridable. */
export function signedHello(identity: Identity, coordinatorSigningKey: string, options: HelloOptions & { connectionId: string }): Hello {
  const unsigned = {
    protocolVersion: options.protocolVersion ?? PROTOCOL_VERSION,
    signingKey: options.claimedSigningKey ?? encodeKey(identity.signing.publicKey),
    boxKey: encodeKey(identity.box.publicKey),
    timestamp: options.timestamp ?? Date.now(),
    nonce: options.nonce ?? encodeKey(nacl.randomBytes(16)),
  };
  const text = new TextEncoder().encode(helloSignedText(options.signedFor ?? coordinatorSigningKey, options.connectionId, unsigned));
  return { ...unsigned, signature: options.signature ?? encodeKey(nacl.sign.detached(text, identity.signing.secretKey)) };
}

/** What a raw connection presents as its hello: a fixed value (a recorded or malformed hello), or one made for the connection's session id. */
export type AuthSource = unknown;
export type HelloFactory = (connectionId: string) => unknown;

export interface Refusal {
  code: ErrorCode | undefined;
  message: string;
}

/** Something a scripted honest client sent and how the coordinator answered. */
export interface SentUpdate {
  round: number;
  roundId: string;
  delta: Float32Array;
  examples: number;
  ack: Ack;
}

/** A socket.io client driven by hand. Never reconnects by itself. */
export class RawClient {
  readonly socket: Socket;
  readonly identity: Identity;
  readonly fits = new EventQueue<FitRequest>();
  readonly evaluates = new EventQueue<EvaluateRequest>();
  readonly problems = new EventQueue<{ code: ErrorCode; message: string }>();
  readonly sent = new EventQueue<SentUpdate>();
  readonly disconnected: Promise<string>;
  welcome!: Welcome;
  #coordinatorBoxKey = '';
  #coordinatorSigningKey = '';

  private constructor(socket: Socket, identity: Identity) {
    this.socket = socket;
    this.identity = identity;
    this.disconnected = new Promise((resolve) => socket.once('disconnect', (reason: string) => resolve(reason)));
    // Attach now: a fit may arrive before the test asks for it.
    socket.on('fit', (message: FitRequest) => this.fits.push(message));
    socket.on('evaluate', (message: EvaluateRequest) => this.evaluates.push(message));
    socket.on('problem', (problem: { code: ErrorCode; message: string }) => this.problems.push(problem));
  }

  /** The hello this client's connection presented (for replay tests). */
  sentAuth: unknown = undefined;

  static #open(url: string, auth: AuthSource, onSent: (sent: unknown) => void = () => undefined, extra: Record<string, unknown> = {}): Socket {
    const socket: Socket = io(url, {
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
      ...extra,
      auth: (send: (auth: object) => void) => {
        const sent = typeof auth === 'function' ? (auth as HelloFactory)(socket.io.engine.id) : auth;
        onSent(sent);
        send(sent as object);
      },
    });
    return socket;
  }

  /** Connects with `auth` and resolves after the welcome; rejects with the refusal if the handshake is refused. */
  static connect(url: string, identity: Identity, coordinatorSigningKey: string, coordinatorBoxKey: string, auth: AuthSource, extra: Record<string, unknown> = {}): Promise<RawClient> {
    let sentAuth: unknown;
    const socket = RawClient.#open(url, auth, (sent) => (sentAuth = sent), extra);
    const client = new RawClient(socket, identity);
    socket.once('welcome', () => (client.sentAuth = sentAuth));
    client.#coordinatorBoxKey = coordinatorBoxKey;
    client.#coordinatorSigningKey = coordinatorSigningKey;
    return within(
      new Promise<RawClient>((resolve, reject) => {
        socket.once('welcome', (welcome: Welcome) => {
          client.welcome = welcome;
          resolve(client);
        });
        socket.once('connect_error', (error: Error & { data?: { code?: unknown } }) => {
          socket.close();
          reject(Object.assign(new Error(error.message), { data: error.data }));
        });
      }),
      'welcome',
    );
  }

  /** Connects with `auth`, expecting a refusal; resolves with its code. */
  static refusal(url: string, auth: AuthSource): Promise<Refusal> {
    const socket = RawClient.#open(url, auth);
    return within(
      new Promise<Refusal>((resolve, reject) => {
        socket.once('connect', () => {
          socket.close();
          reject(new Error('the coordinator admitted a connection it should have refused'));
        });
        socket.once('connect_error', (error: Error & { data?: { code?: unknown } }) => {
          socket.close();
          const code = error.data?.code;
          resolve({ code: isErrorCode(code) ? code : undefined, message: error.message });
        });
      }),
      'connect_error',
    );
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /** Sends `ready` for the federation's base (or `baseHash`) and returns the ack. */
  async ready(examples: number, baseHash = this.welcome.base.hash, validationExamples = 0): Promise<Ack> {
    return parseAck(await this.socket.timeout(5_000).emitWithAck('ready', signReady(this.identity, this.binding, { baseHash, examples, validationExamples })));
  }

  /** What this connection's `ready` and `evaluation` must be signed over. */
  get binding(): ReportBinding {
    const hello = this.sentAuth as Hello;
    return { coordinatorSigningKey: this.#coordinatorSigningKey, helloNonce: hello.nonce };
  }

  /** Seals `delta` for `roundId` with this client's key (or `as`, another identity's). */
  seal(roundId: string, delta: Float32Array, examples: number, as: Identity = this.identity): Uint8Array {
    return sealUpdate({ header: { roundId, exampleCount: examples, metrics: { loss: 1, accuracy: 0.5 } }, delta }, { clientIdentity: as, coordinatorBoxKey: this.#coordinatorBoxKey });
  }

  /** Emits `event` with `payload` and waits for the ack. */
  async call(event: string, payload: unknown): Promise<Ack> {
    return parseAck(await this.socket.timeout(5_000).emitWithAck(event, payload));
  }

  /** Emits an update (anything) and waits for the ack. */
  send(payload: unknown): Promise<Ack> {
    return this.call('update', payload);
  }

  /** Waits for the next fit and answers it honestly with `delta`. */
  async answerNext(delta: Float32Array, examples: number): Promise<SentUpdate> {
    const fit = await this.fits.next('fit');
    const ack = await this.send(this.seal(fit.roundId, delta, examples));
    const sent = { round: fit.round, roundId: fit.roundId, delta, examples, ack };
    this.sent.push(sent);
    return sent;
  }

  /** Answers every fit with `delta(fit)` sealed honestly; records what was sent and the ack. */
  answerFits(update: (fit: FitRequest) => { delta: Float32Array; examples: number }): this {
    this.socket.on('fit', (fit: FitRequest) => {
      const { delta, examples } = update(fit);
      void this.send(this.seal(fit.roundId, delta, examples)).then(
        (ack) => this.sent.push({ round: fit.round, roundId: fit.roundId, delta, examples, ack }),
        // Disconnected before the ack (e.g. the test revoked this client): record it as not accepted.
        (error: Error) => this.sent.push({ round: fit.round, roundId: fit.roundId, delta, examples, ack: { ok: false, code: 'INTERNAL', message: error.message } }),
      );
    });
    return this;
  }

  close(): void {
    this.socket.close();
  }
}

export interface HarnessOptions {
  /** Identities on the allow list. */
  allowed: number;
  /** Identities listed as revoked. @default 0 */
  revoked?: number;
  rounds: number;
  /** @default { minClients: allowed } */
  strategy?: FedAvgOptions;
  /** Builds the strategy from those options instead of FedAvg. @default FedAvg */
  makeStrategy?: (options: FedAvgOptions) => Strategy;
  /** Update-ingest worker threads (server/update-ingest.ts). @default 0 (updates opened on the event loop) */
  ingestWorkers?: number;
  /** Loop options; federated evaluation is off unless set. */
  loop?: CoordinatorOptions['loop'];
  maxMessagesPerSecond?: number;
  helloMaxAgeMs?: number;
  admissionLimits?: CoordinatorOptions['admissionLimits'];
  tls?: CoordinatorOptions['tls'];
  checkpointDir?: string;
  logger?: Logger;
}

/** A coordinator over the identity base with a file-backed allow list. */
export class Harness {
  coordinator!: Coordinator;
  readonly coordinatorIdentity: Identity = generateIdentity();
  readonly identities: Identity[] = [];
  readonly revokedIdentities: Identity[] = [];
  readonly records: RoundRecord[] = [];
  readonly roundWeights: Float32Array[] = [];
  readonly clients: RawClient[] = [];
  /** Called after each completed round (after the checkpoint). */
  onRound: ((record: RoundRecord, weights: Float32Array) => void) | null = null;
  allowList!: AllowList;
  allowFile = '';
  dir = '';
  readonly #options: HarnessOptions;
  readonly #revokedIndices = new Set<number>();

  private constructor(options: HarnessOptions) {
    this.#options = options;
  }

  static async start(options: HarnessOptions): Promise<Harness> {
    const harness = new Harness(options);
    harness.dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-hostile-'));
    harness.allowFile = path.join(harness.dir, 'clients.allow');
    for (let i = 0; i < options.allowed; i++) harness.identities.push(generateIdentity());
    for (let i = 0; i < (options.revoked ?? 0); i++) harness.revokedIdentities.push(generateIdentity());
    harness.#writeAllowList();
    harness.allowList = AllowList.load(harness.allowFile, { logger: recordingLogger() });
    harness.coordinator = await harness.startCoordinator();
    return harness;
  }

  /** Starts a coordinator with this harness's identity, allow list and checkpoint directory (again, after a close). */
  async startCoordinator(port = 0): Promise<Coordinator> {
    const options = this.#options;
    const initial = initialHeadWeights(BASE.embeddingSize, DIGIT_HEAD, 3);
    const allowList = this.allowList;
    return Coordinator.start({
      identity: this.coordinatorIdentity,
      admission: { status: (signingKey) => allowList.isAllowed(signingKey) },
      base: { descriptor: await describeBase(BASE, null), directory: null },
      headSpec: DIGIT_HEAD,
      manifest: initial.manifest,
      initialWeights: initial.data,
      strategy: (options.makeStrategy ?? ((o) => new FedAvg(o)))({ minClients: options.allowed, learningRate: 0.05, ...options.strategy }),
      rounds: options.rounds,
      openUpdate: createUpdateOpener(this.coordinatorIdentity, (clientId) => allowList.resolveClient(clientId)),
      ...(options.ingestWorkers ? { ingest: { workers: options.ingestWorkers, resolveClient: (clientId: string) => allowList.resolveClient(clientId) } } : {}),
      port,
      ...(options.maxMessagesPerSecond !== undefined ? { maxMessagesPerSecond: options.maxMessagesPerSecond } : {}),
      ...(options.helloMaxAgeMs !== undefined ? { helloMaxAgeMs: options.helloMaxAgeMs } : {}),
      ...(options.admissionLimits ? { admissionLimits: options.admissionLimits } : {}),
      ...(options.tls ? { tls: options.tls } : {}),
      logger: options.logger ?? recordingLogger(),
      loop: {
        seed: 3,
        roundTimeoutMs: 20_000,
        waitForClientsMs: 20_000,
        federatedEvaluation: false,
        ...(options.checkpointDir ? { checkpointDir: options.checkpointDir } : {}),
        ...options.loop,
        onRound: (record, weights) => {
          this.records.push(record);
          this.roundWeights.push(weights);
          this.onRound?.(record, weights);
        },
      },
    });
  }

  get coordinatorKeys(): { signingKey: string; boxKey: string } {
    const pub = publicIdentity(this.coordinatorIdentity);
    return { signingKey: pub.signingKey, boxKey: pub.boxKey };
  }

  get parameterCount(): number {
    return this.coordinator.loop.weights.length;
  }

  /** A hello factory: signed for the session id of whichever connection presents it. */
  hello(identity: Identity, options: HelloOptions = {}): HelloFactory {
    return (connectionId) => signedHello(identity, this.coordinatorKeys.signingKey, { connectionId, ...options });
  }

  /** Connects identity `who` (an index into `identities`, or any identity) with an honest or tweaked hello. */
  async connect(who: number | Identity, options: HelloOptions & { auth?: unknown } = {}): Promise<RawClient> {
    const identity = typeof who === 'number' ? this.identities[who]! : who;
    const client = await RawClient.connect(this.coordinator.url, identity, this.coordinatorKeys.signingKey, this.coordinatorKeys.boxKey, options.auth ?? this.hello(identity, options));
    this.clients.push(client);
    return client;
  }

  /** Connects and readies identities `indices`, each reporting `examples(i)` examples. */
  async ready(indices: number[], examples: (i: number) => number = (i) => 100 + 50 * i): Promise<RawClient[]> {
    return Promise.all(
      indices.map(async (i) => {
        const client = await this.connect(i);
        const ack = await client.ready(examples(i));
        if (!ack.ok) throw new Error(`ready refused: ${ack.code}`);
        return client;
      }),
    );
  }

  refusal(auth: AuthSource): Promise<Refusal> {
    return RawClient.refusal(this.coordinator.url, auth);
  }

  /**
   * Marks identity `i` revoked in the allow-list FILE (the coordinator sees it at its next lookup).
   * Synchronous so it can run inside `onRound`, before the next round selects.
   */
  revoke(i: number): void {
    this.#revokedIndices.add(i);
    this.#writeAllowList();
  }

  #writeAllowList(): void {
    const lines = [
      ...this.identities.map((id, i) => `${this.#revokedIndices.has(i) ? 'revoked ' : ''}${formatPublicIdentity(publicIdentity(id))} client-${i}`),
      ...this.revokedIdentities.map((id, i) => `revoked ${formatPublicIdentity(publicIdentity(id))} gone-${i}`),
    ];
    writeFileSync(this.allowFile, lines.join('\n') + '\n');
  }

  async close(): Promise<void> {
    for (const client of this.clients) client.close();
    await this.coordinator.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * A delta whose element reads (what `sealUpdate`'s source-side check looks at) all return 0, while
 * its underlying bytes (what it encrypts) hold `real`. Lets a test seal NaN/Infinity in a valid,
 * correctly signed envelope without duplicating the envelope's cryptography.
 */
export function disguisedDelta(real: Float32Array): Float32Array {
  return new Proxy(real, {
    get(target, property) {
      if (typeof property === 'string' && /^\d+$/.test(property)) return 0;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/**
 * The lifecycle every harness test file shares: the backend is selected once, and every harness
 * started through the returned function is closed after each test. Call it at the top of a
 * `describe`; a file's own `afterEach` (closing its clients first) runs before this one's.
 */
export function useHarness(): (options: HarnessOptions) => Promise<Harness> {
  const started: Harness[] = [];
  beforeAll(async () => {
    await selectBackend({ log: false });
  });
  afterEach(async () => {
    for (const harness of started.splice(0)) await harness.close();
  });
  return async (options) => {
    const harness = await Harness.start(options);
    started.push(harness);
    return harness;
  };
}
