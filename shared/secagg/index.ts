/**
 * Public API of `shared/secagg`: SecAgg+ secure aggregation (Bell et al. 2020 on Bonawitz et al.
 * 2017) — fixed-point ring codec, the sparse graph, Shamir sharing, the per-phase state machines
 * and their sealed-message endpoints.
 */
export { DEFAULT_CLIP_RANGE, DEFAULT_MIN_LEVELS, DEFAULT_RING_BITS, addInto, decodeSum, quantize, ringCodec, subtractInto } from './quantize.ts';
export type { DecodedSum, RingCodec, RingOptions } from './quantize.ts';
export { SEED_BYTES, applyMask, expandDither, expandMask } from './prg.ts';
export { MAX_SECRET_BYTES, SHAMIR_PRIME, reconstruct, reconstructChecked, shareWidth, split } from './shamir.ts';
export type { CheckedSecret, Share } from './shamir.ts';
export { buildGraph, defaultDegree, defaultThreshold, graphSeed } from './graph.ts';
export type { Neighbourhoods } from './graph.ts';
export { SecAggClient, SecAggServer, advertiseSignedText, checkSecAggParameters } from './protocol.ts';
export type {
  AdvertisePayload,
  EncryptedShare,
  NeighbourKeys,
  RevealedShare,
  RoundKeysPayload,
  SecAggClientOptions,
  SecAggPhase,
  SecAggResult,
  SecAggServerOptions,
  SharesPayload,
  SurvivorsPayload,
  UnmaskPayload,
} from './protocol.ts';
export { SecAggClientSession, SecAggServerSession } from './session.ts';
export type { SecAggClientSessionOptions, SecAggServerSessionOptions } from './session.ts';
export { SECAGG_KINDS } from './wire.ts';
export type { MaskedInputMeta, SecAggKind } from './wire.ts';
export { runSecAggRound } from './in-process.ts';
export type { InProcessClient, InProcessRound, InProcessRoundOptions } from './in-process.ts';
export { SecureAggregation } from './secure-aggregation-strategy.ts';
export type { SecureAggregationOptions } from './secure-aggregation-strategy.ts';
