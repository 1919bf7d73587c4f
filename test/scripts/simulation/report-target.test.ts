import { describe, expect, it } from 'vitest';
import { targetAccuracy } from '../../../scripts/commands/simulate-command.ts';
import { resolveConfig } from '../../../scripts/simulation/presets.ts';

describe('the report\'s target accuracy', () => {
  it('--target-accuracy takes a fraction or a percent', () => {
    expect(targetAccuracy('0.9')).toBe(0.9);
    expect(targetAccuracy('90')).toBe(0.9);
    expect(targetAccuracy('97.5 %')).toBeCloseTo(0.975, 12);
    expect(targetAccuracy('1')).toBe(1);
  });

  it('--target-accuracy refuses what is not an accuracy, naming the flag', () => {
    for (const bad of ['', '0', '-5', '150', 'ninety']) expect(() => targetAccuracy(bad)).toThrow(/--target-accuracy: expected a fraction in \(0, 1\] or a percent/);
  });

  it('the config refuses a target outside (0, 1] and keeps a valid one', () => {
    expect(() => resolveConfig('mnist-mlp', { targetAccuracy: 1.5 })).toThrow(/targetAccuracy must be in \(0, 1\], got 1.5/);
    expect(resolveConfig('mnist-mlp', { targetAccuracy: 0.95 }).targetAccuracy).toBe(0.95);
    expect(resolveConfig('mnist-mlp').targetAccuracy).toBeUndefined();
  });
});
