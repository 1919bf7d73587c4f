/**
 * The differential-privacy flags shared by `fedtl coordinator` and `fedtl simulate`
 * (DP-FedAvg, shared/privacy), and their translation to DP options.
 */
import type { Command } from 'commander';
import { FedtlError } from '../../shared/core/errors.ts';
import type { DpOptions } from '../../shared/privacy/index.ts';

/** Adds `--dp-clip`, `--dp-noise-multiplier`, `--dp-epsilon`, `--dp-delta`, `--dp-budget`, `--dp-adaptive-clip`. */
export function addDpOptions(command: Command): void {
  command
    .option('--dp-clip <S>', 'differential privacy: clip each client delta to L2 norm S', Number)
    .option('--dp-noise-multiplier <z>', 'differential privacy: Gaussian noise std z·S on the sum', Number)
    .option('--dp-epsilon <e>', 'differential privacy: calibrate z to reach ε after all rounds', Number)
    .option('--dp-delta <d>', 'differential privacy: δ (default 1e-5)', Number)
    .option('--dp-budget <e>', 'differential privacy: refuse rounds past this cumulative ε (default --dp-epsilon)', Number)
    .option('--dp-adaptive-clip', 'differential privacy: adapt S to the median update norm (Andrew et al. 2021)');
}

/** The `--dp-*` flags as DP options, or undefined when none is given; `--dp-clip` is required with any. */
export function dpFlags(flags: { dpClip?: number; dpNoiseMultiplier?: number; dpEpsilon?: number; dpDelta?: number; dpBudget?: number; dpAdaptiveClip?: boolean }): DpOptions | undefined {
  const any = [flags.dpClip, flags.dpNoiseMultiplier, flags.dpEpsilon, flags.dpDelta, flags.dpBudget].some((v) => v !== undefined) || flags.dpAdaptiveClip;
  if (!any) return undefined;
  if (flags.dpClip === undefined) throw new FedtlError('BAD_CONFIG', 'differential privacy needs --dp-clip S (the L2 norm each client delta is clipped to)');
  return {
    clipNorm: flags.dpClip,
    ...(flags.dpNoiseMultiplier !== undefined ? { noiseMultiplier: flags.dpNoiseMultiplier } : {}),
    ...(flags.dpEpsilon !== undefined ? { targetEpsilon: flags.dpEpsilon } : {}),
    ...(flags.dpDelta !== undefined ? { delta: flags.dpDelta } : {}),
    ...(flags.dpBudget !== undefined ? { budgetEpsilon: flags.dpBudget } : {}),
    ...(flags.dpAdaptiveClip ? { adaptiveClip: true } : {}),
  };
}
