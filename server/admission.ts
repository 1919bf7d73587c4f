/**
 * The admission path: everything a peer can make the coordinator do before it has proved it holds
 * an allow-listed key, and the checks that bound it.
 *
 * A TCP connection becomes a WebSocket (engine.io), then sends one socket.io CONNECT packet whose
 * `auth` is the signed hello. Until the hello is accepted the connection is *unadmitted*, and:
 *
 * - it counts against a cap per remote address and a cap in total; over either cap it is refused
 *   at once with `TOO_MANY_CONNECTIONS` and closed, before any packet of it is read;
 * - its first packet must be a CONNECT; anything else (an event, a binary attachment) closes it,
 *   so nothing but the hello is buffered (see {@link AdmissionDecoder});
 * - it is closed if the hello has not been accepted within `admissionTimeoutMs`;
 * - a refused connection counts until its transport has closed, and its TCP socket is destroyed
 *   if the close has not finished within a second (a peer that ignores the WebSocket close
 *   handshake would otherwise stay for ws's 30 s close timeout, outside the caps);
 * - it gets one hello: a refused hello closes the connection, and refused hellos per address are
 *   rate limited across reconnections (checked before the signature, so a flood costs neither
 *   Ed25519 verifications nor log lines);
 * - the hello is signed over the engine.io session id the coordinator chose for this connection,
 *   so a recorded hello is useless on any other connection, including after a restart.
 *
 * The largest frame a peer may send at all is the socket.io `maxHttpBufferSize`, sized from the
 * largest message a client ever sends (an update; see {@link incomingMessageLimit}), so an
 * unadmitted connection pins at most that many bytes, and all of them at most
 * `maxUnadmitted × (maxHttpBufferSize + per-connection overhead)`.
 */
import { Decoder, Encoder, PacketType } from 'socket.io-parser';
import { FedtlError, toFedtlError, type ErrorCode } from '../shared/core/errors.ts';
import type { Logger } from '../shared/core/log.ts';
import { clientIdFromSigningKey, decodeKey } from '../shared/crypto/identity.ts';
import { verifyText } from '../shared/crypto/signatures.ts';
import { helloSignedText, parseHello, type Hello } from '../shared/protocol/protocol.ts';

/** Limits of the admission path. Every field is optional; defaults below. */
export interface AdmissionLimits {
  /** Time an unadmitted connection has to get its hello accepted, in ms. @default 10000 */
  admissionTimeoutMs?: number;
  /** Unadmitted connections at once, over all addresses. @default 1024 */
  maxUnadmitted?: number;
  /** Unadmitted connections at once from one remote address. @default 32 */
  maxUnadmittedPerAddress?: number;
  /** Refused hellos one address may cause per minute before its hellos are refused unread. @default 30 */
  maxRefusedHellosPerMinute?: number;
  /** Largest difference between a hello's timestamp and the coordinator's clock, in ms. @default 300000 */
  helloMaxAgeMs?: number;
}

export const ADMISSION_DEFAULTS: Required<AdmissionLimits> = {
  admissionTimeoutMs: 10_000,
  maxUnadmitted: 1024,
  maxUnadmittedPerAddress: 32,
  maxRefusedHellosPerMinute: 30,
  helloMaxAgeMs: 300_000,
};

/** Bytes of socket.io/engine.io framing allowed on top of an update's own bytes. */
const FRAMING_BYTES = 4 * 1024;

/**
 * socket.io's `maxHttpBufferSize`: the largest single frame a peer may send. Clients only ever send
 * one large thing, a sealed update (one binary attachment); every other message is small JSON.
 * Base chunks travel the other way and do not count.
 */
export function incomingMessageLimit(maxUpdateBytes: number): number {
  return maxUpdateBytes + FRAMING_BYTES;
}

/** What an accepted hello establishes about a connection. */
export interface AdmittedClient {
  clientId: string;
  signingKey: string;
  boxKey: string;
  helloNonce: string;
}

/** The part of an engine.io connection the gate uses. */
export interface TransportConnection {
  readonly remoteAddress: string;
  /** The HTTP request that opened it; its TCP socket is destroyed if a close does not finish. */
  readonly request?: { readonly socket?: { destroy(): unknown; once(event: 'close', listener: () => void): unknown } | null };
  write(data: string): unknown;
  close(): unknown;
  once(event: 'close', listener: () => void): unknown;
}

