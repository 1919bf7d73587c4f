/**
 * Test fixture: every privacy layer wrapped around a strategy, for the checks that an option which
 * cannot combine with them (row averaging, drift correction) is refused when the layer is built.
 */
import { SocketSecureAggregation } from '../../server/secure-aggregation.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import { generateIdentity } from '../../shared/crypto/identity.ts';
import { resolveDp } from '../../shared/privacy/dp-fedavg.ts';
import { DifferentialPrivacy } from '../../shared/privacy/dp-strategy.ts';
import { SecureAggregation } from '../../shared/secagg/secure-aggregation-strategy.ts';
import type { Strategy } from '../../shared/strategy/strategy.ts';

/** The layer's name as its refusals say it, and a builder of it around `inner()`: in-process and socket secure aggregation, and DP. */
export function privacyLayers(inner: () => Strategy): Array<[layer: 'secure aggregation' | 'differential privacy', make: () => Strategy]> {
  const coordinator = generateIdentity();
  const dp = resolveDp({ clipNorm: 1, noiseMultiplier: 1 }, { population: 10, clientsPerRound: 2, rounds: 5 });
  return [
    ['secure aggregation', () => new SecureAggregation(inner(), { coordinator, identityOf: () => undefined, maxClients: 5 })],
    ['secure aggregation', () => new SocketSecureAggregation(inner(), { coordinator, maxClients: 5 })],
    ['differential privacy', () => new DifferentialPrivacy(inner(), { dp, population: 10 })],
  ];
}

/** The BAD_CONFIG error `make` throws; fails the calling test's expectation otherwise. */
export function badConfigOf(make: () => unknown): FedtlError {
  try {
    make();
  } catch (caught) {
    if (caught instanceof FedtlError && caught.code === 'BAD_CONFIG') return caught;
    throw caught;
  }
  throw new Error('expected BAD_CONFIG, but it was built');
}
