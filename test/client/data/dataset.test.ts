import { describe, expect, it } from 'vitest';
import { classCounts, createDataset, fingerprintContent, selectClasses, subset, type LabeledDataset } from '../../../client/data/dataset.ts';

function tensorDataset(values: number[], rowSize: number, labels: number[], classNames = ['a', 'b']): LabeledDataset {
  return createDataset({ name: 'toy', examples: { kind: 'tensor', rows: Float32Array.from(values), rowSize }, labels: Int32Array.from(labels), classNames });
}

describe('createDataset', () => {
  it('counts examples of every kind', () => {
    // Prepare / Execute / Assert
    const text = createDataset({ name: 't', examples: { kind: 'text', texts: ['x', 'y', 'z'] }, labels: Int32Array.from([0, 1, 0]), classNames: ['n', 'p'] });
    const image = createDataset({ name: 'i', examples: { kind: 'image', pixels: new Uint8Array(2 * 4 * 3 * 1), width: 4, height: 3, channels: 1 }, labels: Int32Array.from([0, 0]), classNames: ['only'] });
    const tensor = tensorDataset([1, 2, 3, 4, 5, 6], 3, [0, 1]);
    expect([text.size, image.size, tensor.size]).toEqual([3, 2, 2]);
    expect(text.fingerprint).toMatch(/^[0-9a-f]{64}$/);
  });

  it('refuses inconsistent parts with BAD_DATA', () => {
    expect(() => tensorDataset([1, 2, 3], 2, [0])).toThrow(expect.objectContaining({ code: 'BAD_DATA' }));
    expect(() => tensorDataset([1, 2], 2, [0, 1])).toThrow(/1 examples but 2 labels/);
    expect(() => tensorDataset([1, 2], 2, [2])).toThrow(/label 2, outside 0\.\.1/);
    expect(() => tensorDataset([1, 2], 2, [0], ['a', 'a'])).toThrow(/duplicate class names/);
    expect(() => tensorDataset([1, Number.NaN], 2, [0])).toThrow(/not finite/);
    expect(() => createDataset({ name: 'i', examples: { kind: 'image', pixels: new Uint8Array(5), width: 2, height: 2, channels: 1 }, labels: new Int32Array(1), classNames: ['a'] })).toThrow(/not a whole number/);
  });
});

describe('fingerprint', () => {
  it('is stable for equal content and ignores the name', () => {
    const a = tensorDataset([1, 2, 3, 4], 2, [0, 1]);
    const b = createDataset({ ...a, name: 'other name', examples: { kind: 'tensor', rows: Float32Array.from([1, 2, 3, 4]), rowSize: 2 } });
    expect(b.fingerprint).toBe(a.fingerprint);
  });

  it('changes when a value, a label, a class name or the shape changes', () => {
    const base = tensorDataset([1, 2, 3, 4], 2, [0, 1]);
    const variants = [
      tensorDataset([1, 2, 3, 5], 2, [0, 1]),
      tensorDataset([1, 2, 3, 4], 2, [1, 1]),
      tensorDataset([1, 2, 3, 4], 2, [0, 1], ['a', 'c']),
      tensorDataset([1, 2, 3, 4], 1, [0, 1, 0, 1]),
    ];
    const prints = new Set([base, ...variants].map((d) => d.fingerprint));
    expect(prints.size).toBe(5);
  });

  it('cannot be fooled by moving text between examples (length-prefixed encoding)', () => {
    const labels = Int32Array.from([0, 0]);
    const ab = fingerprintContent({ kind: 'text', texts: ['ab', 'c'] }, labels, ['x']);
    const a_bc = fingerprintContent({ kind: 'text', texts: ['a', 'bc'] }, labels, ['x']);
    expect(ab).not.toBe(a_bc);
  });
});

describe('subset', () => {
  it('copies the chosen examples in order and keeps every class name', () => {
    const ds = createDataset({
      name: 'img',
      examples: { kind: 'image', pixels: Uint8Array.from([10, 11, 20, 21, 30, 31]), width: 2, height: 1, channels: 1 },
      labels: Int32Array.from([0, 1, 2]),
      classNames: ['a', 'b', 'c'],
    });
    const picked = subset(ds, [2, 0]);
    expect(picked.examples).toMatchObject({ kind: 'image', width: 2, height: 1, channels: 1 });
    expect(picked.examples.kind === 'image' && Array.from(picked.examples.pixels)).toEqual([30, 31, 10, 11]);
    expect(Array.from(picked.labels)).toEqual([2, 0]);
    expect(picked.classNames).toEqual(['a', 'b', 'c']);
    expect(classCounts(picked)).toEqual([1, 0, 1]);
    expect(picked.fingerprint).not.toBe(ds.fingerprint);
    // the copy is independent of the source
    if (picked.examples.kind === 'image') picked.examples.pixels[0] = 0;
    expect(ds.examples.kind === 'image' && ds.examples.pixels[4]).toBe(30);
  });

  it('subsets text and tensor examples', () => {
    const text = createDataset({ name: 't', examples: { kind: 'text', texts: ['x', 'y', 'z'] }, labels: Int32Array.from([0, 1, 0]), classNames: ['n', 'p'] });
    expect(subset(text, [1, 1]).examples).toEqual({ kind: 'text', texts: ['y', 'y'] });
    const tensor = tensorDataset([1, 2, 3, 4, 5, 6], 2, [0, 1, 0]);
    const rows = subset(tensor, [1]).examples;
    expect(rows.kind === 'tensor' && Array.from(rows.rows)).toEqual([3, 4]);
  });

  it('refuses indices outside the dataset', () => {
    const ds = tensorDataset([1, 2], 1, [0, 1]);
    expect(() => subset(ds, [0, 2])).toThrow(expect.objectContaining({ code: 'BAD_DATA', message: expect.stringContaining("'toy'") }));
    expect(() => subset(ds, [0.5])).toThrow(/index 0.5/);
  });
});

describe('selectClasses', () => {
  const rows = createDataset({
    name: 'rows',
    examples: { kind: 'tensor', rows: Float32Array.from({ length: 8 }, (_, i) => i), rowSize: 1 },
    labels: Int32Array.of(0, 1, 2, 3, 0, 1, 2, 3),
    classNames: ['a', 'b', 'c', 'd'],
  });

  it('keeps the chosen classes in order, relabelled in the order given', () => {
    const picked = selectClasses(rows, [3, 1]);
    expect(picked.classNames).toEqual(['d', 'b']);
    expect(Array.from(picked.labels)).toEqual([1, 0, 1, 0]);
    expect(picked.examples.kind === 'tensor' && Array.from(picked.examples.rows)).toEqual([1, 3, 5, 7]);
  });

  it('samples a seeded subset with a limit, the same for the same seed', () => {
    const a = selectClasses(rows, [0, 2], { limit: 2, seed: 4 });
    expect(a.size).toBe(2);
    expect(a.fingerprint).toBe(selectClasses(rows, [0, 2], { limit: 2, seed: 4 }).fingerprint);
    expect(Array.from(a.labels).every((l) => l === 0 || l === 1)).toBe(true);
  });

  it('refuses empty, repeated or unknown classes', () => {
    expect(() => selectClasses(rows, [])).toThrow(/distinct class indices in 0..3/);
    expect(() => selectClasses(rows, [1, 1])).toThrow(/distinct/);
    expect(() => selectClasses(rows, [4])).toThrow(/distinct/);
  });
});
