import { describe, expect, it } from 'vitest';
import { fineTuneOverrides } from '../../../scripts/commands/simulate-command.ts';
import { PRESETS } from '../../../scripts/simulation/presets.ts';

const imdb = PRESETS['imdb-glove']!;

describe('fineTuneOverrides (--fine-tune)', () => {
  it('a plain run takes the recipe, its own base and its strategy', () => {
    const o = fineTuneOverrides(imdb, {}, undefined);
    expect(o.base).toBe(imdb.fineTuneBase);
    expect(o.base).not.toBe(imdb.base);
    expect(o.strategy).toBe(imdb.fineTuneStrategy!.strategy);
    expect(o.trainable!.stages.length).toBe(imdb.fineTune!.stages.length);
  });

  it('a curve keeps the preset base and strategy for the whole run (its fine-tuning runs switch alone)', () => {
    const o = fineTuneOverrides(imdb, { curve: [100, 500] }, undefined);
    expect(o.base).toBeUndefined();
    expect(o.strategy).toBeUndefined();
    expect(o.trainable).toBeDefined();
  });

  it('--trainable keeps the preset base; --strategy wins over the recipe and flag params over its params', () => {
    expect(fineTuneOverrides(imdb, { trainable: '{}' }, undefined).base).toBeUndefined();
    expect(fineTuneOverrides(imdb, { strategy: 'fedavgm' }, undefined).strategy).toBeUndefined();
    const params = fineTuneOverrides(imdb, {}, { serverLearningRate: 0.5 }).strategyParams;
    expect(params).toMatchObject({ serverLearningRate: 0.5 });
  });

  it('cuts the recipe to the run, and refuses a preset without one', () => {
    const o = fineTuneOverrides(imdb, { rounds: 20 }, undefined);
    expect(o.trainable!.stages.every((stage) => stage.fromRound <= 20)).toBe(true);
    expect(() => fineTuneOverrides({ ...imdb, fineTune: undefined }, {}, undefined)).toThrow(/no fine-tuning recipe/);
  });
});
