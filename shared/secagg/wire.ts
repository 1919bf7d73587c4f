/**
 * Byte encodings of the secure-aggregation payloads, and their parsers: untrusted bytes in, a
 * typed payload out or `BAD_MESSAGE` saying what is wrong. Small payloads are JSON (keys and
 * ciphertexts in base64, share values as arrays of field elements); the masked vector is binary little-endian words
 * after a short JSON preamble. Every payload travels inside a sealed, signed message
 * (shared/crypto/sealed-message.ts) whose `kind` is one of {@link SECAGG_KINDS}.
 */
import { FedtlError } from '../core/errors.ts';
import type {
  AdvertisePayload,
  EncryptedShare,
  NeighbourKeys,
  RevealedShare,
  RoundKeysPayload,
  SharesPayload,
  SurvivorsPayload,
  UnmaskPayload,
} from './protocol.ts';

/** Message kinds, one per direction and phase. */
export const SECAGG_KINDS = {
  advertise: 'secagg:advertise',
  roundKeys: 'secagg:keys',
  shares: 'secagg:shares',
  forwarded: 'secagg:forward',
  masked: 'secagg:masked',
  survivors: 'secagg:survivors',
  unmask: 'secagg:unmask',
} as const;
export type SecAggKind = (typeof SECAGG_KINDS)[keyof typeof SECAGG_KINDS];

const ID_RE = /^[0-9a-f]{16}$/;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

type Fields = Record<string, unknown>;
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');

function json(value: unknown): Uint8Array {
  return new Uint8Array(Buffer.from(JSON.stringify(value), 'utf8'));
}

function parseJson(bytes: Uint8Array, what: string): Fields {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (error) {
    throw new FedtlError('BAD_MESSAGE', `${what}: not JSON`, { cause: error });
  }
  return obj(value, what);
}

function obj(value: unknown, what: string): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FedtlError('BAD_MESSAGE', `${what}: expected an object`);
  return value as Fields;
}

function arr(value: unknown, what: string, max = 100_000): unknown[] {
  if (!Array.isArray(value) || value.length > max) throw new FedtlError('BAD_MESSAGE', `${what}: expected an array of at most ${max} items`);
  return value;
}

function id(value: unknown, what: string): string {
  if (typeof value !== 'string' || !ID_RE.test(value)) throw new FedtlError('BAD_MESSAGE', `${what}: expected a client id (16 hex digits)`);
  return value;
}

function bin(value: unknown, what: string, length?: number): Uint8Array {
  if (typeof value !== 'string' || value.length > 1_000_000 || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) throw new FedtlError('BAD_MESSAGE', `${what}: expected base64`);
  const out = new Uint8Array(Buffer.from(value, 'base64'));
  if (length !== undefined && out.length !== length) throw new FedtlError('BAD_MESSAGE', `${what}: expected ${length} bytes, got ${out.length}`);
  return out;
}

function int(value: unknown, what: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) throw new FedtlError('BAD_MESSAGE', `${what}: expected an integer in [${min}, ${max}]`);
  return value;
}

function fieldValues(value: unknown, what: string): number[] {
  return arr(value, what, 64).map((v, i) => int(v, `${what}[${i}]`, 0, 2 ** 32 - 1));
}

function commitment(value: unknown, what: string): string {
  if (typeof value !== 'string' || !/^[0-9a-f]{64}$/.test(value)) throw new FedtlError('BAD_MESSAGE', `${what}: expected a SHA-256 hex digest`);
  return value;
}

const advertiseFields = (p: AdvertisePayload) => ({ cPk: b64(p.cPk), sPk: b64(p.sPk), seedCommitment: p.seedCommitment, signature: b64(p.signature) });
function parseAdvertiseFields(f: Fields, what: string): AdvertisePayload {
  return {
    cPk: bin(f['cPk'], `${what}.cPk`, 32),
    sPk: bin(f['sPk'], `${what}.sPk`, 32),
    seedCommitment: commitment(f['seedCommitment'], `${what}.seedCommitment`),
    signature: bin(f['signature'], `${what}.signature`, 64),
  };
}

export const encodeAdvertise = (p: AdvertisePayload): Uint8Array => json(advertiseFields(p));
export const parseAdvertise = (bytes: Uint8Array): AdvertisePayload => parseAdvertiseFields(parseJson(bytes, 'advertise'), 'advertise');

export function encodeRoundKeys(p: RoundKeysPayload): Uint8Array {
  return json({
    participants: p.participants,
    degree: p.degree,
    threshold: p.threshold,
    neighbours: p.neighbours.map((n) => ({ clientId: n.clientId, signingKey: b64(n.signingKey), ...advertiseFields(n) })),
  });
}

