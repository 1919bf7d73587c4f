import { describe, expect, it } from 'vitest';
import { ClippedStrategy, clipToNorm } from '../../../shared/strategy/clipped-strategy.ts';
import { FedAvgM } from '../../../shared/strategy/fed-avg-m.ts';
import { FedAvg } from '../../../shared/strategy/fed-avg.ts';
import { decodeState, encodeState } from '../../../shared/strategy/strategy-state.ts';
import { StrategyWrapper } from '../../../shared/strategy/strategy-wrapper.ts';
import type { FitInstruction, Strategy } from '../../../shared/strategy/strategy.ts';

const update = (clientId: string, delta: number[], exampleCount: number) => ({ clientId, delta: Float32Array.from(delta), exampleCount, metrics: {} });

describe('ClippedStrategy', () => {
  it('clips each delta to norm C before the inner strategy averages (hand-computed)', () => {
    // Prepare: C = 1; a: [3, 4] (norm 5 → [0.6, 0.8]), 1 example; b: [0.5, 0] (within), 1 example.
    const strategy = new ClippedStrategy(new FedAvg({ minClients: 1 }), { clipNorm: 1 });
    const aggregation = strategy.aggregateFit(1, new Float32Array([0, 0]));
    // Execute
    aggregation.add(update('a', [3, 4], 1));
    aggregation.add(update('b', [0.5, 0], 1));
    // Assert: mean [(0.6 + 0.5)/2, 0.8/2] = [0.55, 0.4]
    const next = aggregation.finish();
    expect(next[0]).toBeCloseTo(0.55, 6);
    expect(next[1]).toBeCloseTo(0.4, 6);
    expect(strategy.name).toBe('clipped(fedavg)');
    expect(aggregation.count).toBe(2);
  });

  it('leaves a delta within the norm untouched, and refuses a bad norm', () => {
    const small = Float32Array.from([0.1, 0.2]);
    expect(clipToNorm(small, 1)).toBe(small);
    expect(() => new ClippedStrategy(new FedAvg(), { clipNorm: 0 })).toThrow(/clipNorm/);
  });

  it('nests the inner state, so a wrapped FedAvgM checkpoints and restores its velocity', () => {
    const first = new ClippedStrategy(new FedAvgM({ minClients: 1, serverMomentum: 0.5 }), { clipNorm: 100 });
    const a = first.aggregateFit(1, new Float32Array([0]));
    a.add(update('a', [2], 1));
    a.finish();
    const saved = JSON.parse(JSON.stringify(encodeState(first.state()))) as unknown;
    const second = new ClippedStrategy(new FedAvgM({ minClients: 1, serverMomentum: 0.5 }), { clipNorm: 100 });
    second.restore(decodeState(saved));
    // v = 0.5·2 + 1 = 2 → head 0 + 2
    const b = second.aggregateFit(2, new Float32Array([0]));
    b.add(update('a', [1], 1));
    expect(Array.from(b.finish())).toEqual([2]);
  });
});

describe('StrategyWrapper', () => {
  it('can change what clients are told without touching the inner strategy', () => {
    class Tagging extends StrategyWrapper {
      readonly wrapperName = 'tagging';
      override configureFit(...args: Parameters<Strategy['configureFit']>): FitInstruction[] {
        return this.inner.configureFit(...args).map((i) => ({ ...i, config: { ...i.config, extra: { ...i.config.extra, tag: 'x' } } }));
      }
    }
    const instructions = new Tagging(new FedAvg({ minClients: 2 })).configureFit(1, new Float32Array(1), [{ clientId: 'a' }, { clientId: 'b' }], () => 0.5);
    expect(instructions).toHaveLength(2);
    expect(instructions.every((i) => i.config.extra?.['tag'] === 'x' && i.config.learningRate === 0.01)).toBe(true);
  });

  it('withExtra keeps one config object per distinct config, so the round loop signs one request for clients told the same', () => {
    class Marking extends StrategyWrapper {
      readonly wrapperName = 'marking';
      override configureFit(...args: Parameters<Strategy['configureFit']>): FitInstruction[] {
        return StrategyWrapper.withExtra(this.inner.configureFit(...args), { mark: 1 });
      }
    }
    const candidates = ['a', 'b', 'c'].map((clientId) => ({ clientId }));
    const inner = new FedAvg({ minClients: 3 }).configureFit(1, new Float32Array(1), candidates, () => 0.5);
    const marked = new Marking(new FedAvg({ minClients: 3 })).configureFit(1, new Float32Array(1), candidates, () => 0.5);
    expect(new Set(inner.map((i) => i.config)).size).toBe(1);
    expect(new Set(marked.map((i) => i.config)).size).toBe(1);
    expect(marked[0]!.config).toEqual({ ...inner[0]!.config, extra: { mark: 1 } });
    expect(marked.map((i) => i.clientId)).toEqual(inner.map((i) => i.clientId));
  });
});

describe('FedAvgM', () => {
  it('applies v ← βv + Δ, w ← w + ηv over two rounds (hand-computed)', () => {
    // Prepare: β = 0.5, η = 1; round 1 mean Δ = 2; round 2 mean Δ = 1.
    const strategy = new FedAvgM({ minClients: 1, serverMomentum: 0.5 });
    const r1 = strategy.aggregateFit(1, new Float32Array([1]));
    r1.add(update('a', [1], 1));
    r1.add(update('b', [3], 1));
    // Execute + Assert: v = 2 → w = 3; then v = 0.5·2 + 1 = 2 → w = 5.
    expect(Array.from(r1.finish())).toEqual([3]);
    const r2 = strategy.aggregateFit(2, new Float32Array([3]));
    r2.add(update('a', [1], 4));
    expect(Array.from(r2.finish())).toEqual([5]);
  });

  it('resumes bit-identically from its state', () => {
    const run = (restoreAfter: number | null) => {
      let strategy = new FedAvgM({ minClients: 1, serverMomentum: 0.9 });
      let w: Float32Array = new Float32Array([0.1, -0.2, 0.3]);
      for (let round = 1; round <= 5; round++) {
        if (round === restoreAfter) {
          const saved = JSON.parse(JSON.stringify(encodeState(strategy.state()))) as unknown;
          strategy = new FedAvgM({ minClients: 1, serverMomentum: 0.9 });
          strategy.restore(decodeState(saved));
        }
        const a = strategy.aggregateFit(round, w);
        a.add(update('a', [Math.sin(round) / 7, 1 / (round + 3), -0.01 * round], 3 + round));
        a.add(update('b', [0.013, Math.cos(round) / 3, 1e-3], 5));
        w = a.finish();
      }
      return Array.from(w);
    };
    expect(run(3)).toEqual(run(null));
  });
});

describe('strategy state JSON', () => {
  it('round-trips arrays bit for bit, nested states and non-finite numbers', () => {
    const velocity = Float64Array.from([0.1, 1 / 3, -0, 1e-300]);
    const back = decodeState(JSON.parse(JSON.stringify(encodeState({ velocity, t: 3, inner: { m: Float64Array.from([2]), inf: Number.POSITIVE_INFINITY }, none: null }))));
    expect(Buffer.from((back!['velocity'] as Float64Array).buffer).equals(Buffer.from(velocity.buffer))).toBe(true);
    expect(back!['t']).toBe(3);
    expect((back!['inner'] as Record<string, unknown>)['inf']).toBe(Number.POSITIVE_INFINITY);
    expect(back!['none']).toBeNull();
    expect(() => decodeState([1])).toThrow(/expected an object/);
    expect(() => decodeState({ v: { $f64: 'AAA' } })).toThrow(/float64/);
  });
});

