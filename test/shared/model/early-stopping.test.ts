import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { FedtlError } from '../../../shared/core/errors.ts';
import { augmenterFor, imageAugmenter, parseAugmentation, parseAugmentationJson, tokenDropout } from '../../../shared/model/augmentation.ts';
import { EarlyStopping } from '../../../shared/model/early-stopping.ts';
import { createRandom } from '../../../shared/math/random.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';

beforeAll(async () => {
  await selectBackend({ log: false });
});

describe('EarlyStopping', () => {
  it('keeps the best model and stops after `patience` rounds without improvement', () => {
    // Prepare
    const stopping = new EarlyStopping({ patience: 2, minDelta: 0.01 });
    const metrics = [0.5, 0.6, 0.605, null, 0.59, 0.7];

    // Execute
    const decisions = metrics.map((m, i) => stopping.observe(i + 1, m, Float32Array.of(i + 1)));

    // Assert: 0.605 is not 0.01 better than 0.6; a missing metric does not count; round 5 is the second stale round
    expect(decisions.map((d) => d.improved)).toEqual([true, true, false, false, false, true]);
    expect(decisions.map((d) => d.stop)).toEqual([false, false, false, false, true, false]);
    expect(stopping.bestRound).toBe(6);
    expect(Array.from(stopping.bestWeights!)).toEqual([6]);
  });

  it('copies the weights it keeps, minimises in min mode, and restores its state', () => {
    const stopping = new EarlyStopping({ mode: 'min', patience: 3 });
    const weights = Float32Array.of(1, 2);
    stopping.observe(1, 0.9, weights);
    weights[0] = 99;
    stopping.observe(2, 1.2, weights);
    expect(Array.from(stopping.bestWeights!)).toEqual([1, 2]);
    const resumed = new EarlyStopping({ mode: 'min', patience: 3 });
    resumed.restore(stopping.state(), stopping.bestWeights);
    expect(resumed.observe(3, 1.0, weights)).toEqual({ improved: false, stop: false });
    expect(resumed.observe(4, 1.0, weights)).toEqual({ improved: false, stop: true });
  });

  it('refuses a patience below 1 and a negative minDelta', () => {
    expect(() => new EarlyStopping({ patience: 0 })).toThrow(FedtlError);
    expect(() => new EarlyStopping({ minDelta: -1 })).toThrow(FedtlError);
  });
});

describe('augmentation', () => {
  it('drops tokens to padding at about the given rate and leaves the rest', async () => {
    const ids = tf.tensor2d(Float32Array.from({ length: 4000 }, (_, i) => 2 + (i % 50)), [40, 100]);
    const random = createRandom(1);
    const out = tokenDropout(0.25)(ids, () => random.nextFloat());
    const values = await out.data();
    const dropped = Array.from(values).filter((v) => v === 0).length;
    const kept = Array.from(values).every((v, i) => v === 0 || v === 2 + (i % 50));
    tf.dispose([ids, out]);
    expect(kept).toBe(true);
    expect(dropped / 4000).toBeGreaterThan(0.2);
    expect(dropped / 4000).toBeLessThan(0.3);
  });

  it('flips, crops and shifts images without changing the batch shape or leaking tensors', async () => {
    // Prepare: a 2×2 single-channel image [[1, 2], [3, 4]], always flipped (random() = 0 < ½)
    const image = tf.tensor2d([[1, 2, 3, 4]]);
    const before = tf.memory().numTensors;

    // Execute
    const flipped = imageAugmenter(2, 1, { flip: true })(image, () => 0);
    const cropped = imageAugmenter(2, 1, { cropPadding: 1 })(image, () => 0); // window at the top-left of the padded image
    const shifted = imageAugmenter(2, 1, { brightness: 0.5 })(image, () => 1); // shift +0.5

    // Assert
    expect(Array.from(await flipped.data())).toEqual([2, 1, 4, 3]);
    expect(Array.from(await cropped.data())).toEqual([0, 0, 0, 1]);
    expect(Array.from(await shifted.data())).toEqual([1.5, 2.5, 3.5, 4.5]);
    tf.dispose([flipped, cropped, shifted]);
    expect(tf.memory().numTensors).toBe(before);
    image.dispose();
  });

  it('applies only when the features are the raw input, and parses its spec strictly', () => {
    const text = { kind: 'text', sequenceLength: 4, vocabulary: [] } as const;
    expect(augmenterFor(text, true, { tokenDropout: 0.1 })).toBeTypeOf('function');
    expect(augmenterFor(text, false, { tokenDropout: 0.1 })).toBeUndefined();
    expect(augmenterFor({ kind: 'image', size: 8, channels: 1, range: [0, 1] }, true, { tokenDropout: 0.1 })).toBeUndefined();
    expect(parseAugmentation({ flip: true, cropPadding: 2 })).toEqual({ flip: true, cropPadding: 2 });
    expect(() => parseAugmentation({ rotate: 10 })).toThrow(/not an augmentation/);
    expect(() => parseAugmentation({ tokenDropout: 1 })).toThrow(FedtlError);
  });

  it('reads a --augment flag as JSON and refuses bad JSON or a bad spec with BAD_CONFIG naming the flag', () => {
    expect(parseAugmentationJson('{"flip":true,"cropPadding":2,"brightness":0.1}')).toEqual({ flip: true, cropPadding: 2, brightness: 0.1 });
    for (const bad of ['{flip:true}', '[1]', '{"cropPadding":-1}', '{"rotate":10}']) {
      let thrown: unknown;
      try {
        parseAugmentationJson(bad);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(FedtlError);
      expect((thrown as FedtlError).code).toBe('BAD_CONFIG');
      expect((thrown as FedtlError).message).toMatch(/^--augment/);
    }
  });
});
