import { describe, expect, it } from 'vitest';
import { fineTuneRecipeFor, resolveConfig, withFineTuneRecipe } from '../../../scripts/simulation/presets.ts';
import { parseTrainableSet, type TrainableSetSpec } from '../../../shared/model/trainable-set.ts';

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

describe('imdb-glove’s fine-tuning recipe', () => {
  it('fine-tunes on the 100,000-word 512-token GloVe base with its own strategy, and refuses an unknown fineTuneBase with BAD_CONFIG', () => {
    const config = resolveConfig('imdb-glove');
    expect(config.base).toBe('glove-100d');
    const tuned = withFineTuneRecipe(config);
    expect(tuned.base).toBe('glove-100d-100000w-512t');
    expect(tuned.strategy).toBe(config.fineTuneStrategy!.strategy);
    // Feature extraction keeps the preset's base.
    expect(withFineTuneRecipe({ ...config, fineTune: undefined }).base).toBe('glove-100d');
    expect(() => resolveConfig('imdb-glove', { fineTuneBase: 'glove-100d-999x' })).toThrow(expect.objectContaining({ code: 'BAD_CONFIG', message: expect.stringContaining('glove-100d-999x') }));
  });

  it('decays the table’s rate by 0.9 a round after four head-only rounds, up to the last round', () => {
    const { fineTune, rounds } = resolveConfig('imdb-glove');
    const stages = fineTune!.stages;
    expect(stages[0]).toEqual({ fromRound: 1, groups: [{ select: 'head' }] });
    expect(stages.at(-1)!.fromRound).toBe(rounds);
    const table = stages.slice(1).map((s) => s.groups.find((g) => g.select === 'pattern')!.lrMultiplier!);
    expect(table[0]).toBe(1);
    expect(table[2]).toBeCloseTo(0.81, 12);
    expect(parseTrainableSet(fineTune, { rounds })).toEqual(fineTune);
  });
});

describe('fineTuneRecipeFor', () => {
  const spec: TrainableSetSpec = {
    stages: [
      { fromRound: 1, groups: [{ select: 'head' }] },
      { fromRound: 3, groups: [{ select: 'head' }, { select: 'pattern', pattern: '^a$', lrMultiplier: 1 }] },
      { fromRound: 4, groups: [{ select: 'head' }, { select: 'pattern', pattern: '^a$', lrMultiplier: 0.5 }] },
      { fromRound: 6, groups: [{ select: 'head' }, { select: 'pattern', pattern: '^a$', lrMultiplier: 0.25 }] },
      { fromRound: 7, groups: [{ select: 'head' }, { select: 'pattern', pattern: '^a$', lrMultiplier: 0.25 }, { select: 'top', count: 1 }] },
    ],
  };

  it('drops rate-only stages past the last round and keeps the spec when every stage runs', () => {
    expect(fineTuneRecipeFor(spec, 7)).toBe(spec);
    // Round 7 widens the set: kept, so a 5-round run is refused as before; round 6 only lowers a rate: dropped.
    expect(fineTuneRecipeFor(spec, 5).stages.map((s) => s.fromRound)).toEqual([1, 3, 4, 7]);
    expect(() => parseTrainableSet(fineTuneRecipeFor(spec, 5), { rounds: 5 })).toThrow(expect.objectContaining({ code: 'BAD_CONFIG', message: expect.stringContaining('past the last round') }));
    const { fineTune } = resolveConfig('imdb-glove');
    const short = fineTuneRecipeFor(fineTune!, 20);
    expect(short.stages.map((s) => s.fromRound)).toEqual(Array.from({ length: 20 }, (_, k) => k + 1).filter((r) => r === 1 || r >= 5));
    expect(parseTrainableSet(short, { rounds: 20 })).toEqual(short);
  });
});