/**
 * How long a refused connection may take to close before its TCP socket is destroyed: a peer that
 * never answers the WebSocket close handshake would otherwise be held for ws's 30 s close timeout.
 */
const CLOSE_GRACE_MS = 1_000;

/** engine.io's session id is chosen by the coordinator per connection; its type marks it private. */
export function connectionIdOf(connection: object): string {
  const id = (connection as { id?: unknown }).id;
  if (typeof id !== 'string' || id.length === 0) throw new FedtlError('INTERNAL', 'connection has no session id');
  return id;
}

// ---------------------------------------------------------------------------------------------

/**
 * The socket.io packet decoder the coordinator uses: socket.io-parser's, stricter. The first
 * packet of a connection must be a (text) CONNECT, only one CONNECT is ever accepted, and a
 * binary packet may carry one attachment (an update), not socket.io's default of 10. Throwing
 * here makes socket.io close the connection, so an unadmitted peer cannot make it buffer binary
 * attachments or half-reconstructed packets.
 */
export class AdmissionDecoder extends Decoder {
  #connected = false;

  constructor() {
    super({ maxAttachments: 1 });
  }

  override add(obj: unknown): void {
    if (!this.#connected) {
      if (typeof obj !== 'string' || Number(obj.charAt(0)) !== PacketType.CONNECT) throw new Error('the first packet must be the hello (CONNECT)');
      this.#connected = true;
    } else if (typeof obj === 'string' && Number(obj.charAt(0)) === PacketType.CONNECT) {
      throw new Error('one hello per connection');
    }
    super.add(obj);
  }
}

/** socket.io's `parser` option for the coordinator. */
export const admissionParser = { Encoder, Decoder: AdmissionDecoder };

// ---------------------------------------------------------------------------------------------

/**
 * Hello nonces seen in the last one to two windows, in two generations: lookups and inserts are
 * O(1), and expiry drops a whole generation at once instead of scanning every nonce per hello.
 */
export class NonceWindow {
  readonly #windowMs: number;
  #current = new Set<string>();
  #previous = new Set<string>();
  #rotatedAt: number;

  constructor(windowMs: number, now = Date.now()) {
    this.#windowMs = windowMs;
    this.#rotatedAt = now;
  }

  /** Records `nonce`; false if it was seen in the last window (at least `windowMs`). */
  add(nonce: string, now = Date.now()): boolean {
    this.#rotate(now);
    if (this.#current.has(nonce) || this.#previous.has(nonce)) return false;
    this.#current.add(nonce);
    return true;
  }

  get size(): number {
    return this.#current.size + this.#previous.size;
  }

  #rotate(now: number): void {
    if (now - this.#rotatedAt < this.#windowMs) return;
    // Two windows or more since the last rotation: both generations are old.
    this.#previous = now - this.#rotatedAt >= 2 * this.#windowMs ? new Set() : this.#current;
    this.#current = new Set();
    this.#rotatedAt = now;
  }
}

/** Fixed-window counters by key that outlive connections; stale keys are dropped in O(1) per call. */
export class WindowCounter {
  readonly #windowMs: number;
  #current = new Map<string, number>();
  #windowStart: number;

  constructor(windowMs: number, now = Date.now()) {
    this.#windowMs = windowMs;
    this.#windowStart = now;
  }

