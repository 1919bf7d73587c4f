import type { Identity } from '../shared/crypto/identity.ts';
import { openUpdateRows, type ClientPublicKeys, type ExpectedUpdate } from '../shared/crypto/update-envelope.ts';
import type { WeightManifest } from '../shared/weights/flat-weights.ts';
import type { UpdateOpener } from './round-state.ts';

export interface UpdateOpenerOptions {
  /** Largest accepted |value| of a delta element. @default 1e6 */
  maxAbs?: number;
  /** Largest accepted L2 norm of a delta. @default Infinity */
  maxL2Norm?: number;
  /**
   * Largest example count one client may claim. Counts are self-reported and weigh FedAvg, so the
   * operator should set this near the largest site's real size. @default 10_000_000
   */
  maxExampleCount?: number;
}

/** What every update of a round must satisfy, with the opener's limits filled in (the serial and the worker path share it). */
export function expectedUpdate(round: { roundId: string; parameterCount: number; rowSparse?: WeightManifest }, options: UpdateOpenerOptions = {}): ExpectedUpdate {
  return {
    roundId: round.roundId,
    parameterCount: round.parameterCount,
    ...(round.rowSparse ? { rowSparse: round.rowSparse } : {}),
    maxAbs: options.maxAbs ?? 1e6,
    maxL2Norm: options.maxL2Norm ?? Number.POSITIVE_INFINITY,
    maxExampleCount: options.maxExampleCount ?? 10_000_000,
  };
}

/** The round loop's opener backed by sealed envelopes addressed to `identity`. */
export function createUpdateOpener(identity: Identity, resolveClient: (clientId: string) => ClientPublicKeys | undefined, options: UpdateOpenerOptions = {}): UpdateOpener {
  return (sealed, expected) => {
    const { header, delta } = openUpdateRows(sealed, { coordinatorIdentity: identity, resolveClient, expected: expectedUpdate(expected, options) });
    return { roundId: header.roundId, clientId: header.clientId, exampleCount: header.exampleCount, metrics: { ...header.metrics }, delta, nonce: header.updateId };
  };
}
