import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../scripts/simulation/presets.ts';

describe('a simulation config’s iterate averaging', () => {
  it('keeps a tail fraction in (0, 1] and refuses one outside with BAD_CONFIG', () => {
    expect(resolveConfig('mnist-mlp', { iterateAveraging: { tailFraction: 0.25 } }).iterateAveraging).toEqual({ tailFraction: 0.25 });
    expect(resolveConfig('mnist-mlp', { iterateAveraging: null }).iterateAveraging).toBeNull();
    for (const bad of [0, 1.5, Number.NaN]) {
      expect(() => resolveConfig('mnist-mlp', { iterateAveraging: { tailFraction: bad } })).toThrow(/iterate averaging tailFraction must be in \(0, 1\]/);
    }
  });

  it('is on by default for fashion-mobilenet (second half of each stage) and off with null, as --average-tail 0 sets it', () => {
    expect(resolveConfig('fashion-mobilenet', {}).iterateAveraging).toEqual({ tailFraction: 0.5 });
    expect(resolveConfig('fashion-mobilenet', { iterateAveraging: null }).iterateAveraging).toBeNull();
  });
});
