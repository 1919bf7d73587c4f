import { createHash, sign } from 'node:crypto';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { FedtlError } from '../../../shared/core/errors.ts';
import type { Identity } from '../../../shared/crypto/identity.ts';
import { generateIdentity, publicIdentity } from '../../../shared/crypto/identity.ts';
import {
  type ExpectedUpdate,
  type OpenUpdateOptions,
  openUpdate,
  openUpdateAsync,
  openUpdateInto,
  openUpdateRows,
  sealUpdate,
} from '../../../shared/crypto/update-envelope.ts';
import { manifestFromShapes } from '../../../shared/weights/flat-weights.ts';
import { sparseToDense, type SparseDelta } from '../../../shared/weights/sparse-rows.ts';

const coordinator = generateIdentity();
const client = generateIdentity();
const other = generateIdentity();
const P = 1000;

function makeDelta(n = P): Float32Array {
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = Math.sin(i) * 0.01;
  return d;
}

function registry(...ids: Identity[]) {
  const map = new Map(ids.map((id) => [publicIdentity(id).clientId, publicIdentity(id)]));
  return (clientId: string) => map.get(clientId);
}

function options(overrides: Partial<OpenUpdateOptions> = {}, expected: Partial<ExpectedUpdate> = {}): OpenUpdateOptions {
  return {
    coordinatorIdentity: coordinator,
    expected: { roundId: 'r1', parameterCount: P, ...expected },
    resolveClient: registry(client, other),
    ...overrides,
  };
}

function seal(delta: Float32Array = makeDelta(), from: Identity = client, roundId = 'r1'): Uint8Array {
  return sealUpdate(
    { header: { roundId, exampleCount: 42, metrics: { loss: 0.5, accuracy: 0.9 } }, delta },
    { clientIdentity: from, coordinatorBoxKey: publicIdentity(coordinator).boxKey },
  );
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof FedtlError) return error.code;
    throw error;
  }
  return 'OK';
}

// Frame offsets, mirrored from the format doc in update-envelope.ts.
function layout(bytes: Uint8Array) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(8, true);
  const headerEnd = 16 + headerLength;
  return { headerEnd, ctStart: headerEnd + 64 };
}

/** Re-signs a frame with `signer` after editing its header, as a forger holding a signing key could. */
function resign(bytes: Uint8Array, signer: Identity): Uint8Array {
  const out = new Uint8Array(bytes);
  const { headerEnd, ctStart } = layout(out);
  const ctHash = createHash('sha256').update(out.subarray(ctStart)).digest();
  const msg = Buffer.concat([Buffer.from('fedtl/update-signature/v1\0', 'latin1'), out.subarray(0, headerEnd), ctHash]);
  out.set(nacl.sign.detached(msg, signer.signing.secretKey), headerEnd);
  return out;
}

function replaceHeader(bytes: Uint8Array, edit: (h: Record<string, unknown>) => void): Uint8Array {
  const { headerEnd } = layout(bytes);
  const header = JSON.parse(Buffer.from(bytes.subarray(16, headerEnd)).toString('utf8')) as Record<string, unknown>;
  edit(header);
  const json = Buffer.from(JSON.stringify(header));
  const out = Buffer.concat([bytes.subarray(0, 16), json, bytes.subarray(headerEnd)]);
  out.writeUInt32LE(json.length, 8);
  return new Uint8Array(out);
}

