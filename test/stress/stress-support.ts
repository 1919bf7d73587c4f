/**
 * Stress-test fixtures: a coordinator in a child process ({@link CoordinatorChild}, running
 * scripts/stress/coordinator-child.ts), lightweight scripted clients that do the real handshake and
 * send real sealed envelopes ({@link ScriptedClient}), and a loopback TCP proxy that can cut a
 * connection mid-stream ({@link CuttingProxy}).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { io, type Socket } from 'socket.io-client';
import type { ChildConfig } from '../../scripts/stress/coordinator-child.ts';
import type { RoundRecord } from '../../server/round-record.ts';
import { formatPublicIdentity, generateIdentity, publicIdentity, saveIdentity, type Identity, type PublicIdentity } from '../../shared/crypto/identity.ts';
import { sealUpdate } from '../../shared/crypto/update-envelope.ts';
import { createHello, signReady } from '../../shared/crypto/hello.ts';
import { parseAck, roundWeightsDigest, type Ack, type FitRequest, type Hello, type Welcome } from '../../shared/protocol/protocol.ts';
import { bytesToFloat32 } from '../../shared/weights/flat-weights.ts';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const RESULTS_DIR = path.join(REPO_ROOT, 'test/stress/results');

/** Rejects naming `what` if `promise` has not settled within `ms`. */
export function within<T>(promise: Promise<T>, what: string, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

/** Value at quantile `q` (0..1) of `values`, nearest-rank. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export async function writeResult(name: string, result: unknown): Promise<string> {
  await mkdir(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, name);
  await writeFile(file, JSON.stringify(result, null, 2) + '\n');
  return file;
}

// ---------------------------------------------------------------------------------------------
// Coordinator child process

export interface MemoryFigures {
  rssMB: number;
  heapUsedMB: number;
  peakRssMB: number;
  peakHeapUsedMB: number;
}

export type ChildEvent =
  | { event: 'listening'; port: number; resumedRounds: number; memory: MemoryFigures }
  | { event: 'round'; record: RoundRecord; memory: MemoryFigures }
  | { event: 'finished'; rounds: number; memory: MemoryFigures }
  | { event: 'memory'; unadmitted: number; memory: MemoryFigures }
  | { event: 'failed'; code: string; message: string };

/** A coordinator process; its stdout events are parsed and can be awaited by predicate. */
export class CoordinatorChild {
  readonly process: ChildProcess;
  readonly events: ChildEvent[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr = '';
  readonly #waiters: Array<{ match: (e: ChildEvent) => boolean; resolve: (e: ChildEvent) => void }> = [];

  private constructor(configFile: string) {
    this.process = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts/stress/coordinator-child.ts'), configFile], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buffered = '';
    this.process.stdout!.setEncoding('utf8').on('data', (text: string) => {
      buffered += text;
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (line.startsWith('{')) this.#push(JSON.parse(line) as ChildEvent);
      }
    });
    this.process.stderr!.setEncoding('utf8').on('data', (text: string) => {
      this.stderr += text;
    });
    this.exited = new Promise((resolve) => this.process.once('exit', (code, signal) => resolve({ code, signal })));
  }

  static async start(configFile: string, config: ChildConfig): Promise<CoordinatorChild> {
    await writeFile(configFile, JSON.stringify(config));
    const child = new CoordinatorChild(configFile);
    await child.next((e) => e.event === 'listening', 'the coordinator to listen', 60_000);
    return child;
  }

  get port(): number {
    const listening = this.events.find((e) => e.event === 'listening');
    if (!listening || listening.event !== 'listening') throw new Error('coordinator is not listening');
    return listening.port;
  }

  #push(event: ChildEvent): void {
    this.events.push(event);
    for (const waiter of [...this.#waiters]) {
      if (waiter.match(event)) {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        waiter.resolve(event);
      }
    }
  }

  /** The first event (already seen or future) matching `match`; a `failed` event or an exit rejects. */
  next(match: (e: ChildEvent) => boolean, what: string, ms: number): Promise<ChildEvent> {
    const seen = this.events.find(match);
    if (seen) return Promise.resolve(seen);
    const waiting = new Promise<ChildEvent>((resolve, reject) => {
      this.#waiters.push({ match, resolve });
      this.#waiters.push({ match: (e) => e.event === 'failed', resolve: (e) => reject(new Error(`coordinator failed: ${JSON.stringify(e)}\n${this.stderr}`)) });
      void this.exited.then(({ code, signal }) => reject(new Error(`coordinator exited (${code ?? signal}) before ${what}\n${this.stderr.slice(-4000)}`)));
    });
    return within(waiting, what, ms);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill(signal);
  }
}

/** The machine a stress figure was measured on, written beside it (load matters on shared machines). */
export function machineFigures(): { cpus: number; cpuModel: string; node: string; loadAverage1m: number } {
  return { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', node: process.version, loadAverage1m: Math.round(os.loadavg()[0]! * 10) / 10 };
}

/** A coordinator child with its own temp folder, identity file, allow list and checkpoint folder. */
export interface StressFederation {
  /** The temp folder holding everything below; the caller removes it. */
  dir: string;
  child: CoordinatorChild;
  /** The coordinator's public keys, which the clients pin. */
  coordinator: PublicIdentity;
  /** One identity per allowed client, listed in the allow list as `c<i>`. */
  identities: Identity[];
  checkpointDir: string;
}

/**
 * Starts a stress coordinator for `clients` allowed identities: a fresh temp folder (`prefix`), a
 * 0600 coordinator identity file, an allow list, and a checkpoint folder. `onDir` receives the
 * folder as soon as it exists, so the caller's cleanup can remove it even if the start fails.
 */
export async function startStressFederation(
  prefix: string,
  clients: number,
  config: Omit<ChildConfig, 'identityFile' | 'allowFile' | 'checkpointDir'>,
  onDir: (dir: string) => void,
): Promise<StressFederation> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  onDir(dir);
  const coordinatorIdentity = generateIdentity();
  saveIdentity(path.join(dir, 'coordinator.key'), coordinatorIdentity);
  const identities = Array.from({ length: clients }, () => generateIdentity());
  await writeFile(path.join(dir, 'clients.allow'), identities.map((id, i) => `${formatPublicIdentity(publicIdentity(id))} c${i}`).join('\n') + '\n');
  const checkpointDir = path.join(dir, 'checkpoint');
  const child = await CoordinatorChild.start(path.join(dir, 'config.json'), {
    ...config,
    identityFile: path.join(dir, 'coordinator.key'),
    allowFile: path.join(dir, 'clients.allow'),
    checkpointDir,
  });
  return { dir, child, coordinator: publicIdentity(coordinatorIdentity), identities, checkpointDir };
}

// ---------------------------------------------------------------------------------------------
// Scripted client

/** A fresh hello (new nonce and timestamp), signed natively so 300 of them cost the test process little. */
export function freshHello(identity: Identity, coordinatorSigningKey: string, connectionId: string): Hello {
  return createHello(identity, coordinatorSigningKey, connectionId);
}

export interface ScriptedClientOptions {
  url: string;
  identity: Identity;
  coordinator: { signingKey: string; boxKey: string };
  examples: number;
  /** The delta to send for `fit` given the received head, or `null` to stay silent this time. */
  update: (fit: FitRequest, weights: Float32Array) => Float32Array | null;
  /** Reconnect (with a fresh hello) after a lost connection. @default false */
  reconnect?: boolean;
  /** Local address to connect from (any 127.x.y.z on loopback), to appear as a distinct site. @default the system's choice */
  localAddress?: string;
  /** PEM certificate to trust for an https:// URL. */
  ca?: string;
}

export interface ScriptedSent {
  round: number;
  roundId: string;
  delta: Float32Array;
  examples: number;
  sealed: Uint8Array;
  ack: Ack;
}

/**
 * A client without a model: real Ed25519 hello, real `ready`, and a real sealed envelope per fit
 * whose delta a test chooses. Records handshake timings, the heads it received and what it sent.
 */
export class ScriptedClient {
  readonly socket: Socket;
  readonly options: ScriptedClientOptions;
  /** ms from creating the socket (or reconnecting) to the welcome, per welcome. */
  readonly handshakeMs: number[] = [];
  /** ms from the welcome to the ack of `ready`, per welcome. */
  readonly readyMs: number[] = [];
  /** Fit requests received (with their decoded weights), in order. */
  readonly fits: Array<{ fit: FitRequest; weights: Float32Array }> = [];
  readonly sent: ScriptedSent[] = [];
  /** Codes of the coordinator's refusals of this client's connections (each is retried). */
  readonly refusals: string[] = [];
  readonly ready: Promise<void>;
  welcome: Welcome | null = null;
  finished = false;
  #connectStarted = performance.now();
  #helloNonce = '';
  #resolveReady!: () => void;
  #onSent: (() => void) | null = null;
  /** The last weights received in full, by digest: a fit may refer to them instead of carrying them again. */
  #held: { digest: string; weights: Float32Array } | null = null;

  constructor(options: ScriptedClientOptions) {
    this.options = options;
    this.ready = new Promise((resolve) => {
      this.#resolveReady = resolve;
    });
    this.socket = io(options.url, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: options.reconnect ?? false,
      reconnectionDelay: 100,
      reconnectionDelayMax: 400,
      auth: (send: (auth: object) => void) => {
        const hello = freshHello(options.identity, options.coordinator.signingKey, this.socket.io.engine.id);
        this.#helloNonce = hello.nonce;
        send(hello);
      },
      ...(options.localAddress !== undefined ? { localAddress: options.localAddress } : {}),
      ...(options.ca !== undefined ? { ca: options.ca } : {}),
    });
    // A coordinator refusal (too many connections, admission timeout) is retried, as FedtlClient does.
    this.socket.on('connect_error', (error: Error & { data?: { code?: string } }) => {
      this.refusals.push(error.data?.code ?? error.message);
      if (!this.finished) setTimeout(() => !this.finished && !this.socket.connected && this.socket.connect(), 200 + Math.random() * 800);
    });
    this.socket.io.on('reconnect_attempt', () => {
      this.#connectStarted = performance.now();
    });
    this.socket.on('welcome', (welcome: Welcome) => {
      const welcomed = performance.now();
      this.handshakeMs.push(welcomed - this.#connectStarted);
      this.welcome = welcome;
      void this.socket
        .timeout(60_000)
        .emitWithAck('ready', signReady(options.identity, { coordinatorSigningKey: options.coordinator.signingKey, helloNonce: this.#helloNonce }, { baseHash: welcome.base.hash, examples: options.examples, validationExamples: 0 }))
        .then((reply: unknown) => {
          const ack = parseAck(reply);
          if (!ack.ok) throw new Error(`ready refused: ${ack.code}: ${ack.message}`);
          this.readyMs.push(performance.now() - welcomed);
          this.#resolveReady();
        })
        .catch(() => undefined); // a dropped connection; the next welcome tries again
    });
    this.socket.on('fit', (fit: FitRequest) => this.#onFit(fit));
    this.socket.on('finished', () => {
      this.finished = true;
      this.socket.close();
    });
    this.socket.on('disconnect', (reason: string) => {
      // socket.io-client does not reconnect after a server-side disconnect by itself.
      if (reason === 'io server disconnect' && options.reconnect && !this.finished) setTimeout(() => this.socket.connect(), 100);
    });
  }

  #onFit(fit: FitRequest): void {
    let weights: Float32Array;
    if (fit.weightsDigest !== undefined) {
      // A reference to weights this client does not hold: ask for them in full, as FedtlClient does.
      if (this.#held?.digest !== fit.weightsDigest) {
        void this.socket.timeout(10_000).emitWithAck('weights:missing', { roundId: fit.roundId, weightsDigest: fit.weightsDigest }).catch(() => undefined);
        return;
      }
      weights = this.#held.weights;
    } else {
      const raw = Uint8Array.from(fit.weights instanceof Uint8Array ? fit.weights : new Uint8Array(fit.weights as ArrayBuffer));
      weights = bytesToFloat32(raw, 'fit.weights');
      this.#held = { digest: roundWeightsDigest(raw, fit.trainable), weights };
    }
    this.fits.push({ fit, weights });
    const delta = this.options.update(fit, weights);
    if (!delta) return;
    const sealed = this.seal(fit.roundId, delta);
    void this.send(sealed).then(
      (ack) => this.#record({ round: fit.round, roundId: fit.roundId, delta, examples: this.options.examples, sealed, ack }),
      (error: Error) => this.#record({ round: fit.round, roundId: fit.roundId, delta, examples: this.options.examples, sealed, ack: { ok: false, code: 'INTERNAL', message: error.message } }),
    );
  }

  #record(sent: ScriptedSent): void {
    this.sent.push(sent);
    this.#onSent?.();
  }

  /** Resolves once `predicate(this.sent)` holds. */
  sentSatisfies(predicate: (sent: readonly ScriptedSent[]) => boolean): Promise<void> {
    if (predicate(this.sent)) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.#onSent;
      this.#onSent = () => {
        previous?.();
        if (predicate(this.sent)) resolve();
      };
    });
  }

  seal(roundId: string, delta: Float32Array): Uint8Array {
    return sealUpdate(
      { header: { roundId, exampleCount: this.options.examples, metrics: { loss: 1, accuracy: 0.5 } }, delta },
      { clientIdentity: this.options.identity, coordinatorBoxKey: this.options.coordinator.boxKey },
    );
  }

  async send(sealed: Uint8Array): Promise<Ack> {
    return parseAck(await this.socket.timeout(60_000).emitWithAck('update', sealed));
  }

  close(): void {
    this.finished = true;
    this.socket.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Loopback TCP proxy that can cut connections

/**
 * Forwards loopback TCP connections to `targetPort`, counting the bytes sent towards the client.
 * Once `cutAfterBytes` have gone down (in total, over all connections), it destroys the connection
 * carrying them, once: the client sees a dead network, not a polite close.
 */
export class CuttingProxy {
  readonly server: net.Server;
  bytesDown = 0;
  connections = 0;
  cuts = 0;
  readonly #sockets = new Set<net.Socket>();
  #cutAfterBytes: number | null;

  private constructor(targetPort: number, cutAfterBytes: number | null) {
    this.#cutAfterBytes = cutAfterBytes;
    this.server = net.createServer((downstream) => {
      this.connections++;
      const upstream = net.connect(targetPort, '127.0.0.1');
      this.#sockets.add(downstream);
      this.#sockets.add(upstream);
      const cut = () => {
        downstream.destroy();
        upstream.destroy();
      };
      downstream.on('data', (data: Buffer) => upstream.write(data));
      upstream.on('data', (data: Buffer) => {
        this.bytesDown += data.length;
        if (this.#cutAfterBytes !== null && this.bytesDown >= this.#cutAfterBytes) {
          this.#cutAfterBytes = null;
          this.cuts++;
          cut();
          return;
        }
        downstream.write(data);
      });
      downstream.on('close', cut);
      upstream.on('close', cut);
      downstream.on('error', cut);
      upstream.on('error', cut);
    });
  }

  static async start(targetPort: number, cutAfterBytes: number | null): Promise<CuttingProxy> {
    const proxy = new CuttingProxy(targetPort, cutAfterBytes);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A distinct loopback source address for peer `i` of `block` (127.<block>.x.y; Linux routes all of 127/8 to lo). */
export function loopbackAddress(block: number, i: number): string {
  return `127.${block}.${Math.floor(i / 250)}.${1 + (i % 250)}`;
}

// ---------------------------------------------------------------------------------------------
// Hostile unadmitted connections

/**
 * One unadmitted connection doing the most an unadmitted peer can to pin coordinator memory now:
 * a raw TCP socket completes the WebSocket upgrade, then announces one binary frame of
 * the coordinator's announced `maxPayload` (masked, as a client must) and sends all of it but the last byte, so the
 * coordinator's WebSocket parser holds the partial frame; it never sends a hello. When the
 * coordinator closes it (admission timeout), `onClosed` fires.
 */
export class PinningConnection {
  readonly socket: net.Socket;
  /** Resolves true once the partial frame is sent, false if the connection closed first. */
  readonly holding: Promise<boolean>;
  closed = false;

  constructor(port: number, localAddress: string, onClosed: () => void) {
    this.socket = net.connect({ port, host: '127.0.0.1', localAddress });
    this.socket.on('error', () => undefined);
    let resolveHolding!: (held: boolean) => void;
    this.holding = new Promise((resolve) => (resolveHolding = resolve));
    this.socket.once('close', () => {
      this.closed = true;
      resolveHolding(false);
      onClosed();
    });
    this.socket.once('connect', () => {
      const key = Buffer.from(Array.from({ length: 16 }, (_, i) => (i * 37) & 255)).toString('base64');
      this.socket.write(
        `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    let response = '';
    const onData = (data: Buffer) => {
      response += data.toString('latin1');
      // The 101 response and engine.io's open packet: the upgrade is done, send the partial frame.
      const announced = /"maxPayload":(\d+)/.exec(response);
      if (!announced) return;
      this.socket.off('data', onData);
      // The largest frame the coordinator accepts (it announces it), all but its last byte.
      this.socket.write(partialFrame(Number(announced[1])), () => resolveHolding(true));
    };
    this.socket.on('data', onData);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A masked binary WebSocket frame header announcing `length` payload bytes, plus `length - 1` of them. */
function partialFrame(length: number): Buffer {
  const header = Buffer.alloc(2 + 8 + 4);
  header[0] = 0x82; // FIN + binary
  header[1] = 0x80 | 127; // masked, 64-bit length
  header.writeBigUInt64BE(BigInt(length), 2);
  header.writeUInt32BE(0x01020304, 10);
  return Buffer.concat([header, Buffer.alloc(length - 1, 0x55)]);
}

/**
 * Checks a finished run against what the scripted clients sent: every round accepted every client
 * once with the exact example total, every client received the same head, and each head equals
 * previous + Σ n_k Δ_k / Σ n_k computed in float64. Returns the largest difference seen.
 */
export async function expectEveryUpdateOnce(clients: readonly ScriptedClient[], records: readonly RoundRecord[], checkpointDir: string): Promise<number> {
  const { expect } = await import('vitest');
  const { loadCheckpoint } = await import('../../server/checkpoint.ts');
  const { maxAbsDifference, weightedMean } = await import('../support/hostile.ts');
  const rounds = records.length;
  const totalExamples = clients.reduce((sum, c) => sum + c.options.examples, 0);
  for (const record of records) {
    expect(record).toMatchObject({ selected: clients.length, accepted: clients.length, dropped: 0, examples: totalExamples });
    expect(Object.keys(record.rejected).filter((code) => code !== 'DUPLICATE_UPDATE' && code !== 'STALE_ROUND')).toEqual([]);
  }
  const checkpoint = await loadCheckpoint(checkpointDir);
  expect(checkpoint?.round).toBe(rounds);
  const heads: Float32Array[] = [];
  for (let round = 1; round <= rounds; round++) {
    const received = clients.map((c) => c.fits.find((f) => f.fit.round === round)!);
    // Decoded weights: a fit may have referred to weights the client already held.
    expect(new Set(received.map((r) => sha256(new Uint8Array(r.weights.buffer, r.weights.byteOffset, r.weights.byteLength)))).size).toBe(1);
    heads.push(received[0]!.weights);
  }
  heads.push(checkpoint!.weights);
  let worst = 0;
  for (let round = 1; round <= rounds; round++) {
    const updates = clients.map((c) => {
      const sent = c.sent.filter((s) => s.round === round && s.ack.ok);
      expect(sent).toHaveLength(1);
      return { delta: sent[0]!.delta, examples: sent[0]!.examples };
    });
    const difference = maxAbsDifference(heads[round]!, weightedMean(heads[round - 1]!, updates));
    worst = Math.max(worst, difference);
    expect(difference).toBeLessThan(1e-6);
  }
  return worst;
}
