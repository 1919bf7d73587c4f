/**
 * SecAgg+ as two transport-free state machines: {@link SecAggClient} and {@link SecAggServer}.
 * The protocol is Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine
 * Learning" (CCS 2017, semi-honest variant with signed keys), with the sparse communication graph
 * of Bell et al. (CCS 2020): shares and pairwise masks only between neighbours.
 *
 * ## Phases (U1 ⊇ U2 ⊇ U3 ⊇ U4 are the clients still present at each)
 * 0. **Advertise keys.** Client u draws two X25519 key pairs (c for share encryption, s for mask
 *    agreement) and a 32-byte self-mask seed b_u; it sends c_u^PK, s_u^PK, SHA-256(b_u), signed with
 *    its long-term Ed25519 key. The server closes the phase with U1 and builds the graph over U1.
 * 1. **Share keys.** u receives its neighbours' keys, re-derives the graph to check them, splits
 *    b_u and s_u^SK with Shamir (threshold t, one point per neighbour) and sends each share
 *    encrypted under KDF(X25519(c_u, c_v)). The server forwards them; U2 = who sent shares.
 * 2. **Masked input.** y_u = x_u + PRG(b_u) + Σ_{v ∈ N(u) ∩ U2} ±PRG(s_uv) over Z_{2^b}, with
 *    s_uv = KDF(X25519(s_u, s_v)), + if u < v else −. U3 = who sent y.
 * 3. **Unmasking.** For each neighbour v ∈ U2 whose share it holds, u reveals the share of b_v if
 *    v ∈ U3, else the share of s_v^SK — never both. The server reconstructs, checks each secret
 *    against its commitment (SHA-256(b_v), s_v^PK), removes self masks of U3 and the dangling
 *    pairwise masks of U2 \ U3, and obtains Σ_{u∈U3} x_u exactly.
 *
 * Dropouts: a client gone before phase 1 is not in the graph; gone before phase 2 is masked by
 * nobody; gone before phase 3 has its pairwise masks removed through its reconstructed s^SK; gone
 * during unmasking does not matter as long as t of each neighbourhood remain.
 *
 * Every message the server accepts goes through {@link SecAggServer.accept}: one message per
 * client per phase (`DUPLICATE_UPDATE`), never a message id twice (`REPLAY`), only the current
 * phase (`STALE_ROUND`), only clients still in the protocol (`NOT_SELECTED`).
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import { FedtlError } from '../core/errors.ts';
import { ephemeralKeyPair, x25519Agree } from '../crypto/index.ts';
import { buildGraph, defaultDegree, defaultThreshold } from './graph.ts';
import { applyMask, expandDither, SEED_BYTES } from './prg.ts';
import type { RingCodec } from './quantize.ts';
import { reconstructChecked, type Share, shareWidth, split } from './shamir.ts';

/** The phases, in order. */
export type SecAggPhase = 'advertise' | 'share' | 'mask' | 'unmask' | 'done' | 'failed';

const KEY_BYTES = 32;

/** Phase 0, client → server. */
export interface AdvertisePayload {
  readonly cPk: Uint8Array;
  readonly sPk: Uint8Array;
  /** SHA-256 of the self-mask seed b_u, hex: lets the server verify its reconstruction. */
  readonly seedCommitment: string;
  /** Ed25519 signature by the client's long-term key over {@link advertiseSignedText}. */
  readonly signature: Uint8Array;
}

/** One neighbour's advertised keys, as forwarded by the server. */
export interface NeighbourKeys extends AdvertisePayload {
  readonly clientId: string;
  /** The neighbour's long-term Ed25519 public key, to check `signature`. */
  readonly signingKey: Uint8Array;
}

/** Phase 0 → 1, server → client. */
export interface RoundKeysPayload {
  /** U1, sorted. */
  readonly participants: readonly string[];
  readonly degree: number;
  readonly threshold: number;
  readonly neighbours: readonly NeighbourKeys[];
}