describe('update envelope round trip', () => {
  it('opens what the client sealed, with header and exact floats', () => {
    const delta = makeDelta();
    const opened = openUpdate(seal(delta), options());
    expect(Array.from(opened.delta)).toEqual(Array.from(delta));
    expect(opened.delta.byteOffset % 4).toBe(0);
    expect(opened.header).toMatchObject({
      v: 1,
      roundId: 'r1',
      clientId: publicIdentity(client).clientId,
      exampleCount: 42,
      parameterCount: P,
      metrics: { loss: 0.5, accuracy: 0.9 },
    });
    expect(opened.header.updateId).toMatch(/^[0-9a-f]{32}$/);
    let sumSq = 0;
    for (const x of delta) sumSq += x * x;
    expect(opened.stats.l2Norm).toBeCloseTo(Math.sqrt(sumSq), 6);
  });

  it('gives every envelope a fresh update id, and different ciphertexts for equal deltas', () => {
    const a = openUpdate(seal(), options()).header.updateId;
    const b = openUpdate(seal(), options()).header.updateId;
    expect(a).not.toBe(b);
  });

  it('openUpdateInto hands the delta to the callback; openUpdateAsync matches openUpdate', async () => {
    const bytes = seal();
    const sum = openUpdateInto(bytes, options(), (d, h) => d.reduce((s, x) => s + x, 0) * h.exampleCount);
    const sync = openUpdate(bytes, options());
    expect(sum).toBeCloseTo(sync.delta.reduce((s, x) => s + x, 0) * 42, 6);
    const asyncOpened = await openUpdateAsync(bytes, options());
    expect(Array.from(asyncOpened.delta)).toEqual(Array.from(sync.delta));
  });

  it('opens a delta of several cipher blocks and an odd length, into a new array or the caller\'s', () => {
    const n = 40_001; // 160,004 bytes: two whole 64 KiB blocks and a partial one
    const delta = makeDelta(n);
    const bytes = seal(delta);
    const fresh = openUpdate(bytes, options({}, { parameterCount: n }));
    expect(Array.from(fresh.delta)).toEqual(Array.from(delta));
    let sumSq = 0;
    for (const x of delta) sumSq += x * x;
    expect(fresh.stats.l2Norm).toBeCloseTo(Math.sqrt(sumSq), 9);
    const into = new Float32Array(n).fill(7);
    const reused = openUpdate(bytes, options({ into }, { parameterCount: n }));
    expect(reused.delta).toBe(into);
    expect(Array.from(into)).toEqual(Array.from(delta));
    expect(reused.stats.l2Norm).toBe(fresh.stats.l2Norm);
    expect(code(() => openUpdate(bytes, options({ into: new Float32Array(n - 1) }, { parameterCount: n })))).toBe('INTERNAL');
  });

  it("native Ed25519 signatures are tweetnacl's byte for byte", () => {
    const msg = Buffer.from('interop');
    const seed = client.signing.secretKey.subarray(0, 32);
    const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
    const native = sign(null, msg, { key: der, format: 'der', type: 'pkcs8' });
    expect(Buffer.from(nacl.sign.detached(msg, client.signing.secretKey)).equals(native)).toBe(true);
  });
});

