import { describe, expect, it } from 'vitest';
import { FedtlError } from '../../../shared/core/errors.ts';
import { createRandom } from '../../../shared/math/index.ts';
import { AdaptiveClip } from '../../../shared/privacy/adaptive-clip.ts';
import { addGaussianNoise, clipToNorm, cryptoNormalSource, l2Norm } from '../../../shared/privacy/clip.ts';
import { clientNoiseStddev, ringClipRange } from '../../../shared/privacy/distributed-noise.ts';
import { PrivacyLedger, resolveDp } from '../../../shared/privacy/dp-fedavg.ts';

describe('clipping and noise', () => {
  it('clips a (3, 4) delta to norm 1 → (0.6, 0.8), leaves a short one alone', () => {
    const d = new Float32Array([3, 4]);
    expect(clipToNorm(d, 1)).toEqual({ norm: 5, clipped: true });
    expect(d[0]).toBeCloseTo(0.6, 5);
    expect(d[1]).toBeCloseTo(0.8, 5);
    expect(l2Norm(d)).toBeLessThanOrEqual(1);
    const short = new Float32Array([0.3, 0.4]);
    expect(clipToNorm(short, 1)).toEqual({ norm: expect.closeTo(0.5, 6), clipped: false });
    expect([...short]).toEqual([Math.fround(0.3), Math.fround(0.4)]);
  });

  it('refuses S <= 0', () => {
    expect(() => clipToNorm(new Float32Array(2), 0)).toThrow(/S must be a finite number > 0/);
  });

  it('CSPRNG noise has the requested mean and standard deviation', () => {
    const x = new Float64Array(200_000);
    addGaussianNoise(x, 2, cryptoNormalSource());
    const mean = x.reduce((a, b) => a + b, 0) / x.length;
    const sd = Math.sqrt(x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length);
    expect(Math.abs(mean)).toBeLessThan(0.03); // 5 standard errors (2/√200000 = 0.0045)
    expect(Math.abs(sd - 2)).toBeLessThan(0.02);
  });

  it('distributed noise: each of m clients adds σ/√m, so m of them sum to σ (hand-computed)', () => {
    expect(clientNoiseStddev(1.5, 2, 9)).toBeCloseTo(1, 12); // 1.5·2/3
    expect(ringClipRange(1.5, 2, 9)).toBeCloseTo(12, 12); // 2 + 10·1
  });
});

describe('adaptive clipping (Andrew et al. 2021)', () => {
  it('moves S geometrically toward the target quantile (hand-computed, noise-free draw)', () => {
    const clip = new AdaptiveClip({ initialClipNorm: 1, targetQuantile: 0.5, learningRate: 0.2 });
    // 8 of 10 unclipped, zero noise draw: S ← 1·exp(−0.2·(0.8 − 0.5)) = exp(−0.06)
    expect(clip.update(8, 10, () => 0)).toBeCloseTo(Math.exp(-0.06), 12);
    // 2 of 10: S ← S·exp(+0.06) = 1
    expect(clip.update(2, 10, () => 0)).toBeCloseTo(1, 12);
  });

  it('splits the noise budget: z_Δ = (z⁻² − (2σ_b)⁻²)^−½', () => {
    const clip = new AdaptiveClip({ initialClipNorm: 1 });
    // m = 100 → σ_b = 5; z = 1 → (1 − 1/100)^−½
    expect(clip.deltaNoiseMultiplier(1, 100)).toBeCloseTo((1 - 1 / 100) ** -0.5, 12);
    expect(() => clip.deltaNoiseMultiplier(10, 2)).toThrow(/leaves no privacy/);
  });

  it('converges near the median of the norms', () => {
    const rng = createRandom(3);
    const clip = new AdaptiveClip({ initialClipNorm: 0.1 });
    for (let r = 0; r < 200; r++) {
      let unclipped = 0;
      for (let k = 0; k < 100; k++) if (Math.exp(rng.normal() * 0.3) <= clip.clipNorm) unclipped++; // median norm 1
      clip.update(unclipped, 100, () => rng.normal());
    }
    expect(clip.clipNorm).toBeGreaterThan(0.8);
    expect(clip.clipNorm).toBeLessThan(1.25);
  });
});

describe('DP configuration and budget', () => {
  const plan = { population: 1000, clientsPerRound: 100, rounds: 30 };

  it('calibrates z from ε and refuses bad input with a clear error', () => {
    const dp = resolveDp({ clipNorm: 1, targetEpsilon: 8, delta: 1e-5 }, plan);
    expect(dp.plannedEpsilon).toBeLessThanOrEqual(8);
    expect(dp.budgetEpsilon).toBe(8);
    expect(dp.samplingRate).toBe(0.1);
    const code = (fn: () => unknown) => {
      try {
        fn();
        return 'ok';
      } catch (e) {
        return `${(e as FedtlError).code}: ${(e as Error).message}`;
      }
    };
    expect(code(() => resolveDp({ clipNorm: 0, noiseMultiplier: 1 }, plan))).toMatch(/^BAD_CONFIG: --dp-clip S must be/);
    expect(code(() => resolveDp({ clipNorm: -1, noiseMultiplier: 1 }, plan))).toMatch(/^BAD_CONFIG/);
    expect(code(() => resolveDp({ clipNorm: 1, targetEpsilon: 0 }, plan))).toMatch(/^BAD_CONFIG: --dp-epsilon ε must be a finite number > 0/);
    expect(code(() => resolveDp({ clipNorm: 1, targetEpsilon: -2 }, plan))).toMatch(/^BAD_CONFIG/);
    expect(code(() => resolveDp({ clipNorm: 1 }, plan))).toMatch(/needs --dp-noise-multiplier or --dp-epsilon/);
    // 30 rounds were planned for ε = 8; after they ran, the budget is spent
    expect(code(() => resolveDp({ clipNorm: 1, targetEpsilon: 8 }, { ...plan, roundsDone: 30 }))).toMatch(/^PRIVACY_BUDGET: the privacy budget ε = 8 is already spent/);
  });

  it('the ledger charges rounds, reports per-round and cumulative ε, and refuses the round past the budget', () => {
    const ledger = new PrivacyLedger({ delta: 1e-5, budgetEpsilon: 3 });
    let round = 1;
    for (; ; round++) {
      try {
        ledger.checkBudget(round, 0.1, 1);
      } catch (e) {
        expect((e as FedtlError).code).toBe('PRIVACY_BUDGET');
        expect((e as Error).message).toMatch(new RegExp(`round ${round} would raise ε .* over the budget ε = 3`));
        break;
      }
      const rec = ledger.charge(round, 0.1, 1, 1);
      expect(rec.epsilonTotal).toBeLessThanOrEqual(3);
      expect(rec.epsilonRound).toBeLessThanOrEqual(rec.epsilonTotal + 1e-12);
    }
    expect(round).toBeGreaterThan(2);
    const restored = PrivacyLedger.restore(ledger.records, { delta: 1e-5, budgetEpsilon: 3 });
    expect(restored.epsilon).toBeCloseTo(ledger.epsilon, 12);
  });
});