  /** Adds one for `key`; returns its count in the current window. */
  increment(key: string, now = Date.now()): number {
    this.#rotate(now);
    const count = (this.#current.get(key) ?? 0) + 1;
    this.#current.set(key, count);
    return count;
  }

  count(key: string, now = Date.now()): number {
    this.#rotate(now);
    return this.#current.get(key) ?? 0;
  }

  #rotate(now: number): void {
    if (now - this.#windowStart < this.#windowMs) return;
    this.#current = new Map();
    this.#windowStart = now - ((now - this.#windowStart) % this.#windowMs);
  }
}

// ---------------------------------------------------------------------------------------------

export interface AdmissionGateOptions {
  /** This coordinator's Ed25519 public key, base64: hellos must be signed for it. */
  coordinatorSigningKey: string;
  /** Allow-list decision for a client's signing key. */
  status: (signingKey: string) => 'allowed' | 'unknown' | 'revoked';
  limits?: AdmissionLimits;
  logger: Logger;
}

interface Pending {
  address: string;
  timer: NodeJS.Timeout;
}

/** Counts, times out, rate limits and verifies unadmitted connections. */
export class AdmissionGate {
  readonly limits: Required<AdmissionLimits>;
  readonly #options: AdmissionGateOptions;
  readonly #log: Logger;
  readonly #pending = new Map<TransportConnection, Pending>();
  readonly #pendingByAddress = new Map<string, number>();
  readonly #nonces: NonceWindow;
  readonly #refusals = new WindowCounter(60_000);
  /** Refusals logged per address per minute; the rest are counted, not logged. */
  readonly #logged = new WindowCounter(60_000);
  readonly #encoder = new Encoder();

  constructor(options: AdmissionGateOptions) {
    this.#options = options;
    this.#log = options.logger;
    this.limits = { ...ADMISSION_DEFAULTS, ...definedOnly(options.limits ?? {}) };
    this.#nonces = new NonceWindow(2 * this.limits.helloMaxAgeMs);
  }

  /** Unadmitted connections now. */
  get unadmitted(): number {
    return this.#pending.size;
  }