describe('update envelope rejections', () => {
  it('wrong coordinator key → DECRYPT_FAILED', () => {
    const wrong = generateIdentity();
    expect(code(() => openUpdate(seal(), options({ coordinatorIdentity: wrong })))).toBe('DECRYPT_FAILED');
  });

  it('sealed for the right key id but decrypted with another box key → DECRYPT_FAILED', async () => {
    // Same box public key id but a different secret: only the AEAD can catch this.
    const impostor: Identity = { signing: coordinator.signing, box: { publicKey: coordinator.box.publicKey, secretKey: other.box.secretKey } };
    expect(code(() => openUpdate(seal(), options({ coordinatorIdentity: impostor })))).toBe('DECRYPT_FAILED');
    await expect(openUpdateAsync(seal(), options({ coordinatorIdentity: impostor }))).rejects.toMatchObject({ code: 'DECRYPT_FAILED' });
  });

  it('tampered header → BAD_SIGNATURE', () => {
    const bytes = replaceHeader(seal(), (h) => {
      h['exampleCount'] = 1_000_000;
    });
    expect(code(() => openUpdate(bytes, options()))).toBe('BAD_SIGNATURE');
  });

  it('tampered ciphertext or tag → BAD_SIGNATURE, reported before the failed AEAD tag', async () => {
    const bytes = seal();
    const { ctStart } = layout(bytes);
    for (const at of [ctStart + 5, bytes.length - 1]) {
      const t = new Uint8Array(bytes);
      t[at] = (t[at] ?? 0) ^ 1;
      expect(code(() => openUpdate(t, options()))).toBe('BAD_SIGNATURE');
      await expect(openUpdateAsync(t, options())).rejects.toMatchObject({ code: 'BAD_SIGNATURE' });
    }
  });

  it('tampered ciphertext re-signed by the claimed client (leaked signing key only) → DECRYPT_FAILED', () => {
    const t = new Uint8Array(seal());
    const { ctStart } = layout(t);
    t[ctStart + 3] = (t[ctStart + 3] ?? 0) ^ 0x80;
    expect(code(() => openUpdate(resign(t, client), options()))).toBe('DECRYPT_FAILED');
  });

  it("signature by another client on this client's update → BAD_SIGNATURE", () => {
    expect(code(() => openUpdate(resign(seal(), other), options()))).toBe('BAD_SIGNATURE');
  });

  it('another client claiming this client id with its own keys → BAD_SIGNATURE', () => {
    const forged = replaceHeader(seal(makeDelta(), other), (h) => {
      h['clientId'] = publicIdentity(client).clientId;
    });
    expect(code(() => openUpdate(resign(forged, other), options()))).toBe('BAD_SIGNATURE');
  });

  it('unknown client → UNKNOWN_CLIENT; resolver errors pass through', () => {
    expect(code(() => openUpdate(seal(), options({ resolveClient: registry(other) })))).toBe('UNKNOWN_CLIENT');
    const revoked = () => {
      throw new FedtlError('REVOKED_CLIENT', 'revoked');
    };
    expect(code(() => openUpdate(seal(), options({ resolveClient: revoked })))).toBe('REVOKED_CLIENT');
    // A resolver returning another client's keys for this id must not be trusted.
    const confused = () => publicIdentity(other);
    expect(code(() => openUpdate(seal(), options({ resolveClient: confused })))).toBe('UNKNOWN_CLIENT');
  });

  it('truncated bytes → BAD_MESSAGE at every cut; trailing bytes too', () => {
    const bytes = seal(makeDelta(16));
    for (let cut = 0; cut < bytes.length; cut += 7) {
      expect(code(() => openUpdate(bytes.subarray(0, cut), options({}, { parameterCount: 16 })))).toBe('BAD_MESSAGE');
    }
    const longer = new Uint8Array(bytes.length + 1);
    longer.set(bytes);
    expect(code(() => openUpdate(longer, options({}, { parameterCount: 16 })))).toBe('BAD_MESSAGE');
  });

  it('garbage bytes → BAD_MESSAGE / PROTOCOL_VERSION / TOO_LARGE, never a crash', () => {
    const garbage = new Uint8Array(4096);
    for (let trial = 0; trial < 200; trial++) {
      for (let i = 0; i < garbage.length; i++) garbage[i] = (Math.random() * 256) | 0;
      if (trial % 2 === 0) garbage.set(Buffer.from('FTLU\x01\0\0\0', 'latin1'));
      expect(['BAD_MESSAGE', 'TOO_LARGE', 'PROTOCOL_VERSION']).toContain(code(() => openUpdate(garbage, options())));
    }
    const wrongVersion = new Uint8Array(seal());
    wrongVersion[4] = 2;
    expect(code(() => openUpdate(wrongVersion, options()))).toBe('PROTOCOL_VERSION');
    const huge = new Uint8Array(seal());
    new DataView(huge.buffer).setUint32(12, 0xfffffffc, true);
    expect(code(() => openUpdate(huge, options()))).toBe('TOO_LARGE');
  });

  it('malformed header fields → BAD_MESSAGE', () => {
    const cases: ((h: Record<string, unknown>) => void)[] = [
      (h) => (h['exampleCount'] = 0),
      (h) => (h['exampleCount'] = 1.5),
      (h) => (h['roundId'] = 'bad round id'),
      (h) => (h['metrics'] = { loss: 'high' }),
      (h) => (h['extra'] = 1),
      (h) => delete h['updateId'],
    ];
    for (const edit of cases) expect(code(() => openUpdate(replaceHeader(seal(), edit), options()))).toBe('BAD_MESSAGE');
  });

  it('wrong parameter count → BAD_SHAPE', () => {
    expect(code(() => openUpdate(seal(), options({}, { parameterCount: P + 1 })))).toBe('BAD_SHAPE');
  });

  it('other round → STALE_ROUND; over the example limit or clock window → BAD_MESSAGE', () => {
    expect(code(() => openUpdate(seal(makeDelta(), client, 'r0'), options()))).toBe('STALE_ROUND');
    expect(code(() => openUpdate(seal(), options({}, { maxExampleCount: 10 })))).toBe('BAD_MESSAGE');
    const later = () => Date.now() + 60_000;
    expect(code(() => openUpdate(seal(), options({}, { timestampWindowMs: 30_000, now: later })))).toBe('BAD_MESSAGE');
    expect(code(() => openUpdate(seal(), options({}, { timestampWindowMs: 30_000 })))).toBe('OK');
  });

  it('NaN and Inf → NON_FINITE (refused at sealing, and at opening if a client skips that check)', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const d = makeDelta();
      d[P - 1] = bad;
      expect(code(() => seal(d))).toBe('NON_FINITE');
      const bytes = sealRaw(d); // must not throw: the bad value is patched in after sealUpdate's scan
      expect(code(() => openUpdate(bytes, options()))).toBe('NON_FINITE');
    }
  });

  it('a refused envelope opened into a caller\'s buffer gives the same codes (tampered middle block, bad tag)', () => {
    const n = 40_001;
    const bytes = seal(makeDelta(n));
    const into = new Float32Array(n);
    const { ctStart } = layout(bytes);
    const tampered = new Uint8Array(bytes);
    tampered[ctStart + 70_000]! ^= 1; // in the second 64 KiB block
    expect(code(() => openUpdate(tampered, options({ into }, { parameterCount: n })))).toBe('BAD_SIGNATURE');
    // Re-signed by the client itself: the signature holds, the AEAD tag does not.
    expect(code(() => openUpdate(resign(tampered, client), options({ into }, { parameterCount: n })))).toBe('DECRYPT_FAILED');
  });

  it('range checks are exact at the boundary and name the first offending value', () => {
    const at = (edit: (d: Float32Array) => void, maxAbs: number): string => {
      const d = makeDelta();
      edit(d);
      try {
        openUpdate(sealRaw(d), options({}, { maxAbs }));
        return 'OK';
      } catch (error) {
        return error instanceof FedtlError ? `${error.code}: ${error.message}` : String(error);
      }
    };
    // |x| = maxAbs is allowed; the next float32 above it is not.
    expect(at((d) => (d[3] = -0.5), 0.5)).toBe('OK');
    expect(at((d) => (d[3] = 0.5 + 2 ** -24), 0.5)).toBe('OUT_OF_RANGE: delta[3] = 0.5000000596046448 exceeds the limit |x| <= 0.5');
    // Every value within the limit although their sum of squares is far above maxAbs².
    expect(at((d) => d.fill(0.01), 0.01)).toBe('OK');
    expect(at((d) => d.fill(-0.01), 0.0099)).toMatch(/^OUT_OF_RANGE: delta\[0\] = -0\.00999/);
    // The first bad value is the one named, whatever its kind.
    expect(at((d) => ((d[5] = NaN), (d[3] = 2e6)), 1e6)).toMatch(/^OUT_OF_RANGE: delta\[3\]/);
    expect(at((d) => ((d[5] = 2e6), (d[3] = NaN)), 1e6)).toBe('NON_FINITE: delta[3] is NaN; every value must be finite');
    // Infinity is refused even with no range limit at all.
    expect(at((d) => (d[9] = Infinity), Infinity)).toBe('NON_FINITE: delta[9] is Infinity; every value must be finite');
    expect(at((d) => (d[9] = -Infinity), Infinity)).toBe('NON_FINITE: delta[9] is -Infinity; every value must be finite');
  });

  it('values above maxAbs or an L2 norm above maxL2Norm → OUT_OF_RANGE', () => {
    const d = makeDelta();
    d[7] = 2e6;
    expect(code(() => openUpdate(seal(d), options()))).toBe('OUT_OF_RANGE');
    expect(code(() => openUpdate(seal(d), options({}, { maxAbs: 1e7 })))).toBe('OK');
    expect(code(() => openUpdate(seal(), options({}, { maxL2Norm: 0.01 })))).toBe('OUT_OF_RANGE');
  });
});

