/**
 * The pseudo-random generator that expands a 32-byte seed into a mask over Z_{2^b}: AES-256 in
 * counter mode from Node's crypto (OpenSSL, AES-NI where available), as Bonawitz et al. (CCS 2017,
 * §6.1) use AES-CTR for their PRG. No cipher is written here; we only read its keystream.
 *
 * The AES key is HKDF-SHA256(seed, info = label), so one seed can serve several independent
 * streams (the self mask and a dither, say) without ever reusing a (key, counter) pair. Each
 * (seed, label) is used for one vector only: seeds are fresh every round.
 */
import { createCipheriv, hkdfSync } from 'node:crypto';
import { FedtlError } from '../core/errors.ts';

export const SEED_BYTES = 32;
const IV = Buffer.alloc(16);
/** Zeros encrypted to read the keystream; grown on demand and shared (it is never written). */
let zeros = Buffer.alloc(0);

function keystream(seed: Uint8Array, label: string, bytes: number): Buffer {
  if (seed.length !== SEED_BYTES) throw new FedtlError('BAD_CONFIG', `PRG seed must be ${SEED_BYTES} bytes, got ${seed.length}`);
  const key = Buffer.from(hkdfSync('sha256', seed, Buffer.alloc(0), Buffer.from(`fedtl/secagg-prg/v1/${label}`, 'utf8'), 32));
  if (zeros.length < bytes) zeros = Buffer.alloc(Math.max(bytes, zeros.length * 2));
  const cipher = createCipheriv('aes-256-ctr', key, IV);
  return cipher.update(zeros.subarray(0, bytes));
}

/** The mask words of `length` ring elements, uniform over Z_{2^bits} (bits ≤ 32: a power of two, so masking the low bits is unbiased). */
export function expandMask(seed: Uint8Array, label: string, length: number, bits: number): Uint32Array {
  const ks = keystream(seed, label, length * 4);
  // Node's Buffer from `update` is a fresh allocation; copy only if it is misaligned.
  const words = ks.byteOffset % 4 === 0 ? new Uint32Array(ks.buffer, ks.byteOffset, length) : new Uint32Array(new Uint8Array(ks).buffer, 0, length);
  if (bits < 32) {
    const mask = 2 ** bits - 1;
    for (let i = 0; i < length; i++) words[i] = (words[i] as number) & mask;
  }
  return words;
}

/** Adds (sign +1) or subtracts (sign −1) the mask of `seed` into `target` modulo 2^bits, in place. */
export function applyMask(target: Uint32Array, seed: Uint8Array, label: string, sign: 1 | -1, bits: number): void {
  const mask = expandMask(seed, label, target.length, bits);
  const m = bits === 32 ? 0xffffffff : 2 ** bits - 1;
  if (sign === 1) for (let i = 0; i < target.length; i++) target[i] = ((target[i] as number) + (mask[i] as number)) & m;
  else for (let i = 0; i < target.length; i++) target[i] = ((target[i] as number) - (mask[i] as number)) & m;
}

/** Uniform floats in [−½, ½) from the seed's keystream: the subtractive dither of quantization. */
export function expandDither(seed: Uint8Array, label: string, length: number): Float64Array {
  const words = expandMask(seed, label, length, 32);
  const out = new Float64Array(length);
  for (let i = 0; i < length; i++) out[i] = ((words[i] as number) + 0.5) / 4294967296 - 0.5;
  return out;
}
