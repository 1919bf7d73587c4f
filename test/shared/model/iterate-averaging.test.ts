import { describe, expect, it } from 'vitest';
import { FedtlError } from '../../../shared/core/errors.ts';
import { averagingWindow, checkedTailFraction, IterateAverage } from '../../../shared/model/iterate-averaging.ts';

describe('averagingWindow', () => {
  it('averages the last ⌈n · f⌉ rounds of the stage a round belongs to', () => {
    // One stage of 8 rounds: the second half is rounds 5–8 (4 = ⌈8 · 0.5⌉).
    expect(averagingWindow(1, [1], 8, 0.5)).toEqual({ stageStart: 1, stageEnd: 8, from: 5 });
    expect(averagingWindow(8, [1], 8, 0.5)).toEqual({ stageStart: 1, stageEnd: 8, from: 5 });
    // Stages 1–2 and 3–8 (the main job's probe then fine-tuning): ⌈2 · 0.5⌉ = 1, ⌈6 · 0.5⌉ = 3.
    expect(averagingWindow(2, [1, 3], 8, 0.5)).toEqual({ stageStart: 1, stageEnd: 2, from: 2 });
    expect(averagingWindow(3, [1, 3], 8, 0.5)).toEqual({ stageStart: 3, stageEnd: 8, from: 6 });
    // An odd stage rounds the averaged count up: 7 rounds at 0.5 → 4 (rounds 5–11 of a stage 5–11 → 8–11).
    expect(averagingWindow(9, [1, 5], 11, 0.5)).toEqual({ stageStart: 5, stageEnd: 11, from: 8 });
    // 10 · 0.3 is 3.0000000000000004 in floating point: still 3 rounds.
    expect(averagingWindow(10, [1], 10, 0.3).from).toBe(8);
    // The whole stage with 1; at least one round however small the fraction.
    expect(averagingWindow(4, [1, 3], 8, 1).from).toBe(3);
    expect(averagingWindow(4, [1, 3], 8, 0.01).from).toBe(8);
  });

  it('refuses a round outside the run and a schedule that does not start at round 1', () => {
    expect(() => averagingWindow(0, [1], 8, 0.5)).toThrow(/outside 1…8/);
    expect(() => averagingWindow(9, [1], 8, 0.5)).toThrow(/outside 1…8/);
    expect(() => averagingWindow(1, [2], 8, 0.5)).toThrow(/first stage must start at round 1/);
  });
});

describe('checkedTailFraction', () => {
  it('defaults to the second half and refuses values outside (0, 1]', () => {
    expect(checkedTailFraction(undefined)).toBe(0.5);
    expect(checkedTailFraction(1)).toBe(1);
    for (const bad of [0, -0.5, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => checkedTailFraction(bad)).toThrow(FedtlError);
      expect(() => checkedTailFraction(bad)).toThrow(/tailFraction must be in \(0, 1\]/);
    }
  });
});

describe('IterateAverage', () => {
  it('is the mean of the window’s iterates, by hand', () => {
    // Prepare: 4 rounds, one stage, the last half averaged (rounds 3 and 4)
    const average = new IterateAverage({ tailFraction: 0.5 }, [1], 4);
    const iterates = [
      [1, -2],
      [3, 0],
      [0.5, 4],
      [1.5, -1],
    ];

    // Execute + Assert: nothing before round 3, then (0.5 + 1.5) / 2 = 1 and (4 − 1) / 2 = 1.5
    average.observe(1, Float32Array.from(iterates[0]!));
    average.observe(2, Float32Array.from(iterates[1]!));
    expect(average.count).toBe(0);
    expect(average.model).toBeNull();
    average.observe(3, Float32Array.from(iterates[2]!));
    expect(average.count).toBe(1);
    expect([...average.model!]).toEqual([0.5, 4]);
    average.observe(4, Float32Array.from(iterates[3]!));
    expect(average.count).toBe(2);
    expect([...average.model!]).toEqual([1, 1.5]);
  });

  it('sums in float64: the mean of 0.1 three times is float32(0.1), not an accumulated rounding error', () => {
    const average = new IterateAverage({ tailFraction: 1 }, [1], 3);
    for (let round = 1; round <= 3; round++) average.observe(round, Float32Array.of(0.1, 1e8, 1));
    expect([...average.model!]).toEqual([Math.fround(0.1), 1e8, 1]);
  });

  it('restarts at a stage boundary: the fine-tuned model is never mixed with the probe’s', () => {
    // Prepare: stages 1–2 and 3–4, each averaged whole
    const average = new IterateAverage({ tailFraction: 1 }, [1, 3], 4);

    // Execute
    average.observe(1, Float32Array.of(10));
    average.observe(2, Float32Array.of(20));
    const probe = average.model;
    average.observe(3, Float32Array.of(1));
    const first = average.model;
    average.observe(4, Float32Array.of(3));

    // Assert: 15 over the probe; then only rounds 3 and 4: 1, then 2
    expect([...probe!]).toEqual([15]);
    expect([...first!]).toEqual([1]);
    expect(average.count).toBe(2);
    expect([...average.model!]).toEqual([2]);
  });

  it('drops a finished stage’s sum while the next stage has not reached its window', () => {
    // Stages 1–2 (window: round 2) and 3–8 (window: 6–8)
    const average = new IterateAverage({}, [1, 3], 8);
    average.observe(2, Float32Array.of(5));
    expect(average.count).toBe(1);
    average.observe(3, Float32Array.of(7));
    expect(average.count).toBe(0);
    expect(average.model).toBeNull();
  });

  it('restores its state exactly and refuses a state that does not fit', () => {
    // Prepare
    const average = new IterateAverage({ tailFraction: 1 }, [1], 3);
    average.observe(1, Float32Array.of(0.1, 0.2));
    average.observe(2, Float32Array.of(0.3, 0.7));
    const resumed = new IterateAverage({ tailFraction: 1 }, [1], 3);

    // Execute
    resumed.restore(average.state(), 2);
    average.observe(3, Float32Array.of(1, 2));
    resumed.observe(3, Float32Array.of(1, 2));

    // Assert: the same bits
    expect(Buffer.from(resumed.model!.buffer).equals(Buffer.from(average.model!.buffer))).toBe(true);
    expect(() => resumed.restore(average.state(), 3)).toThrow(/does not fit a model of 3 values/);
    expect(() => resumed.restore({ from: 1, count: 0, sum: Float64Array.of(1, 2) }, 2)).toThrow(FedtlError);
    expect(() => resumed.restore({ from: 1, count: 2, sum: null }, 2)).toThrow(FedtlError);
    expect(() => resumed.restore({ from: -1, count: 0, sum: null }, 2)).toThrow(FedtlError);
  });

  it('refuses bad options at construction', () => {
    expect(() => new IterateAverage({ tailFraction: 0 }, [1], 4)).toThrow(/tailFraction/);
    expect(() => new IterateAverage({}, [1], 0)).toThrow(/rounds must be a positive integer/);
    expect(() => new IterateAverage({}, [3], 4)).toThrow(/first stage must start at round 1/);
  });
});
