import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { reconstruct, reconstructChecked, split } from '../../../shared/secagg/shamir.ts';
import { buildGraph, defaultDegree, defaultThreshold } from '../../../shared/secagg/graph.ts';

describe('Shamir sharing over GF(2^521 − 1)', () => {
  it('interpolates a hand-made polynomial: f(x) = 7 + 3x + 2x² through (1,12), (2,21), (3,34)', () => {
    // one chunk, one byte: the secret is the byte 7
    expect([...reconstruct([{ x: 1, y: [12] }, { x: 2, y: [21] }, { x: 3, y: [34] }], 3, 1)]).toEqual([7]);
    expect([...reconstruct([{ x: 3, y: [34] }, { x: 1, y: [12] }, { x: 2, y: [21] }], 3, 1)]).toEqual([7]);
    // modular: f(x) = 5 + (p − 1)x, i.e. 5 − x: f(1) = 4, f(2) = 3
    expect([...reconstruct([{ x: 1, y: [4] }, { x: 2, y: [3] }], 2, 1)]).toEqual([5]);
  });

  it('any t of n shares reconstruct a 32-byte secret; t − 1 do not', () => {
    const secret = new Uint8Array(randomBytes(32));
    const shares = split(secret, 4, [1, 2, 3, 4, 5, 6, 7]);
    for (const subset of [[0, 1, 2, 3], [6, 4, 2, 0], [3, 4, 5, 6]]) {
      expect(Buffer.from(reconstruct(subset.map((i) => shares[i]!), 4, 32)).equals(Buffer.from(secret))).toBe(true);
    }
    expect(() => reconstruct(shares.slice(0, 3), 4, 32)).toThrow(/needs 4 shares, got 3/);
    expect(() => split(secret, 8, [1, 2, 3])).toThrow(/threshold t = 8 exceeds the number of shares n = 3/);
  });

  it('locates an inconsistent share against the commitment and still recovers the secret', () => {
    const secret = new Uint8Array(randomBytes(32));
    const shares = split(secret, 3, [1, 2, 3, 4, 5]);
    const tampered = shares.map((s) => (s.x === 1 ? { x: 1, y: s.y.map((v) => (v + 1) % 67108859) } : s));
    const hex = Buffer.from(secret).toString('hex');
    const out = reconstructChecked(tampered, 3, 32, (c) => Buffer.from(c).toString('hex') === hex);
    expect(Buffer.from(out.secret).toString('hex')).toBe(hex);
    expect(out.badPoints).toEqual([1]);
  });

  it('fails loudly when no t shares match the commitment', () => {
    const secret = new Uint8Array(randomBytes(32));
    const shares = split(secret, 3, [1, 2, 3, 4]).map((s) => (s.x <= 2 ? { x: s.x, y: s.y.map((v) => (v + 4 + s.x) % 67108859) } : s));
    const hex = Buffer.from(secret).toString('hex');
    expect(() => reconstructChecked(shares, 3, 32, (c) => Buffer.from(c).toString('hex') === hex)).toThrow(/inconsistent shares/);
  });
});

describe('SecAgg+ graph', () => {
  it('degree grows as log n: 9 at n = 10 (complete), 20 at 100, 30 at 1000', () => {
    expect(defaultDegree(10)).toBe(9);
    expect(defaultDegree(100)).toBe(20);
    expect(defaultDegree(1000)).toBe(30);
    expect(defaultThreshold(20)).toBe(14); // ⌈2·21/3⌉
  });

  it('is symmetric, k-regular and the same for everyone who recomputes it', () => {
    const ids = Array.from({ length: 50 }, (_, i) => i.toString(16).padStart(16, '0'));
    const g = buildGraph('round-1', ids, 12);
    const again = buildGraph('round-1', [...ids].reverse(), 12);
    for (const id of ids) {
      const n = g.get(id)!;
      expect(n).toHaveLength(12);
      expect(n).not.toContain(id);
      for (const v of n) expect(g.get(v)).toContain(id);
      expect(again.get(id)).toEqual(n);
    }
    expect(buildGraph('round-2', ids, 12).get(ids[0]!)).not.toEqual(g.get(ids[0]!));
  });
});
