import { describe, expect, it } from 'vitest';
import { ownsWholeBuffer } from '../../../shared/core/transfer.ts';

describe('ownsWholeBuffer', () => {
  it('is true only for a view spanning an ArrayBuffer of its own', () => {
    expect(ownsWholeBuffer(new Float32Array(4))).toBe(true);
    expect(ownsWholeBuffer(new Uint8Array(new ArrayBuffer(8)))).toBe(true);
    // A part of a larger buffer, a view starting past 0, a Buffer from Node's shared pool, shared memory.
    expect(ownsWholeBuffer(new Uint8Array(16).subarray(0, 8))).toBe(false);
    expect(ownsWholeBuffer(new Uint8Array(16).subarray(8))).toBe(false);
    expect(ownsWholeBuffer(Buffer.from('pooled'))).toBe(false);
    expect(ownsWholeBuffer(new Float32Array(new SharedArrayBuffer(16)))).toBe(false);
  });
});
