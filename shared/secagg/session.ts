/**
 * Secure aggregation over sealed, signed messages: the byte-level endpoints a coordinator and a
 * client drive, one per round. They wrap the state machines of `protocol.ts` with the envelope of
 * `shared/crypto/sealed-message.ts` and the encodings of `wire.ts`, so a transport (socket.io, or
 * direct calls for virtual clients) only moves opaque bytes.
 *
 * Every incoming message is opened against the kind of the current phase and the round id, so a
 * message from another round or phase is `STALE_ROUND`, a repeated message id is `REPLAY`, and a
 * second message of a client in one phase is `DUPLICATE_UPDATE`.
 */
import { FedtlError } from '../core/errors.ts';
import { clientIdFromSigningKey, type Identity, openMessage, sealMessage, type SenderKeys, signText, verifyText } from '../crypto/index.ts';
import { SecAggClient, SecAggServer, type SecAggResult, type SecAggServerOptions } from './protocol.ts';
import { quantize, type RingCodec } from './quantize.ts';
import {
  encodeAdvertise,
  encodeMaskedInput,
  encodeRoundKeys,
  encodeShares,
  encodeSurvivors,
  encodeUnmask,
  parseAdvertise,
  parseMaskedInput,
  parseRoundKeys,
  parseShares,
  parseSurvivors,
  parseUnmask,
  SECAGG_KINDS,
} from './wire.ts';

/** Options of {@link SecAggServerSession}. */
export interface SecAggServerSessionOptions extends Omit<SecAggServerOptions, 'signingKeyOf' | 'verify'> {
  readonly coordinator: Identity;
  /** Public keys of an admitted client, or undefined. */
  readonly resolveClient: (clientId: string) => SenderKeys | undefined;
}

/** The coordinator's endpoint of one secure-aggregation round. */
export class SecAggServerSession {
  readonly server: SecAggServer;
  readonly #o: SecAggServerSessionOptions;

  constructor(options: SecAggServerSessionOptions) {
    this.#o = options;
    this.server = new SecAggServer({ ...options, signingKeyOf: (id) => options.resolveClient(id)?.signingKey, verify: verifyText });
  }

