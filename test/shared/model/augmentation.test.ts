import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ineffectiveAugmentation } from '../../../shared/model/augmentation.ts';
import type { BaseInputSpec } from '../../../shared/model/frozen-base.ts';
import { resolveTrainableSet } from '../../../shared/model/trainable-set.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';

const IMAGE: BaseInputSpec = { kind: 'image', size: 8, channels: 3, range: [0, 1] };
const TEXT: BaseInputSpec = { kind: 'text', sequenceLength: 4, vocabulary: ['<pad>', '<oov>', 'a'] };

let model: tf.LayersModel;

beforeAll(async () => {
  await selectBackend({ log: false });
  // input → conv_1 → conv_2 → pooling: training conv_2 alone starts from conv_1's output, training
  // both starts from the raw input.
  const input = tf.input({ shape: [8, 8, 3] });
  const c1 = tf.layers.conv2d({ filters: 2, kernelSize: 3, padding: 'same', name: 'conv_1' }).apply(input) as tf.SymbolicTensor;
  const c2 = tf.layers.conv2d({ filters: 2, kernelSize: 3, padding: 'same', name: 'conv_2' }).apply(c1) as tf.SymbolicTensor;
  const pooled = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(c2) as tf.SymbolicTensor;
  model = tf.model({ inputs: input, outputs: pooled });
});
afterAll(() => model.dispose());

const topLayers = (count: number, fromRound = 1) => ({ fromRound, groups: [{ select: 'head' as const }, { select: 'top' as const, count, unit: 'layers' as const, lrMultiplier: 1 }] });

describe('ineffectiveAugmentation', () => {
  it('is null when a stage trains from the raw input, or when nothing is asked', () => {
    const schedule = resolveTrainableSet({ stages: [{ fromRound: 1, groups: [{ select: 'head' }] }, topLayers(2, 3)] }, model);
    expect(ineffectiveAugmentation(IMAGE, { flip: true, cropPadding: 2 }, model, schedule)).toBeNull();
    expect(ineffectiveAugmentation(IMAGE, {}, model, null)).toBeNull();
    expect(ineffectiveAugmentation(IMAGE, { flip: false, brightness: 0 }, model, null)).toBeNull();
  });

  it('says why when no stage trains from the raw input: the head alone, or the top layer only', () => {
    const topOnly = resolveTrainableSet({ stages: [topLayers(1)] }, model);
    for (const schedule of [null, topOnly]) {
      const message = ineffectiveAugmentation(IMAGE, { flip: true }, model, schedule);
      expect(message).toContain('{"flip":true}');
      expect(message).toContain('the whole base');
      expect(message).toContain('no stage of the trainable set does');
    }
    // A base without a model (identity) trains no layer of its own.
    expect(ineffectiveAugmentation(IMAGE, { cropPadding: 1 }, null, null)).toContain('is ignored');
  });

  it('says why when the spec asks nothing of the input kind', () => {
    expect(ineffectiveAugmentation(TEXT, { flip: true }, model, null)).toContain('nothing that applies to text input (tokenDropout)');
    expect(ineffectiveAugmentation(IMAGE, { tokenDropout: 0.2 }, model, null)).toContain('nothing that applies to image input (flip, cropPadding or brightness)');
  });
});