/** One encrypted share bundle from `from` to `to`. */
export interface EncryptedShare {
  readonly from: string;
  readonly to: string;
  readonly ciphertext: Uint8Array;
}

/** Phase 1, client → server, and server → client (the shares addressed to it). */
export interface SharesPayload {
  readonly shares: readonly EncryptedShare[];
}

/** Phase 2 → 3, server → client. */
export interface SurvivorsPayload {
  /** U3, sorted. */
  readonly survivors: readonly string[];
}

/** One revealed share: of whose secret, and the value at the revealer's point. */
export interface RevealedShare {
  readonly of: string;
  /** The share's chunk values ({@link Share.y}). */
  readonly y: readonly number[];
}

/** Phase 3, client → server. */
export interface UnmaskPayload {
  readonly seedShares: readonly RevealedShare[];
  readonly keyShares: readonly RevealedShare[];
}

/** Signed text of a key advertisement: binds both keys and the commitment to the client and round. */
export function advertiseSignedText(roundId: string, clientId: string, cPk: Uint8Array, sPk: Uint8Array, seedCommitment: string): string {
  return `fedtl-secagg-advertise/v1|${roundId}|${clientId}|${Buffer.from(cPk).toString('base64')}|${Buffer.from(sPk).toString('base64')}|${seedCommitment}`;
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The pairwise mask seed s_uv, the same for (u, v) and (v, u). */
function pairSeed(shared: Uint8Array, roundId: string, a: string, b: string): Uint8Array {
  const [lo, hi] = a < b ? [a, b] : [b, a];
  return new Uint8Array(hkdfSync('sha256', shared, Buffer.alloc(0), Buffer.from(`fedtl/secagg-pair/v1|${roundId}|${lo}|${hi}`, 'utf8'), SEED_BYTES));
}

function shareKey(shared: Uint8Array, roundId: string, from: string, to: string): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, Buffer.alloc(0), Buffer.from(`fedtl/secagg-share/v1|${roundId}|${from}|${to}`, 'utf8'), 32));
}

/** Share point of a participant: its 1-based index in the sorted U1. */
function pointOf(participants: readonly string[], id: string): number {
  const i = participants.indexOf(id);
  if (i < 0) throw new FedtlError('SECAGG_FAILED', `${id} is not a participant of this round`);
  return i + 1;
}

/** Bytes of one encrypted share value: shareWidth(32) field elements of 4 bytes. */
const SHARE_VALUE_BYTES = 4 * shareWidth(KEY_BYTES);

/** Options of {@link SecAggClient}. */
export interface SecAggClientOptions {
  readonly roundId: string;
  readonly clientId: string;
  /** Signs the key advertisement with the client's long-term key. */
  readonly sign: (text: string) => Uint8Array;
  /** Verifies a neighbour's advertisement signature. */
  readonly verify: (text: string, signature: Uint8Array, signingKey: Uint8Array) => boolean;
  readonly codec: RingCodec;
}

/** The client's side of one round. Methods must be called in phase order; anything else throws. */
export class SecAggClient {
  #phase: SecAggPhase = 'advertise';
  readonly #o: SecAggClientOptions;
  readonly #c = ephemeralKeyPair();
  readonly #s = ephemeralKeyPair();
  readonly #seed = new Uint8Array(randomBytes(SEED_BYTES));
  #participants: readonly string[] = [];
  #threshold = 0;
  readonly #neighbours = new Map<string, NeighbourKeys>();
  /** Shares this client holds, per neighbour in U2: [share of b_v, share of s_v^SK]. */
  readonly #held = new Map<string, { seed: readonly number[]; key: readonly number[] }>();

  constructor(options: SecAggClientOptions) {
    this.#o = options;
  }

  get phase(): SecAggPhase {
    return this.#phase;
  }

  #expect(phase: SecAggPhase, next: SecAggPhase): void {
    if (this.#phase !== phase) throw new FedtlError('STALE_ROUND', `secure aggregation client is in phase ${this.#phase}, not ${phase}`);
    this.#phase = next;
  }

