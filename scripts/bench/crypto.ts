/**
 * Benchmark (6): tweetnacl (pure JS) against Node's native ciphers on the same buffers, plus the
 * per-message costs of the sealed update envelope. Why it exists: it is the measurement behind
 * the envelope's design (native AEAD and Ed25519, tweetnacl only for key generation).
 *
 * Run: `npx tsx scripts/bench/crypto.ts [--sizes 1M,10M] [--min-ms 300]`
 * Writes `scripts/bench/results/crypto.json`.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, sign, verify, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync } from 'node:crypto';
import nacl from 'tweetnacl';
import { generateIdentity, publicIdentity } from '../../shared/crypto/identity.ts';
import { openUpdate, sealUpdate } from '../../shared/crypto/update-envelope.ts';
import { intListArg, mbPerSecond, parseArgs, printTable, round3, timeSync, writeResults } from './bench-util.ts';

const args = parseArgs();
const sizes = intListArg(args, 'sizes') ?? [1_000_000, 10_000_000];
const minMs = Number(args.get('min-ms') ?? 300);

interface Row {
  [key: string]: string | number;
  op: string;
  size: string;
  'MB/s': number;
  'ms/op': number;
  'x tweetnacl': number | string;
}
const rows: Row[] = [];

function bench(op: string, size: number, fn: () => unknown, baselineMbs?: number): number {
  const t = timeSync(fn, { minMs, minCalls: 3 });
  const rate = mbPerSecond(size, t.msPerCall);
  rows.push({
    op,
    size: size >= 1e6 ? `${size / 1e6} MB` : `${size} B`,
    'MB/s': round3(rate),
    'ms/op': round3(t.msPerCall),
    'x tweetnacl': baselineMbs === undefined ? '' : round3(rate / baselineMbs),
  });
  return rate;
}

for (const size of sizes) {
  const data = randomBytes(size);
  const key = randomBytes(32);
  const nonce24 = randomBytes(24);
  const iv12 = randomBytes(12);

  // tweetnacl
  const sealedBox = nacl.secretbox(data, nonce24, key);
  const naclRate = bench('tweetnacl secretbox seal', size, () => nacl.secretbox(data, nonce24, key));
  bench('tweetnacl secretbox open', size, () => nacl.secretbox.open(sealedBox, nonce24, key), naclRate);
  const a = nacl.box.keyPair();
  const b = nacl.box.keyPair();
  bench('tweetnacl box (incl. X25519)', size, () => nacl.box(data, nonce24, b.publicKey, a.secretKey), naclRate);
  const signer = nacl.sign.keyPair();
  const sig = nacl.sign.detached(data, signer.secretKey);
  bench('tweetnacl sign.detached', size, () => nacl.sign.detached(data, signer.secretKey), naclRate);
  bench('tweetnacl sign.detached.verify', size, () => nacl.sign.detached.verify(data, sig, signer.publicKey), naclRate);

  // native
  // Separate calls per literal: @types/node's overloads do not accept the union of the two names.
  const cipherFor = (alg: 'chacha20-poly1305' | 'aes-256-gcm') =>
    alg === 'aes-256-gcm' ? createCipheriv(alg, key, iv12, { authTagLength: 16 }) : createCipheriv(alg, key, iv12, { authTagLength: 16 });
  const decipherFor = (alg: 'chacha20-poly1305' | 'aes-256-gcm') =>
    alg === 'aes-256-gcm' ? createDecipheriv(alg, key, iv12, { authTagLength: 16 }) : createDecipheriv(alg, key, iv12, { authTagLength: 16 });
  for (const alg of ['chacha20-poly1305', 'aes-256-gcm'] as const) {
    const c = cipherFor(alg);
    const ct = c.update(data);
    c.final();
    const tag = c.getAuthTag();
    bench(`native ${alg} seal`, size, () => {
      const e = cipherFor(alg);
      e.update(data);
      e.final();
      return e.getAuthTag();
    }, naclRate);
    bench(`native ${alg} open`, size, () => {
      const d = decipherFor(alg);
      d.setAuthTag(tag);
      const out = d.update(ct);
      d.final();
      return out;
    }, naclRate);
  }
  bench('native sha256', size, () => createHash('sha256').update(data).digest(), naclRate);
  const ed = generateKeyPairSync('ed25519');
  const edSig = sign(null, data, ed.privateKey);
  bench('native ed25519 sign', size, () => sign(null, data, ed.privateKey), naclRate);
  bench('native ed25519 verify', size, () => verify(null, data, ed.publicKey, edSig), naclRate);

  // the envelope end to end (per message: key schedule, AEAD, SHA-256, Ed25519, validation)
  const coordinator = generateIdentity();
  const client = generateIdentity();
  const delta = new Float32Array(Math.floor(size / 4));
  for (let i = 0; i < delta.length; i++) delta[i] = Math.random() - 0.5;
  const boxKey = publicIdentity(coordinator).boxKey;
  const envelope = sealUpdate({ header: { roundId: 'r', exampleCount: 1 }, delta }, { clientIdentity: client, coordinatorBoxKey: boxKey });
  const pub = publicIdentity(client);
  bench('fedtl sealUpdate', delta.byteLength, () => sealUpdate({ header: { roundId: 'r', exampleCount: 1 }, delta }, { clientIdentity: client, coordinatorBoxKey: boxKey }), naclRate);
  bench('fedtl openUpdate (verify+decrypt+validate)', delta.byteLength, () =>
    openUpdate(envelope, {
      coordinatorIdentity: coordinator,
      expected: { roundId: 'r', parameterCount: delta.length },
      resolveClient: () => pub,
    }), naclRate);
}

// Per-operation latency of the public-key primitives on a small message (what a handshake costs).
const latency: Record<string, string | number>[] = [];
function perOp(op: string, fn: () => unknown): void {
  const t = timeSync(fn, { minMs: 200, minCalls: 5 });
  latency.push({ op, 'µs/op': round3(t.msPerCall * 1000) });
}
{
  const msg = randomBytes(256);
  const kp = nacl.sign.keyPair();
  const s = nacl.sign.detached(msg, kp.secretKey);
  perOp('tweetnacl ed25519 sign (256 B)', () => nacl.sign.detached(msg, kp.secretKey));
  perOp('tweetnacl ed25519 verify (256 B)', () => nacl.sign.detached.verify(msg, s, kp.publicKey));
  const priv = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), kp.secretKey.subarray(0, 32)]), format: 'der', type: 'pkcs8' });
  const pubKey = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), kp.publicKey]), format: 'der', type: 'spki' });
  perOp('native ed25519 sign (256 B)', () => sign(null, msg, priv));
  perOp('native ed25519 verify (256 B)', () => verify(null, msg, pubKey, Buffer.from(s)));
  const a = nacl.box.keyPair();
  const b = nacl.box.keyPair();
  perOp('tweetnacl X25519 (box.before)', () => nacl.box.before(b.publicKey, a.secretKey));
  const xa = generateKeyPairSync('x25519');
  const xb = generateKeyPairSync('x25519');
  perOp('native X25519', () => diffieHellman({ privateKey: xa.privateKey, publicKey: xb.publicKey }));
  perOp('tweetnacl sign.keyPair', () => nacl.sign.keyPair());
}

printTable(rows);
console.log();
printTable(latency);
const path = writeResults('crypto', { params: { sizes, minMs }, throughput: rows, latency });
console.log(`\nwrote ${path}`);
