import { describe, expect, it } from 'vitest';
import { epsilonFor, epsilonFromRdp, noiseMultiplierFor, rdpCurve, rdpSampledGaussian } from '../../../shared/privacy/accountant.ts';

describe('RDP accountant for the sampled Gaussian', () => {
  it('matches hand-computed RDP: q = 0.5, z = 1, α = 2 → log(¼ + ½ + ¼e)', () => {
    // A_2 = (1−q)² + 2q(1−q) + q²·e^{(4−2)/2} = 0.25 + 0.5 + 0.25e
    expect(rdpSampledGaussian(0.5, 1, 2)).toBeCloseTo(Math.log(0.75 + 0.25 * Math.E), 12);
    // q = 1 is the plain Gaussian mechanism: α / (2z²)
    expect(rdpSampledGaussian(1, 2, 3)).toBeCloseTo(3 / 8, 12);
    expect(rdpSampledGaussian(0, 2, 3)).toBe(0);
  });

  it('matches the published example q = 0.01, z = 1.0, 300 steps, δ = 1e-5 → ε = 2.39 at α = 5 (Opacus compute_dp_sgd_privacy docs, after TF Privacy)', () => {
    const orders = [2, 5, 10, 20, 100];
    const { epsilon, order } = epsilonFromRdp(rdpCurve(0.01, 1.0, 300, orders), 1e-5, orders);
    expect(epsilon).toBeCloseTo(2.39, 2);
    expect(order).toBe(5);
  });

  it('matches the published MNIST example: N = 60000, batch 256, z = 1.12, 60 epochs, δ = 1e-5, orders 10, 20, 100 → ε ≈ 2.95 (classic conversion)', () => {
    const orders = [10, 20, 100];
    const steps = Math.ceil((60 * 60000) / 256);
    const { epsilon } = epsilonFromRdp(rdpCurve(256 / 60000, 1.12, steps, orders), 1e-5, orders, 'classic');
    // 2.9416 here; the docs print 2.95 (their step count differs by rounding); within 0.015.
    expect(Math.abs(epsilon - 2.95)).toBeLessThan(0.015);
  });

  it('composes: ε grows with rounds and shrinks with noise; calibration inverts it', () => {
    const e10 = epsilonFor(0.1, 1, 10, 1e-5);
    const e20 = epsilonFor(0.1, 1, 20, 1e-5);
    expect(e20).toBeGreaterThan(e10);
    expect(epsilonFor(0.1, 2, 10, 1e-5)).toBeLessThan(e10);
    const z = noiseMultiplierFor(8, 0.1, 30, 1e-5);
    expect(epsilonFor(0.1, z, 30, 1e-5)).toBeLessThanOrEqual(8);
    expect(epsilonFor(0.1, z * 0.99, 30, 1e-5)).toBeGreaterThan(8);
  });

  it('refuses ε ≤ 0 and δ outside (0, 1)', () => {
    expect(() => noiseMultiplierFor(0, 0.1, 10, 1e-5)).toThrow(/target ε must be a finite number > 0/);
    expect(() => epsilonFor(0.1, 1, 10, 0)).toThrow(/δ must be in \(0, 1\)/);
  });
});
