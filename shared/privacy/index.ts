/**
 * Public API of `shared/privacy`: client-level differential privacy (DP-FedAvg, McMahan et al.
 * 2018) — clipping, central and distributed Gaussian noise, adaptive clipping (Andrew et al.
 * 2021), the sampled-Gaussian RDP accountant and the privacy budget.
 */
export { DEFAULT_ORDERS, epsilonFor, epsilonFromRdp, noiseMultiplierFor, rdpCurve, rdpSampledGaussian } from './accountant.ts';
export type { Conversion } from './accountant.ts';
export { addGaussianNoise, clipToNorm, cryptoNormalSource, l2Norm } from './clip.ts';
export type { NormalSource } from './clip.ts';
export { AdaptiveClip } from './adaptive-clip.ts';
export type { AdaptiveClipOptions } from './adaptive-clip.ts';
export { TAIL_SIGMAS, addDistributedNoise, clientNoiseStddev, ringClipRange } from './distributed-noise.ts';
export { DEFAULT_DELTA, PrivacyLedger, resolveDp } from './dp-fedavg.ts';
export type { DpOptions, DpPlan, NoisePlacement, PrivacyRecord, ResolvedDp } from './dp-fedavg.ts';
export { DifferentialPrivacy } from './dp-strategy.ts';
export type { DifferentialPrivacyOptions } from './dp-strategy.ts';