/**
 * Seals values that sealUpdate itself refuses (a modified client could), through the real cipher
 * path: the bad values are written into the delta by a metrics getter, which sealUpdate reads
 * after scanning the delta and before encrypting it.
 */
function sealRaw(delta: Float32Array): Uint8Array {
  const copy = new Float32Array(delta);
  const badAt: [number, number][] = [];
  copy.forEach((x, i) => {
    if (!Number.isFinite(x)) {
      badAt.push([i, x]);
      copy[i] = 0;
    }
  });
  return sealUpdateWithPatch(copy, () => badAt.forEach(([i, x]) => (copy[i] = x)));
}

function sealUpdateWithPatch(delta: Float32Array, patch: () => void): Uint8Array {
  // The header metrics getter runs after the delta scan and before encryption (see sealUpdate).
  const metrics = {};
  let patched = false;
  Object.defineProperty(metrics, 'loss', {
    enumerable: true,
    get: () => {
      if (!patched) {
        patched = true;
        patch();
      }
      return 0.5;
    },
  });
  return sealUpdate(
    { header: { roundId: 'r1', exampleCount: 42, metrics }, delta },
    { clientIdentity: client, coordinatorBoxKey: publicIdentity(coordinator).boxKey },
  );
}

describe('row-sparse payloads', () => {
  // A 40-row × 20 table, then a 20 × 2 kernel and a bias: 842 parameters.
  const manifest = manifestFromShapes([
    { name: 'words/embeddings', shape: [40, 20] },
    { name: 'head_output/kernel', shape: [20, 2] },
    { name: 'head_output/bias', shape: [2] },
  ]);
  const expected = { parameterCount: manifest.parameterCount, rowSparse: manifest };
  function tableDelta(rows: readonly number[]): Float32Array {
    const delta = new Float32Array(manifest.parameterCount);
    for (const row of rows) for (let d = 0; d < 20; d++) delta[row * 20 + d] = Math.cos(row + d) / 100;
    for (let i = 800; i < delta.length; i++) delta[i] = Math.sin(i) / 100;
    return delta;
  }
  const sealRows = (delta: Float32Array, rowSparse?: typeof manifest) =>
    sealUpdate({ header: { roundId: 'r1', exampleCount: 7 }, delta }, { clientIdentity: client, coordinatorBoxKey: publicIdentity(coordinator).boxKey, ...(rowSparse ? { rowSparse } : {}) });

  it('seals the table row-sparse when smaller; openUpdate gives the dense delta, openUpdateRows the sent rows, with the same norm', () => {
    // Prepare
    const delta = tableDelta([2, 3, 39]);

    // Execute
    const sparse = sealRows(delta, manifest);
    const dense = sealRows(delta);
    const opened = openUpdate(sparse, options({}, expected));
    const rows = openUpdateRows(sparse, options({}, expected));

    // Assert: 3 rows of (index + 20 floats) + the row count + magic + the head, not 842 floats
    expect(opened.header.encoding).toBe('row-sparse');
    expect(new DataView(sparse.buffer, sparse.byteOffset).getUint32(12, true)).toBe(4 * (1 + 1 + 3 * 21 + 42));
    expect(Array.from(opened.delta)).toEqual(Array.from(delta));
    expect(rows.delta).not.toBeInstanceOf(Float32Array);
    expect(Array.from(sparseToDense(rows.delta as SparseDelta))).toEqual(Array.from(delta));
    expect(opened.stats.l2Norm).toBeCloseTo(openUpdate(dense, options({}, expected)).stats.l2Norm, 12);
    expect(openUpdate(dense, options({}, expected)).header.encoding).toBeUndefined();
  });

  it('stays dense when the rows are not smaller (every row moved) or the manifest has no table', () => {
    const all = tableDelta(Array.from({ length: 40 }, (_, i) => i));
    expect(openUpdate(sealRows(all, manifest), options({}, expected)).header.encoding).toBeUndefined();
    const headOnly = manifestFromShapes([{ name: 'head_output/kernel', shape: [421, 2] }]);
    expect(openUpdate(sealRows(new Float32Array(842), headOnly), options({}, expected)).header.encoding).toBeUndefined();
  });

  it('a round that takes dense updates only refuses a row-sparse one → BAD_MESSAGE', () => {
    expect(code(() => openUpdate(sealRows(tableDelta([1]), manifest), options({}, { parameterCount: manifest.parameterCount })))).toBe('BAD_MESSAGE');
  });

  it('names the dense index of the first bad sent value, as the dense scan does', () => {
    const bad = tableDelta([4, 9]);
    bad[9 * 20 + 3] = 2;
    const message = (sealed: Uint8Array) => {
      try {
        openUpdate(sealed, options({}, { ...expected, maxAbs: 1 }));
      } catch (error) {
        return (error as FedtlError).message;
      }
      return 'opened';
    };
    const sparse = sealRows(bad, manifest);
    expect(openUpdate(sparse, options({}, expected)).header.encoding).toBe('row-sparse');
    expect(message(sparse)).toBe(message(sealRows(bad)));
    expect(message(sparse)).toContain(`delta[${9 * 20 + 3}] = 2`);
  });
});