  #open(bytes: Uint8Array, kind: string) {
    return openMessage(bytes, { recipient: this.#o.coordinator, kind, roundId: this.#o.roundId, resolveSender: this.#o.resolveClient });
  }

  #seal(payloads: Map<string, Uint8Array>, kind: string): Map<string, Uint8Array> {
    const out = new Map<string, Uint8Array>();
    for (const [clientId, payload] of payloads) {
      const keys = this.#o.resolveClient(clientId);
      if (keys === undefined) continue; // revoked or gone since: it simply drops out
      out.set(clientId, sealMessage(payload, { kind, roundId: this.#o.roundId, sender: this.#o.coordinator, recipientBoxKey: keys.boxKey }));
    }
    return out;
  }

  /** Receives one sealed message of the current phase; throws a `FedtlError` (the client's fault) and changes nothing if it is refused. */
  receive(bytes: Uint8Array): string {
    const phase = this.server.phase;
    switch (phase) {
      case 'advertise': {
        const m = this.#open(bytes, SECAGG_KINDS.advertise);
        this.server.onAdvertise(m.header.senderId, m.header.messageId, parseAdvertise(m.payload));
        return m.header.senderId;
      }
      case 'share': {
        const m = this.#open(bytes, SECAGG_KINDS.shares);
        this.server.onShares(m.header.senderId, m.header.messageId, parseShares(m.payload));
        return m.header.senderId;
      }
      case 'mask': {
        const m = this.#open(bytes, SECAGG_KINDS.masked);
        const { vector } = parseMaskedInput(m.payload, this.#o.vectorLength);
        this.server.onMaskedInput(m.header.senderId, m.header.messageId, vector);
        return m.header.senderId;
      }
      case 'unmask': {
        const m = this.#open(bytes, SECAGG_KINDS.unmask);
        this.server.onUnmask(m.header.senderId, m.header.messageId, parseUnmask(m.payload));
        return m.header.senderId;
      }
      default:
        throw new FedtlError('STALE_ROUND', `secure aggregation round ${this.#o.roundId} is ${phase}; no message is accepted`);
    }
  }

  /** Ends key advertisement; sealed round keys per participant. */
  closeAdvertise(): Map<string, Uint8Array> {
    const keys = this.server.closeAdvertise();
    return this.#seal(new Map([...keys].map(([id, p]) => [id, encodeRoundKeys(p)])), SECAGG_KINDS.roundKeys);
  }

  /** Ends key sharing; sealed forwarded shares per member of U2. */
  closeShares(): Map<string, Uint8Array> {
    const shares = this.server.closeShares();
    return this.#seal(new Map([...shares].map(([id, p]) => [id, encodeShares(p)])), SECAGG_KINDS.forwarded);
  }

  /** Ends masked input; the sealed survivor list for every survivor. */
  closeMaskedInput(): Map<string, Uint8Array> {
    const survivors = this.server.closeMaskedInput();
    const payload = encodeSurvivors(survivors);
    return this.#seal(new Map(survivors.survivors.map((id) => [id, payload])), SECAGG_KINDS.survivors);
  }

  finish(options: { withDither?: boolean } = {}): SecAggResult {
    return this.server.finish(options);
  }
}

/** Options of {@link SecAggClientSession}. */
export interface SecAggClientSessionOptions {
  readonly roundId: string;
  readonly identity: Identity;
  /** The pinned coordinator keys (raw). */
  readonly coordinator: SenderKeys;
  readonly codec: RingCodec;
  /** Quantize with the subtractive dither derived from the self-mask seed (used under distributed DP). @default false */
  readonly dither?: boolean;
}

/** A client's endpoint of one secure-aggregation round. */
export class SecAggClientSession {
  readonly clientId: string;
  readonly #o: SecAggClientSessionOptions;
  readonly #client: SecAggClient;
  readonly #coordinatorId: string;

  constructor(options: SecAggClientSessionOptions) {
    this.#o = options;
    this.clientId = clientIdFromSigningKey(options.identity.signing.publicKey);
    this.#coordinatorId = clientIdFromSigningKey(options.coordinator.signingKey);
    this.#client = new SecAggClient({
      roundId: options.roundId,
      clientId: this.clientId,
      sign: (text) => signText(text, options.identity.signing.secretKey),
      verify: verifyText,
      codec: options.codec,
    });
  }

  #seal(payload: Uint8Array, kind: string): Uint8Array {
    return sealMessage(payload, { kind, roundId: this.#o.roundId, sender: this.#o.identity, recipientBoxKey: this.#o.coordinator.boxKey });
  }

  #open(bytes: Uint8Array, kind: string): Uint8Array {
    const resolveSender = (id: string) => (id === this.#coordinatorId ? this.#o.coordinator : undefined);
    return openMessage(bytes, { recipient: this.#o.identity, kind, roundId: this.#o.roundId, resolveSender }).payload;
  }

  get phase() {
    return this.#client.phase;
  }

  advertise(): Uint8Array {
    return this.#seal(encodeAdvertise(this.#client.advertise()), SECAGG_KINDS.advertise);
  }

  onRoundKeys(bytes: Uint8Array): Uint8Array {
    return this.#seal(encodeShares(this.#client.shareKeys(parseRoundKeys(this.#open(bytes, SECAGG_KINDS.roundKeys)))), SECAGG_KINDS.shares);
  }

  /**
   * Quantizes `delta` (already clipped and, under DP, noised by the caller) with `weight`, masks
   * it and seals it. `extra` are exact integer slots appended after the weight (e.g. the
   * adaptive-clipping bit), each in [0, codec.maxWeight].
   */
  onForwardedShares(bytes: Uint8Array, input: { delta: Float32Array; weight: number; extra?: readonly number[]; metrics?: Readonly<Record<string, number>> }): Uint8Array {
    const forwarded = parseShares(this.#open(bytes, SECAGG_KINDS.forwarded));
    const dither = this.#o.dither ? this.#client.dither(input.delta.length) : undefined;
    const q = quantize(this.#o.codec, input.delta, input.weight, dither);
    const vector = appendExtra(q, input.extra ?? [], this.#o.codec);
    const masked = this.#client.maskInput(forwarded, vector);
    return this.#seal(encodeMaskedInput(masked, { metrics: input.metrics ?? {} }), SECAGG_KINDS.masked);
  }

  onSurvivors(bytes: Uint8Array): Uint8Array {
    return this.#seal(encodeUnmask(this.#client.unmask(parseSurvivors(this.#open(bytes, SECAGG_KINDS.survivors)))), SECAGG_KINDS.unmask);
  }
}

function appendExtra(q: Uint32Array, extra: readonly number[], codec: RingCodec): Uint32Array {
  if (extra.length === 0) return q;
  const out = new Uint32Array(q.length + extra.length);
  out.set(q);
  extra.forEach((v, i) => {
    if (!Number.isSafeInteger(v) || v < 0 || v > codec.maxWeight) throw new FedtlError('BAD_CONFIG', `extra slot ${i} must be an integer in [0, ${codec.maxWeight}]`);
    out[q.length + i] = v;
  });
  return out;
}
