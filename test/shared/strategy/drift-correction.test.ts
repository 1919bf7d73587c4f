import { describe, expect, it } from 'vitest';
import { ClippedStrategy } from '../../../shared/strategy/clipped-strategy.ts';
import { correctedConfig, DRIFT_DEFAULTS, DriftCorrected, driftInstruction, gradientConfig } from '../../../shared/strategy/drift-correction.ts';
import { FedAvgM } from '../../../shared/strategy/fed-avg-m.ts';
import { FedAvg } from '../../../shared/strategy/fed-avg.ts';
import { createStrategy } from '../../../shared/strategy/registry.ts';
import type { FitConfig, Strategy } from '../../../shared/strategy/strategy.ts';
import { badConfigOf, privacyLayers } from '../../support/privacy-layers.ts';

const config: FitConfig = { epochs: 1, batchSize: 32, learningRate: 0.01, optimizer: 'adam', extra: { keep: 1 } };

describe('drift correction: the strategy side', () => {
  it('is strategy scaffold: FedAvg, or FedAvgM with server momentum, wrapped with λ (default 0.5), its name recorded in checkpoints', () => {
    const plain = createStrategy('scaffold', { minClients: 2 });
    expect(plain).toBeInstanceOf(DriftCorrected);
    expect(plain.driftCorrection).toBe(DRIFT_DEFAULTS.weight);
    expect(plain.name).toBe('scaffold');
    expect(new DriftCorrected(new FedAvg({})).name).toBe('drift(fedavg)');
    const momentum = createStrategy('scaffold', {}, { driftCorrection: 1, serverMomentum: 0.5 });
    expect(momentum.driftCorrection).toBe(1);
    expect(createStrategy('scaffold', {}, { rowAveraging: 1 }).rowAveraging).toBe(true);
    // Wrappers around it forward λ, so the round loop still runs the gradient exchange.
    expect(new ClippedStrategy(momentum, { clipNorm: 1 }).driftCorrection).toBe(1);
    // Other strategies have none.
    expect(createStrategy('fedavg', {}).driftCorrection).toBeUndefined();
    expect((new FedAvgM({}) as Strategy).driftCorrection).toBeUndefined();
  });

  it('refuses λ ≤ 0 or non-finite, and row averaging with server momentum, with BAD_CONFIG', () => {
    for (const driftCorrection of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => createStrategy('scaffold', {}, { driftCorrection })).toThrow(/driftCorrection \(--drift-correction\) of strategy scaffold must be > 0/);
    }
    expect(() => new DriftCorrected(new FedAvg({}), { weight: 0 })).toThrow(/driftCorrection must be a finite number > 0/);
    expect(() => createStrategy('scaffold', {}, { serverMomentum: 0.5, rowAveraging: 1 })).toThrow(/only without server momentum/);
    expect(() => createStrategy('fedavg', {}, { driftCorrection: 0.5 })).toThrow(/driftCorrection is not a parameter of strategy fedavg/);
  });

  it('is refused at start with secure aggregation (in-process and over sockets) and with differential privacy', () => {
    for (const [layer, make] of privacyLayers(() => new DriftCorrected(new FedAvg({ minClients: 2 })))) {
      expect(badConfigOf(make).message).toMatch(new RegExp(`strategy scaffold \\(drift correction\\) cannot be combined with ${layer}: the gradient exchange would send`));
    }
  });

  it('marks the two exchanges in the signed config, keeps what the strategy put there, and reads them back', () => {
    const asked = gradientConfig(config);
    expect(asked.extra).toEqual({ keep: 1, 'drift.phase': 'gradient' });
    expect(driftInstruction(asked)).toEqual({ kind: 'gradient' });
    const digest = 'ab'.repeat(32);
    const corrected = correctedConfig(config, 0.5, digest);
    expect(corrected.extra).toEqual({ keep: 1, 'drift.weight': 0.5, 'drift.control': digest });
    expect(driftInstruction(corrected)).toEqual({ kind: 'corrected', weight: 0.5, controlDigest: digest });
    expect(driftInstruction(config)).toBeNull();
    // A config that mixes the two, or names a control by a malformed digest, is refused.
    expect(() => driftInstruction({ ...corrected, extra: { ...corrected.extra, 'drift.phase': 'gradient' } })).toThrow(/a gradient request carries no drift correction/);
    expect(() => driftInstruction(correctedConfig(config, 0.5, 'not-a-digest'))).toThrow(/drift.control/);
    expect(() => driftInstruction({ ...config, extra: { 'drift.control': digest } })).toThrow(/drift.weight/);
  });
});
