import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { createDataset, type LabeledDataset } from '../../../client/data/dataset.ts';
import { loadMnist } from '../../../client/data/mnist.ts';
import { linearPlan, prepareInputs } from '../../../client/data/prepare-inputs.ts';

function images(pixels: number[], width: number, height: number, channels: number): LabeledDataset {
  const n = pixels.length / (width * height * channels);
  return createDataset({ name: 'img', examples: { kind: 'image', pixels: Uint8Array.from(pixels), width, height, channels }, labels: new Int32Array(n), classNames: ['a'] });
}

describe('linearPlan', () => {
  it('samples half-pixel centres: 2 → 4 reads 0, 0.25, 0.75, 1', () => {
    const plan = linearPlan(2, 4);
    // source = (o + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1)
    expect(Array.from(plan.lo)).toEqual([0, 0, 0, 1]);
    expect(Array.from(plan.hi)).toEqual([1, 1, 1, 1]);
    expect(Array.from(plan.weight)).toEqual([0, 0.25, 0.75, 0]);
  });

  it('maps a size onto itself exactly', () => {
    const plan = linearPlan(28, 28);
    expect(Array.from(plan.lo)).toEqual(Array.from({ length: 28 }, (_, i) => i));
    expect(plan.weight.every((w) => w === 0)).toBe(true);
  });
});

describe('prepareInputs for image bases', () => {
  it('upsamples a 2x2 gray image to 4x4 bilinearly, repeats the channel and scales into the range', () => {
    // Prepare: pixels 0, 255 / 255, 0 → range [0, 1] values 0, 1 / 1, 0
    const ds = images([0, 255, 255, 0], 2, 2, 1);
    // Execute
    const out = prepareInputs(ds, { kind: 'image', size: 4, channels: 3, range: [0, 1] });
    // Assert: row 0 samples y = 0 → along x: 0, .25, .75, 1 of the way from 0 to 1;
    // row 1 samples y = .25 → value(x) = .75·row0 + .25·row1.
    expect(out.kind).toBe('image');
    if (out.kind !== 'image') return;
    expect(out.shape).toEqual([1, 4, 4, 3]);
    const red = Array.from({ length: 16 }, (_, p) => out.data[p * 3]!);
    const expected = [
      [0, 0.25, 0.75, 1],
      [0.25, 0.375, 0.625, 0.75],
      [0.75, 0.625, 0.375, 0.25],
      [1, 0.75, 0.25, 0],
    ].flat();
    red.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 6));
    for (let p = 0; p < 16; p++) expect([out.data[p * 3 + 1], out.data[p * 3 + 2]]).toEqual([out.data[p * 3], out.data[p * 3]]);
  });

  it('scales into [-1, 1] and converts RGB to one channel by Rec. 601 luma', () => {
    const ds = images([255, 0, 0, 0, 0, 255], 1, 1, 3);
    const out = prepareInputs(ds, { kind: 'image', size: 1, channels: 1, range: [-1, 1] });
    if (out.kind !== 'image') throw new Error('expected image');
    expect(out.shape).toEqual([2, 1, 1, 1]);
    expect(out.data[0]).toBeCloseTo(-1 + 2 * 0.299, 5);
    expect(out.data[1]).toBeCloseTo(-1 + 2 * 0.114, 5);
  });

  it('matches tf.image.resizeBilinear(halfPixelCenters) on real MNIST digits', async () => {
    await tf.setBackend('cpu');
    const digits = await loadMnist({ split: 'test', limit: 4, seed: 9 });
    const size = 96;
    const ours = prepareInputs(digits, { kind: 'image', size, channels: 1, range: [0, 255] });
    if (ours.kind !== 'image' || digits.examples.kind !== 'image') throw new Error('expected images');
    const source = tf.tensor4d(Float32Array.from(digits.examples.pixels), [4, 28, 28, 1]);
    const reference = tf.image.resizeBilinear(source, [size, size], false, true);
    const expected = reference.dataSync();
    let maxDiff = 0;
    for (let i = 0; i < expected.length; i++) maxDiff = Math.max(maxDiff, Math.abs(expected[i]! - ours.data[i]!));
    tf.dispose([source, reference]);
    expect(maxDiff).toBeLessThan(1e-3);
  });

  it('prepares the chosen indices or a range, in order', () => {
    const ds = images([10, 20, 30], 1, 1, 1);
    const byIndex = prepareInputs(ds, { kind: 'image', size: 1, channels: 1, range: [0, 255] }, { indices: [2, 0] });
    expect(byIndex.kind === 'image' && Array.from(byIndex.data)).toEqual([30, 10]);
    const byRange = prepareInputs(ds, { kind: 'image', size: 1, channels: 1, range: [0, 255] }, { start: 1, end: 3 });
    expect(byRange.kind === 'image' && Array.from(byRange.data)).toEqual([20, 30]);
    expect(() => prepareInputs(ds, { kind: 'image', size: 1, channels: 1, range: [0, 1] }, { start: 2, end: 4 })).toThrow(expect.objectContaining({ code: 'BAD_DATA' }));
    expect(() => prepareInputs(ds, { kind: 'image', size: 1, channels: 1, range: [0, 1] }, { indices: [3] })).toThrow(/index 3/);
  });
});

describe('prepareInputs for tensor and text bases', () => {
  it('returns tensor rows, and flattens images /255 for a tensor base of matching size', () => {
    const rows = createDataset({ name: 'rows', examples: { kind: 'tensor', rows: Float32Array.from([1, 2, 3, 4]), rowSize: 2 }, labels: new Int32Array(2), classNames: ['a'] });
    const out = prepareInputs(rows, { kind: 'tensor', size: 2 }, { indices: [1] });
    expect(out).toEqual({ kind: 'tensor', data: Float32Array.from([3, 4]), shape: [1, 2] });
    const img = prepareInputs(images([0, 51, 255, 102], 2, 2, 1), { kind: 'tensor', size: 4 });
    expect(img).toEqual({ kind: 'tensor', data: Float32Array.from([0, 0.2, 1, 0.4]), shape: [1, 4] });
  });

  it('passes texts through for the base tokenizer', () => {
    const text = createDataset({ name: 'txt', examples: { kind: 'text', texts: ['a', 'b'] }, labels: new Int32Array(2), classNames: ['x'] });
    expect(prepareInputs(text, { kind: 'text', sequenceLength: 4, vocabulary: ['', '?'] }, { indices: [1] })).toEqual({ kind: 'text', texts: ['b'] });
  });

  it('refuses data that does not fit the base, naming the dataset', () => {
    const text = createDataset({ name: 'notes', examples: { kind: 'text', texts: ['a'] }, labels: new Int32Array(1), classNames: ['x'] });
    expect(() => prepareInputs(text, { kind: 'image', size: 4, channels: 3, range: [0, 1] })).toThrow(expect.objectContaining({ code: 'BAD_DATA', message: expect.stringContaining("'notes' holds text examples but the base expects image") }));
    expect(() => prepareInputs(images([1, 2], 2, 1, 1), { kind: 'tensor', size: 784 })).toThrow(/rows of 784/);
    expect(() => prepareInputs(images([1, 2], 1, 1, 2), { kind: 'image', size: 1, channels: 3, range: [0, 1] })).toThrow(expect.objectContaining({ code: 'BAD_SHAPE' }));
  });
});
