import { describe, expect, it } from 'vitest';
import { median } from '../../../shared/math/index.ts';

describe('median', () => {
  it('is the middle value of an odd count and the mean of the middle two of an even count', () => {
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
  });

  it('sorts numerically, not as strings, and accepts typed arrays', () => {
    expect(median([10, 9, 100])).toBe(10);
    expect(median(Int32Array.from([-3, 20, 4, 8]))).toBe(6);
  });

  it('leaves its input unchanged', () => {
    const values = [3, 1, 2];
    median(values);
    expect(values).toEqual([3, 1, 2]);
  });

  it('refuses an empty list', () => {
    expect(() => median([])).toThrow(RangeError);
  });
});
