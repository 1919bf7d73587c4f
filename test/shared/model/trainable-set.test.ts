import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FedtlError } from '../../../shared/core/errors.ts';
import { blockKey, FEATURE_EXTRACTION, parseTrainableSet, resolveTrainableSet, stageForRound, trainableScheduleFromConfig } from '../../../shared/model/trainable-set.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';

let model: tf.LayersModel;

beforeAll(async () => {
  await selectBackend({ log: false });
  // MobileNet-style names: two blocks of conv + bn, then a top conv + bn.
  const input = tf.input({ shape: [4] });
  let x = input as tf.SymbolicTensor;
  for (const name of ['block_1_expand', 'block_1_expand_BN', 'block_2_project', 'block_2_project_BN', 'Conv_1', 'Conv_1_bn']) {
    x = (name.toLowerCase().endsWith('bn') ? tf.layers.batchNormalization({ name }) : tf.layers.dense({ units: 4, name })).apply(x) as tf.SymbolicTensor;
  }
  model = tf.model({ inputs: input, outputs: tf.layers.activation({ activation: 'relu', name: 'out_relu' }).apply(x) as tf.SymbolicTensor });
});
afterAll(() => model.dispose());

function badConfig(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(FedtlError);
    expect((error as FedtlError).code).toBe('BAD_CONFIG');
    return (error as Error).message;
  }
  throw new Error('expected a BAD_CONFIG error');
}

describe('trainable schedule', () => {
  it('defaults to feature extraction: the head alone from round 1', () => {
    const schedule = trainableScheduleFromConfig(undefined, model, 10);
    expect(parseTrainableSet(undefined)).toBe(FEATURE_EXTRACTION);
    expect(schedule.stages).toEqual([{ index: 0, fromRound: 1, headLrMultiplier: 1, layers: [] }]);
  });

  it('resolves top layers, top blocks and patterns in topological order, each with its multiplier', () => {
    // Prepare
    const spec = {
      stages: [
        { fromRound: 1, groups: [{ select: 'head', lrMultiplier: 2 }] },
        { fromRound: 3, groups: [{ select: 'top', count: 2, unit: 'layers', lrMultiplier: 0.1 }] },
        { fromRound: 5, groups: [{ select: 'top', count: 2, unit: 'blocks', lrMultiplier: 0.1 }, { select: 'pattern', pattern: '^block_1_', lrMultiplier: 0.01 }] },
      ],
    };

    // Execute
    const schedule = trainableScheduleFromConfig(spec, model, 8);

    // Assert
    expect(stageForRound(schedule, 2).headLrMultiplier).toBe(2);
    expect(stageForRound(schedule, 4).layers).toEqual([
      { name: 'Conv_1', lrMultiplier: 0.1 },
      { name: 'Conv_1_bn', lrMultiplier: 0.1 },
    ]);
    expect(stageForRound(schedule, 8).layers.map((l) => `${l.name}@${l.lrMultiplier}`)).toEqual([
      'block_1_expand@0.01',
      'block_1_expand_BN@0.01',
      'block_2_project@0.1',
      'block_2_project_BN@0.1',
      'Conv_1@0.1',
      'Conv_1_bn@0.1',
    ]);
    expect(blockKey('block_12_depthwise_BN')).toBe('block_12');
    expect(blockKey('Conv_1_bn')).toBe('Conv_1');
  });

  it('refuses a pattern that matches no layer, naming the layers there are', () => {
    const message = badConfig(() => trainableScheduleFromConfig({ stages: [{ fromRound: 1, groups: [{ select: 'pattern', pattern: '^conv5_' }] }] }, model, 5));
    expect(message).toContain('matches no layer');
    expect(message).toContain('Conv_1_bn');
  });

  it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY, '0.1'])('refuses the learning-rate multiplier %s', (multiplier) => {
    const message = badConfig(() => parseTrainableSet({ stages: [{ fromRound: 1, groups: [{ select: 'head', lrMultiplier: multiplier }] }] }));
    expect(message).toContain('lrMultiplier must be a finite number > 0');
  });

  it('refuses a schedule that narrows', () => {
    const spec = {
      stages: [
        { fromRound: 1, groups: [{ select: 'top', count: 2 }] },
        { fromRound: 4, groups: [{ select: 'top', count: 1 }] },
      ],
    };
    expect(badConfig(() => trainableScheduleFromConfig(spec, model, 10))).toContain('may only widen');
  });

  it('refuses a stage that starts past the last round, a first stage after round 1 and rounds out of order', () => {
    const late = { stages: [{ fromRound: 1, groups: [{ select: 'head' }] }, { fromRound: 11, groups: [{ select: 'top', count: 1 }] }] };
    expect(badConfig(() => trainableScheduleFromConfig(late, model, 10))).toContain('past the last round (10)');
    expect(badConfig(() => parseTrainableSet({ stages: [{ fromRound: 2, groups: [{ select: 'head' }] }] }))).toContain('must start at round 1');
    const unordered = { stages: [{ fromRound: 1, groups: [{ select: 'head' }] }, { fromRound: 1, groups: [{ select: 'head' }] }] };
    expect(badConfig(() => parseTrainableSet(unordered))).toContain('after the previous stage');
  });

  it('refuses base layers on a base without a LayersModel, and more top layers than the base has', () => {
    expect(badConfig(() => trainableScheduleFromConfig({ stages: [{ fromRound: 1, groups: [{ select: 'top', count: 1 }] }] }, null, 3))).toContain('only the head trains');
    expect(badConfig(() => trainableScheduleFromConfig({ stages: [{ fromRound: 1, groups: [{ select: 'top', count: 9 }] }] }, model, 3))).toContain('has 6 layers');
  });
});