  /** Phase 0: fresh keys and the commitment to the self-mask seed. */
  advertise(): AdvertisePayload {
    this.#expect('advertise', 'share');
    const seedCommitment = sha256Hex(this.#seed);
    const { roundId, clientId } = this.#o;
    const signature = this.#o.sign(advertiseSignedText(roundId, clientId, this.#c.publicKey, this.#s.publicKey, seedCommitment));
    return { cPk: this.#c.publicKey, sPk: this.#s.publicKey, seedCommitment, signature };
  }

  /** Phase 1: checks the neighbourhood, shares b_u and s_u^SK among the neighbours. */
  shareKeys(keys: RoundKeysPayload): SharesPayload {
    this.#expect('share', 'mask');
    const { roundId, clientId } = this.#o;
    const { participants, degree, threshold } = keys;
    if (!participants.includes(clientId)) throw new FedtlError('BAD_MESSAGE', 'round keys do not list this client');
    const expected = buildGraph(roundId, participants, degree).get(clientId) ?? [];
    const given = keys.neighbours.map((n) => n.clientId).sort();
    if (expected.length !== given.length || expected.some((id, i) => id !== given[i])) {
      throw new FedtlError('BAD_MESSAGE', 'the neighbours the coordinator sent are not this round\'s graph');
    }
    if (threshold > expected.length + 1 || threshold <= (expected.length + 1) / 2) {
      throw new FedtlError('BAD_MESSAGE', `threshold ${threshold} is unsafe for ${expected.length} neighbours (needs (k+1)/2 < t <= k+1)`);
    }
    for (const n of keys.neighbours) {
      if (n.cPk.length !== KEY_BYTES || n.sPk.length !== KEY_BYTES) throw new FedtlError('BAD_MESSAGE', `neighbour ${n.clientId} sent keys of the wrong size`);
      if (!this.#o.verify(advertiseSignedText(roundId, n.clientId, n.cPk, n.sPk, n.seedCommitment), n.signature, n.signingKey)) {
        throw new FedtlError('BAD_SIGNATURE', `neighbour ${n.clientId}'s key advertisement is not signed by its key`);
      }
      this.#neighbours.set(n.clientId, n);
    }
    this.#participants = participants;
    this.#threshold = threshold;
    // Shares go to every neighbour and to the client itself (its own share is the last point),
    // as in Bonawitz et al., where each user also holds a share of its own secrets.
    const points = [...expected, clientId].map((id) => pointOf(participants, id));
    const seedShares = split(this.#seed, threshold, points);
    const keyShares = split(this.#s.secretKey, threshold, points);
    this.#held.set(clientId, { seed: (seedShares[expected.length] as Share).y, key: (keyShares[expected.length] as Share).y });
    const shares = expected.map((to, i) => {
      const n = this.#neighbours.get(to) as NeighbourKeys;
      const body = Buffer.concat([shareBytes((seedShares[i] as Share).y), shareBytes((keyShares[i] as Share).y)]);
      const cipher = createCipheriv('chacha20-poly1305', shareKey(x25519Agree(this.#c.secretKey, n.cPk), roundId, clientId, to), Buffer.alloc(12), { authTagLength: 16 });
      cipher.setAAD(Buffer.from(`${roundId}|${clientId}|${to}`, 'utf8'), { plaintextLength: body.length });
      const ciphertext = Buffer.concat([cipher.update(body), cipher.final(), cipher.getAuthTag()]);
      return { from: clientId, to, ciphertext: new Uint8Array(ciphertext) };
    });
    return { shares };
  }

  /**
   * Phase 2: stores the shares addressed to this client (their senders are N(u) ∩ U2) and masks
   * `input`, a quantized ring vector (shared/secagg/quantize.ts), in place and returns it.
   */
  maskInput(forwarded: SharesPayload, input: Uint32Array): Uint32Array {
    this.#expect('mask', 'unmask');
    const { roundId, clientId, codec } = this.#o;
    for (const share of forwarded.shares) {
      const n = this.#neighbours.get(share.from);
      if (share.to !== clientId || n === undefined) throw new FedtlError('BAD_MESSAGE', `a share from ${share.from} to ${share.to} is not for this client or not from a neighbour`);
      if (this.#held.has(share.from)) throw new FedtlError('BAD_MESSAGE', `two shares from ${share.from}`);
      if (share.ciphertext.length !== 2 * SHARE_VALUE_BYTES + 16) throw new FedtlError('BAD_MESSAGE', `share from ${share.from} has the wrong size`);
      let body: Buffer;
      try {
        const decipher = createDecipheriv('chacha20-poly1305', shareKey(x25519Agree(this.#c.secretKey, n.cPk), roundId, share.from, clientId), Buffer.alloc(12), { authTagLength: 16 });
        decipher.setAAD(Buffer.from(`${roundId}|${share.from}|${clientId}`, 'utf8'), { plaintextLength: 2 * SHARE_VALUE_BYTES });
        decipher.setAuthTag(Buffer.from(share.ciphertext.subarray(2 * SHARE_VALUE_BYTES)));
        body = Buffer.concat([decipher.update(share.ciphertext.subarray(0, 2 * SHARE_VALUE_BYTES)), decipher.final()]);
      } catch (error) {
        throw new FedtlError('DECRYPT_FAILED', `share from ${share.from} failed authentication`, { cause: error });
      }
      this.#held.set(share.from, { seed: shareValues(body.subarray(0, SHARE_VALUE_BYTES)), key: shareValues(body.subarray(SHARE_VALUE_BYTES)) });
    }
    if (this.#held.size < this.#threshold) {
      throw new FedtlError('SECAGG_FAILED', `only ${this.#held.size - 1} neighbours shared keys; with this client that is fewer than the threshold ${this.#threshold}`);
    }
    applyMask(input, this.#seed, 'self', 1, codec.bits);
    for (const v of this.#held.keys()) {
      if (v === clientId) continue;
      const n = this.#neighbours.get(v) as NeighbourKeys;
      const seed = pairSeed(x25519Agree(this.#s.secretKey, n.sPk), roundId, clientId, v);
      applyMask(input, seed, 'pair', clientId < v ? 1 : -1, codec.bits);
    }
    return input;
  }

  /** The subtractive dither of quantization for this round, derived from the self-mask seed (the server learns it when it unmasks). */
  dither(length: number): Float64Array {
    return expandDither(this.#seed, 'dither', length);
  }

  /** Phase 3: for each neighbour in U2, the share of b_v if it survived, else of s_v^SK. */
  unmask(survivorsPayload: SurvivorsPayload): UnmaskPayload {
    this.#expect('unmask', 'done');
    const survivors = new Set(survivorsPayload.survivors);
    if (!survivors.has(this.#o.clientId)) throw new FedtlError('BAD_MESSAGE', 'the survivor list does not include this client');
    if (survivors.size < this.#threshold) {
      throw new FedtlError('SECAGG_FAILED', `only ${survivors.size} clients survived, fewer than the threshold ${this.#threshold}: refusing to unmask`);
    }
    for (const id of survivors) if (!this.#participants.includes(id)) throw new FedtlError('BAD_MESSAGE', `survivor ${id} is not a participant`);
    const seedShares: RevealedShare[] = [];
    const keyShares: RevealedShare[] = [];
    for (const [v, held] of this.#held) {
      if (survivors.has(v)) seedShares.push({ of: v, y: held.seed });
      else keyShares.push({ of: v, y: held.key });
    }
    return { seedShares, keyShares };
  }
}

function shareBytes(values: readonly number[]): Buffer {
  const out = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => out.writeUInt32BE(v, 4 * i));
  return out;
}

function shareValues(bytes: Uint8Array): number[] {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: number[] = [];
  for (let i = 0; i + 4 <= buf.length; i += 4) out.push(buf.readUInt32BE(i));
  return out;
}

/** Options of {@link SecAggServer}. */
export interface SecAggServerOptions {
  readonly roundId: string;
  /** The clients selected for the round (U0). */
  readonly selected: readonly string[];
  readonly codec: RingCodec;
  /** Length of every masked vector (parameters + 1 weight slot + any extra slots). */
  readonly vectorLength: number;
  /** Each client's long-term Ed25519 key, to check advertisements and forward them. */
  readonly signingKeyOf: (clientId: string) => Uint8Array | undefined;
  readonly verify: (text: string, signature: Uint8Array, signingKey: Uint8Array) => boolean;
  /** Graph degree k. @default defaultDegree(|U1|) */
  readonly degree?: number;
  /** Shamir threshold t per neighbourhood. @default defaultThreshold(k) */
  readonly threshold?: number;
  /** Smallest |U3| for the round to count. @default 1 */
  readonly minSurvivors?: number;
}

/** The verified outcome of a round. */
export interface SecAggResult {
  /** Σ_{u∈U3} x_u over the ring, unmasked. */
  readonly sum: Uint32Array;
  readonly survivors: readonly string[];
  /** Clients that dropped after sharing keys, whose masks were removed. */
  readonly droppedAfterSharing: readonly string[];
  /** Clients that returned a share off its polynomial (detected, excluded from reconstruction). */
  readonly badShareHolders: readonly string[];
  /** Σ of the survivors' dithers, if they used one (see {@link SecAggClient.dither}). */
  readonly ditherSum?: Float64Array;
}

/** Checks t and k for n selected clients at configuration time; throws `BAD_CONFIG` with what to change. */
export function checkSecAggParameters(n: number, threshold?: number, degree?: number): { degree: number; threshold: number } {
  if (!Number.isSafeInteger(n) || n < 2) throw new FedtlError('BAD_CONFIG', `secure aggregation needs at least 2 clients per round, got ${n}`);
  const k = degree ?? defaultDegree(n);
  if (!Number.isInteger(k) || k < 1 || k > n - 1) throw new FedtlError('BAD_CONFIG', `secure aggregation degree k must be in [1, ${n - 1}] for ${n} clients, got ${k}`);
  const t = threshold ?? defaultThreshold(k);
  if (!Number.isInteger(t) || t < 1) throw new FedtlError('BAD_CONFIG', `secure aggregation threshold t must be an integer >= 1, got ${t}`);
  if (t > n) throw new FedtlError('BAD_CONFIG', `secure aggregation threshold t = ${t} exceeds the ${n} clients per round: no secret could ever be reconstructed`);
  if (t > k + 1) throw new FedtlError('BAD_CONFIG', `secure aggregation threshold t = ${t} exceeds the ${k + 1} share holders of each client (k = ${k} neighbours and itself); lower t or raise the degree`);
  if (t <= (k + 1) / 2) throw new FedtlError('BAD_CONFIG', `secure aggregation threshold t = ${t} must be more than half of the ${k + 1} share holders, or a coordinator could learn both secrets of a client`);
  return { degree: k, threshold: t };
}

/** The server's side of one round. */
export class SecAggServer {
  #phase: SecAggPhase = 'advertise';
  readonly #o: SecAggServerOptions;
  readonly #seenMessages = new Set<string>();
  readonly #advertised = new Map<string, AdvertisePayload>();
  #participants: string[] = [];
  #graph: ReadonlyMap<string, readonly string[]> = new Map();
  #degree = 0;
  #threshold = 0;
  readonly #sharesFrom = new Map<string, readonly EncryptedShare[]>();
  readonly #masked = new Set<string>();
  #sum: Uint32Array;
  readonly #unmasks = new Map<string, UnmaskPayload>();
  #failure: FedtlError | undefined;

  constructor(options: SecAggServerOptions) {
    this.#o = options;
    this.#sum = new Uint32Array(options.vectorLength);
  }

  get phase(): SecAggPhase {
    return this.#phase;
  }

  get failure(): FedtlError | undefined {
    return this.#failure;
  }

  /** The clients the current phase still waits on. */
  expected(): readonly string[] {
    switch (this.#phase) {
      case 'advertise':
        return this.#o.selected;
      case 'share':
        return this.#participants;
      case 'mask':
        return [...this.#sharesFrom.keys()];
      case 'unmask':
        return [...this.#masked];
      default:
        return [];
    }
  }

  /** Number of messages received in the current phase. */
  get received(): number {
    switch (this.#phase) {
      case 'advertise':
        return this.#advertised.size;
      case 'share':
        return this.#sharesFrom.size;
      case 'mask':
        return this.#masked.size;
      case 'unmask':
        return this.#unmasks.size;
      default:
        return 0;
    }
  }

  /** The replay / phase / membership gate every incoming message passes first. */
  accept(phase: SecAggPhase, senderId: string, messageId: string, already: ReadonlyMap<string, unknown> | ReadonlySet<string>): void {
    if (this.#seenMessages.has(messageId)) throw new FedtlError('REPLAY', `secure aggregation message ${messageId} was already received`);
    if (this.#phase !== phase) throw new FedtlError('STALE_ROUND', `secure aggregation is in phase ${this.#phase}; a ${phase} message is stale`);
    if (!this.expected().includes(senderId)) throw new FedtlError('NOT_SELECTED', `${senderId} is not expected in the ${phase} phase`);
    if (already.has(senderId)) throw new FedtlError('DUPLICATE_UPDATE', `${senderId} already sent its ${phase} message`);
    this.#seenMessages.add(messageId);
  }

  onAdvertise(senderId: string, messageId: string, payload: AdvertisePayload): void {
    this.accept('advertise', senderId, messageId, this.#advertised);
    const key = this.#o.signingKeyOf(senderId);
    if (key === undefined) throw new FedtlError('UNKNOWN_CLIENT', `no signing key for ${senderId}`);
    if (payload.cPk.length !== KEY_BYTES || payload.sPk.length !== KEY_BYTES || !/^[0-9a-f]{64}$/.test(payload.seedCommitment)) {
      throw new FedtlError('BAD_MESSAGE', `${senderId}'s key advertisement is malformed`);
    }
    if (!this.#o.verify(advertiseSignedText(this.#o.roundId, senderId, payload.cPk, payload.sPk, payload.seedCommitment), payload.signature, key)) {
      throw new FedtlError('BAD_SIGNATURE', `${senderId}'s key advertisement has a bad signature`);
    }
    this.#advertised.set(senderId, payload);
  }

  /** Closes phase 0: builds the graph over U1 and returns each participant's round keys. */
  closeAdvertise(): Map<string, RoundKeysPayload> {
    this.#close('advertise', 'share');
    this.#participants = [...this.#advertised.keys()].sort();
    const n = this.#participants.length;
    let params: { degree: number; threshold: number };
    try {
      params = checkSecAggParameters(n, this.#o.threshold, this.#o.degree === undefined ? undefined : Math.min(this.#o.degree, n - 1));
    } catch (error) {
      throw this.#fail(new FedtlError('SECAGG_FAILED', `after key advertisement only ${n} clients remain: ${(error as Error).message}`, { cause: error }));
    }
    this.#degree = params.degree;
    this.#threshold = params.threshold;
    this.#graph = buildGraph(this.#o.roundId, this.#participants, this.#degree);
    const out = new Map<string, RoundKeysPayload>();
    for (const id of this.#participants) {
      const neighbours = (this.#graph.get(id) ?? []).map((v) => ({ clientId: v, signingKey: this.#o.signingKeyOf(v) as Uint8Array, ...(this.#advertised.get(v) as AdvertisePayload) }));
      out.set(id, { participants: this.#participants, degree: this.#degree, threshold: this.#threshold, neighbours });
    }
    return out;
  }

  onShares(senderId: string, messageId: string, payload: SharesPayload): void {
    this.accept('share', senderId, messageId, this.#sharesFrom);
    const neighbours = this.#graph.get(senderId) ?? [];
    const targets = payload.shares.map((s) => s.to).sort();
    if (payload.shares.some((s) => s.from !== senderId) || targets.length !== neighbours.length || targets.some((t, i) => t !== neighbours[i])) {
      throw new FedtlError('BAD_MESSAGE', `${senderId} must send exactly one share to each of its ${neighbours.length} neighbours`);
    }
    this.#sharesFrom.set(senderId, payload.shares);
  }

  /** Closes phase 1: U2, and for each member of U2 the shares addressed to it. */
  closeShares(): Map<string, SharesPayload> {
    this.#close('share', 'mask');
    const out = new Map<string, EncryptedShare[]>([...this.#sharesFrom.keys()].map((id) => [id, []]));
    for (const shares of this.#sharesFrom.values()) for (const s of shares) out.get(s.to)?.push(s);
    for (const [id, shares] of out) {
      if (shares.length + 1 < this.#threshold) {
        throw this.#fail(new FedtlError('SECAGG_FAILED', `${id} has only ${shares.length} neighbours left after key sharing; with itself that is fewer than the threshold ${this.#threshold}`));
      }
    }
    return new Map([...out].map(([id, shares]) => [id, { shares }]));
  }

  /** Phase 2: folds one masked vector into the running ring sum (streaming; the vector can be dropped after). */
  onMaskedInput(senderId: string, messageId: string, masked: Uint32Array): void {
    this.accept('mask', senderId, messageId, this.#masked);
    if (masked.length !== this.#o.vectorLength) throw new FedtlError('BAD_SHAPE', `${senderId}'s masked vector has ${masked.length} elements, expected ${this.#o.vectorLength}`);
    const { mask } = this.#o.codec;
    const sum = this.#sum;
    for (let i = 0; i < sum.length; i++) sum[i] = ((sum[i] as number) + (masked[i] as number)) & mask;
    this.#masked.add(senderId);
  }

  /** Closes phase 2: U3. */
  closeMaskedInput(): SurvivorsPayload {
    this.#close('mask', 'unmask');
    const survivors = [...this.#masked].sort();
    if (survivors.length < Math.max(this.#o.minSurvivors ?? 1, this.#threshold)) {
      throw this.#fail(new FedtlError('SECAGG_FAILED', `only ${survivors.length} masked inputs arrived; at least ${Math.max(this.#o.minSurvivors ?? 1, this.#threshold)} are needed`));
    }
    return { survivors };
  }

  onUnmask(senderId: string, messageId: string, payload: UnmaskPayload): void {
    this.accept('unmask', senderId, messageId, this.#unmasks);
    const neighbours = new Set([...(this.#graph.get(senderId) ?? []), senderId]);
    for (const s of payload.seedShares) {
      if (!neighbours.has(s.of) || !this.#masked.has(s.of)) throw new FedtlError('BAD_MESSAGE', `${senderId} revealed a seed share of ${s.of}, which is not a surviving neighbour`);
    }
    for (const s of payload.keyShares) {
      if (!neighbours.has(s.of) || s.of === senderId || this.#masked.has(s.of) || !this.#sharesFrom.has(s.of)) {
        throw new FedtlError('BAD_MESSAGE', `${senderId} revealed a key share of ${s.of}, which did not drop after sharing`);
      }
    }
    this.#unmasks.set(senderId, payload);
  }

  /**
   * Closes phase 3: reconstructs and checks every needed secret, removes the masks and returns
   * the exact sum. Throws `SECAGG_FAILED` (and enters phase `failed`) if any secret cannot be
   * reconstructed and verified — a wrong sum is never returned.
   */
  finish(options: { withDither?: boolean } = {}): SecAggResult {
    this.#close('unmask', 'done');
    const { roundId, codec } = this.#o;
    const survivors = [...this.#masked].sort();
    const dropped = [...this.#sharesFrom.keys()].filter((id) => !this.#masked.has(id)).sort();
    const bad = new Set<string>();
    const collect = (of: string, kind: 'seedShares' | 'keyShares'): Share[] => {
      const shares: Share[] = [];
      for (const [holder, payload] of this.#unmasks) {
        const s = payload[kind].find((r) => r.of === of);
        if (s !== undefined) shares.push({ x: pointOf(this.#participants, holder), y: s.y });
      }
      return shares;
    };
    const holderAt = (x: number): string => this.#participants[x - 1] as string;
    const recover = (of: string, kind: 'seedShares' | 'keyShares', verify: (secret: Uint8Array) => boolean): Uint8Array => {
      const shares = collect(of, kind);
      try {
        const { secret, badPoints } = reconstructChecked(shares, this.#threshold, KEY_BYTES, verify);
        for (const x of badPoints) bad.add(holderAt(x));
        return secret;
      } catch (error) {
        throw this.#fail(
          new FedtlError(
            'SECAGG_FAILED',
            `cannot recover the ${kind === 'seedShares' ? 'self-mask seed' : 'mask key'} of ${of} from ${shares.length} shares (threshold ${this.#threshold}): ${(error as Error).message}`,
            { cause: error },
          ),
        );
      }
    };
    const sum = this.#sum;
    const ditherSum = options.withDither ? new Float64Array(this.#o.vectorLength - 1) : undefined;
    for (const u of survivors) {
      const commitment = (this.#advertised.get(u) as AdvertisePayload).seedCommitment;
      const seed = recover(u, 'seedShares', (secret) => sha256Hex(secret) === commitment);
      applyMask(sum, seed, 'self', -1, codec.bits);
      if (ditherSum !== undefined) {
        const d = expandDither(seed, 'dither', ditherSum.length);
        for (let i = 0; i < d.length; i++) ditherSum[i] = (ditherSum[i] as number) + (d[i] as number);
      }
    }
    for (const u of dropped) {
      const sPk = (this.#advertised.get(u) as AdvertisePayload).sPk;
      const secretKey = recover(u, 'keyShares', (secret) => publicKeyMatches(secret, sPk));
      for (const v of this.#graph.get(u) ?? []) {
        if (!this.#masked.has(v)) continue;
        // v added sign(v, u)·PRG(s_vu); remove exactly that.
        const seed = pairSeed(x25519Agree(secretKey, (this.#advertised.get(v) as AdvertisePayload).sPk), roundId, u, v);
        applyMask(sum, seed, 'pair', v < u ? -1 : 1, codec.bits);
      }
    }
    this.#sum = new Uint32Array(0);
    return { sum, survivors, droppedAfterSharing: dropped, badShareHolders: [...bad].sort(), ...(ditherSum ? { ditherSum } : {}) };
  }

  /** Abandons the round (deadline, error elsewhere); nothing can be accepted after. */
  abort(reason: FedtlError): FedtlError {
    return this.#fail(reason);
  }

  #close(phase: SecAggPhase, next: SecAggPhase): void {
    if (this.#phase !== phase) throw new FedtlError('STALE_ROUND', `secure aggregation is in phase ${this.#phase}, cannot close ${phase}`);
    this.#phase = next;
  }

  #fail(error: FedtlError): FedtlError {
    this.#phase = 'failed';
    this.#failure = error;
    return error;
  }
}

/** Whether `secret` is the X25519 secret key of `publicKey` (the commitment a dropped client's key is checked against). */
function publicKeyMatches(secret: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    // X25519(secret, basepoint 9) is the public key.
    const base = new Uint8Array(32);
    base[0] = 9;
    const derived = x25519Agree(secret, base);
    return Buffer.from(derived).equals(Buffer.from(publicKey));
  } catch {
    return false;
  }
}
