import { describe, expect, it } from 'vitest';
import { FedtlError } from '../../../shared/core/errors.ts';
import { manifestFromShapes } from '../../../shared/weights/flat-weights.ts';
import { decodeRowSparse, embeddingEntryNames, encodeRowSparse } from '../../../shared/weights/sparse-rows.ts';

// A 5-word × 2-d table, then a dense 2 × 1 kernel and a bias.
const manifest = manifestFromShapes([
  { name: 'emb/embeddings', shape: [5, 2] },
  { name: 'head_output/kernel', shape: [2, 1] },
  { name: 'head_output/bias', shape: [1] },
]);
const sparse = embeddingEntryNames(manifest);
// Rows 1 and 3 of the table moved; the head moved everywhere.
const delta = Float32Array.from([0, 0, 0.5, -1, 0, 0, 0, 2, 0, 0, 0.25, 0.125, -3]);

describe('row-sparse deltas', () => {
  it('sends only the rows a client touched, and decodes to the same dense delta', () => {
    // Execute
    const bytes = encodeRowSparse(delta, manifest, sparse);
    const decoded = decodeRowSparse(bytes, manifest, sparse);

    // Assert: magic + (count + 2 indices + 2×2 values) + 3 dense values = 1 + 7 + 3 words
    expect([...sparse]).toEqual(['emb/embeddings']);
    expect(bytes.byteLength).toBe(11 * 4);
    expect(Array.from(new Uint32Array(bytes.buffer, 4, 3))).toEqual([2, 1, 3]);
    expect(Array.from(decoded)).toEqual(Array.from(delta));
  });

  it('decodes from an unaligned buffer (as socket.io may deliver it)', () => {
    const bytes = encodeRowSparse(delta, manifest, sparse);
    const shifted = new Uint8Array(bytes.byteLength + 1);
    shifted.set(bytes, 1);
    expect(Array.from(decodeRowSparse(shifted.subarray(1), manifest, sparse))).toEqual(Array.from(delta));
  });

  it.each([
    ['truncated', (b: Uint8Array) => b.subarray(0, b.byteLength - 4), 'runs past the end'],
    ['extra bytes', (b: Uint8Array) => Uint8Array.from([...b, 0, 0, 0, 0]), 'left over'],
    ['wrong magic', (b: Uint8Array) => Uint8Array.from(b, (v, i) => (i === 0 ? v ^ 1 : v)), 'wrong magic'],
    ['rows out of order', (b: Uint8Array) => withWord(b, 2, 3), 'out of order'],
    ['a row past the table', (b: Uint8Array) => withWord(b, 3, 9), 'outside [0, 5)'],
    ['more rows than the table', (b: Uint8Array) => withWord(b, 1, 6), 'lists 6 rows but has 5'],
    ['not whole words', (b: Uint8Array) => b.subarray(0, 6), 'not a whole number'],
  ])('refuses %s with BAD_MESSAGE', (_name, corrupt, message) => {
    const bytes = corrupt(encodeRowSparse(delta, manifest, sparse));
    let error: unknown;
    try {
      decodeRowSparse(bytes, manifest, sparse);
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(FedtlError);
    expect((error as FedtlError).code).toBe('BAD_MESSAGE');
    expect((error as Error).message).toContain(message);
  });
});

function withWord(bytes: Uint8Array, word: number, value: number): Uint8Array {
  const copy = bytes.slice();
  new DataView(copy.buffer).setUint32(word * 4, value, true);
  return copy;
}