export function parseRoundKeys(bytes: Uint8Array): RoundKeysPayload {
  const f = parseJson(bytes, 'round keys');
  const participants = arr(f['participants'], 'round keys.participants').map((v, i) => id(v, `round keys.participants[${i}]`));
  const neighbours: NeighbourKeys[] = arr(f['neighbours'], 'round keys.neighbours').map((v, i) => {
    const n = obj(v, `round keys.neighbours[${i}]`);
    return { clientId: id(n['clientId'], `neighbours[${i}].clientId`), signingKey: bin(n['signingKey'], `neighbours[${i}].signingKey`, 32), ...parseAdvertiseFields(n, `neighbours[${i}]`) };
  });
  return { participants, degree: int(f['degree'], 'round keys.degree', 1, 1e6), threshold: int(f['threshold'], 'round keys.threshold', 1, 1e6), neighbours };
}

export function encodeShares(p: SharesPayload): Uint8Array {
  return json({ shares: p.shares.map((s) => ({ from: s.from, to: s.to, ciphertext: b64(s.ciphertext) })) });
}

export function parseShares(bytes: Uint8Array): SharesPayload {
  const f = parseJson(bytes, 'shares');
  const shares: EncryptedShare[] = arr(f['shares'], 'shares.shares').map((v, i) => {
    const s = obj(v, `shares[${i}]`);
    return { from: id(s['from'], `shares[${i}].from`), to: id(s['to'], `shares[${i}].to`), ciphertext: bin(s['ciphertext'], `shares[${i}].ciphertext`) };
  });
  return { shares };
}

export const encodeSurvivors = (p: SurvivorsPayload): Uint8Array => json({ survivors: p.survivors });
export function parseSurvivors(bytes: Uint8Array): SurvivorsPayload {
  const f = parseJson(bytes, 'survivors');
  return { survivors: arr(f['survivors'], 'survivors.survivors').map((v, i) => id(v, `survivors[${i}]`)) };
}

const revealed = (list: readonly RevealedShare[]) => list.map((s) => ({ of: s.of, y: s.y }));
const parseRevealed = (value: unknown, what: string): RevealedShare[] =>
  arr(value, what).map((v, i) => {
    const s = obj(v, `${what}[${i}]`);
    return { of: id(s['of'], `${what}[${i}].of`), y: fieldValues(s['y'], `${what}[${i}].y`) };
  });

export const encodeUnmask = (p: UnmaskPayload): Uint8Array => json({ seedShares: revealed(p.seedShares), keyShares: revealed(p.keyShares) });
export function parseUnmask(bytes: Uint8Array): UnmaskPayload {
  const f = parseJson(bytes, 'unmask');
  return { seedShares: parseRevealed(f['seedShares'], 'unmask.seedShares'), keyShares: parseRevealed(f['keyShares'], 'unmask.keyShares') };
}

/** Training metrics that travel with a masked input (in clear to the coordinator, like a plain update's header). */
export interface MaskedInputMeta {
  readonly metrics: Readonly<Record<string, number>>;
}

/** Masked vector: u32 preamble length ‖ JSON preamble ‖ padding to 4 ‖ little-endian words. */
export function encodeMaskedInput(vector: Uint32Array, meta: MaskedInputMeta): Uint8Array {
  const pre = Buffer.from(JSON.stringify(meta), 'utf8');
  const start = 4 + pre.length + ((4 - ((4 + pre.length) % 4)) % 4);
  const out = Buffer.alloc(start + vector.length * 4);
  out.writeUInt32LE(pre.length, 0);
  pre.copy(out, 4);
  const words = Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
  (LITTLE_ENDIAN ? words : Buffer.from(words).swap32()).copy(out, start);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

export function parseMaskedInput(bytes: Uint8Array, vectorLength: number): { vector: Uint32Array; meta: MaskedInputMeta } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 4) throw new FedtlError('BAD_MESSAGE', 'masked input: too short');
  const preLength = buf.readUInt32LE(0);
  if (preLength > 16384) throw new FedtlError('BAD_MESSAGE', 'masked input: preamble too long');
  const start = 4 + preLength + ((4 - ((4 + preLength) % 4)) % 4);
  if (buf.length !== start + vectorLength * 4) {
    throw new FedtlError('BAD_SHAPE', `masked input carries ${Math.floor((buf.length - start) / 4)} ring elements, expected ${vectorLength}`);
  }
  const f = parseJson(buf.subarray(4, 4 + preLength), 'masked input preamble');
  const m = obj(f['metrics'] ?? {}, 'masked input.metrics');
  const metrics: Record<string, number> = {};
  const names = Object.keys(m);
  if (names.length > 64) throw new FedtlError('BAD_MESSAGE', 'masked input: at most 64 metrics');
  for (const name of names) {
    const v = m[name];
    if (!/^[A-Za-z0-9._/-]{1,64}$/.test(name) || typeof v !== 'number' || !Number.isFinite(v)) throw new FedtlError('BAD_MESSAGE', `masked input: metric ${name} must be a finite number`);
    metrics[name] = v;
  }
  const body = Buffer.from(buf.subarray(start)); // copy: aligned, and owned by the caller
  if (!LITTLE_ENDIAN) body.swap32();
  return { vector: new Uint32Array(body.buffer, body.byteOffset, vectorLength), meta: { metrics } };
}