  /** A new transport connection (engine.io `connection`): count it, or refuse it over a cap. */
  onConnection(connection: TransportConnection): void {
    const address = connection.remoteAddress;
    const fromAddress = this.#pendingByAddress.get(address) ?? 0;
    const { maxUnadmitted, maxUnadmittedPerAddress, admissionTimeoutMs } = this.limits;
    if (this.#pending.size >= maxUnadmitted || fromAddress >= maxUnadmittedPerAddress) {
      const message =
        fromAddress >= maxUnadmittedPerAddress
          ? `too many connections from ${address} waiting for admission (limit ${maxUnadmittedPerAddress}); retry later`
          : `too many connections waiting for admission (limit ${maxUnadmitted}); retry later`;
      this.#refuseTransport(connection, address, 'TOO_MANY_CONNECTIONS', message);
      return;
    }
    const timer = setTimeout(() => {
      if (!this.#pending.has(connection)) return;
      this.#refuseTransport(connection, address, 'ADMISSION_TIMEOUT', `no accepted hello within ${admissionTimeoutMs} ms`);
    }, admissionTimeoutMs);
    timer.unref();
    this.#pending.set(connection, { address, timer });
    this.#pendingByAddress.set(address, fromAddress + 1);
    // engine.io reports a close before ws has finished it; the TCP socket's close is the real end.
    closedOf(connection)(() => this.#release(connection));
  }

  /**
   * Checks the hello a connection presented (socket.io middleware). Returns the admitted client, or
   * throws the refusal; after a refusal the connection is closed (one hello per connection).
   */
  admit(connection: TransportConnection, connectionId: string, auth: unknown, now = Date.now()): AdmittedClient {
    const address = connection.remoteAddress;
    try {
      if (this.#refusals.count(address, now) >= this.limits.maxRefusedHellosPerMinute) {
        throw new FedtlError('RATE_LIMITED', `more than ${this.limits.maxRefusedHellosPerMinute} refused hellos from ${address} in the last minute; wait a minute`);
      }
      const admitted = this.#verify(parseHello(auth), connectionId, now);
      this.#release(connection);
      return admitted;
    } catch (thrown) {
      const error = toFedtlError(thrown, 'BAD_MESSAGE');
      if (error.code !== 'RATE_LIMITED') this.#refusals.increment(address, now);
      this.#logRefusal(address, error);
      // Let socket.io send the refusal first, then end the connection: no second hello on it.
      setImmediate(() => this.#end(connection));
      throw error;
    }
  }

  #verify(hello: Hello, connectionId: string, now: number): AdmittedClient {
    const maxAge = this.limits.helloMaxAgeMs;
    const skew = hello.timestamp - now;
    if (Math.abs(skew) > maxAge) {
      throw new FedtlError(
        'CLOCK_SKEW',
        `the client's clock is ${formatSeconds(Math.abs(skew))} ${skew > 0 ? 'ahead of' : 'behind'} the coordinator's (limit ${formatSeconds(maxAge)}); set the client's clock (NTP) and retry`,
      );
    }
    // A malformed key is the client's malformed message, not a coordinator configuration error.
    let signingKey: Uint8Array;
    try {
      signingKey = decodeKey(hello.signingKey, 'hello.signingKey');
      decodeKey(hello.boxKey, 'hello.boxKey');
    } catch (thrown) {
      throw new FedtlError('BAD_MESSAGE', toFedtlError(thrown).message);
    }
    let signature: Uint8Array;
    try {
      signature = decodeKey(hello.signature, 'hello.signature', 64);
    } catch {
      throw new FedtlError('BAD_SIGNATURE', 'hello signature is malformed');
    }
    const text = helloSignedText(this.#options.coordinatorSigningKey, connectionId, hello);
    if (!verifyText(text, signature, signingKey)) {
      throw new FedtlError('BAD_SIGNATURE', 'hello signature does not verify (wrong key, a hello meant for another coordinator, or one recorded from another connection)');
    }
    const status = this.#options.status(hello.signingKey);
    if (status === 'revoked') throw new FedtlError('REVOKED_CLIENT', 'this client key has been revoked by the coordinator operator');
    if (status !== 'allowed') throw new FedtlError('UNKNOWN_CLIENT', `this client is not on the allow list; the operator adds this line to it: fedtl1:${hello.signingKey}:${hello.boxKey}`);
    // Signed over this connection's id, a hello cannot be replayed; the nonce check is a second line.
    if (!this.#nonces.add(hello.nonce, now)) throw new FedtlError('REPLAY', 'hello was already used');
    return { clientId: clientIdFromSigningKey(signingKey), signingKey: hello.signingKey, boxKey: hello.boxKey, helloNonce: hello.nonce };
  }

  #logRefusal(address: string, error: FedtlError): void {
    const logged = this.#logged.increment(address);
    if (logged <= 5) this.#log.warn(`refused connection from ${address}: ${error.code}: ${error.message}`);
    else if (logged === 6) this.#log.warn(`more refusals from ${address} this minute; not logging each`);
  }

  #refuseTransport(connection: TransportConnection, address: string, code: ErrorCode, message: string): void {
    this.#logRefusal(address, new FedtlError(code, message));
    // A socket.io CONNECT_ERROR for the main namespace, as a refused hello would get, so a client
    // sees the code and message in its connect_error; then the connection is closed.
    for (const packet of this.#encoder.encode({ type: PacketType.CONNECT_ERROR, nsp: '/', data: { message, data: { code } } })) {
      if (typeof packet === 'string') connection.write(packet);
    }
    this.#end(connection);
  }

  /**
   * Closes a refused connection. It still counts against the caps until its transport has closed,
   * and its TCP socket is destroyed after {@link CLOSE_GRACE_MS}, so what the caps bound is what
   * the coordinator holds.
   */
  #end(connection: TransportConnection): void {
    const timer = setTimeout(() => connection.request?.socket?.destroy(), CLOSE_GRACE_MS);
    timer.unref();
    closedOf(connection)(() => clearTimeout(timer));
    connection.close();
  }

  #release(connection: TransportConnection): void {
    const pending = this.#pending.get(connection);
    if (!pending) return;
    clearTimeout(pending.timer);
    this.#pending.delete(connection);
    const left = (this.#pendingByAddress.get(pending.address) ?? 1) - 1;
    if (left > 0) this.#pendingByAddress.set(pending.address, left);
    else this.#pendingByAddress.delete(pending.address);
  }
}

/** Subscribes to the end of a connection: its TCP socket's close when known, else the transport's. */
function closedOf(connection: TransportConnection): (listener: () => void) => void {
  const tcp = connection.request?.socket;
  return (listener) => void (tcp ? tcp.once('close', listener) : connection.once('close', listener));
}

function formatSeconds(ms: number): string {
  return `${Math.round(ms / 1000)} s`;
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
