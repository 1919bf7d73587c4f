/**
 * The privacy layers of a simulated federation: secure aggregation (virtual or socket clients) and
 * DP-FedAvg around the base strategy, and the per-round ε written into each round record.
 */
import type { RoundRecord } from '../../server/round-record.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import { generateIdentity, type Identity } from '../../shared/crypto/index.ts';
import { DifferentialPrivacy, resolveDp } from '../../shared/privacy/index.ts';
import { SecureAggregation } from '../../shared/secagg/index.ts';
import { SocketSecureAggregation } from '../../server/secure-aggregation.ts';
import type { Strategy } from '../../shared/strategy/strategy.ts';
import type { SimulationConfig } from './presets.ts';

/** What secure aggregation needs from an in-process federation. */
export interface InProcessKeys {
  readonly coordinator: Identity;
  readonly identityOf: (clientId: string) => Identity | undefined;
}

/** What secure aggregation needs from a socket federation: the coordinator's identity. */
export interface SocketKeys {
  readonly socketCoordinator: Identity;
}

/** Clients one round selects at most: ⌈C·n⌉, at least minClients. */
function clientsPerRound(config: SimulationConfig): number {
  return Math.min(config.clients, Math.max(config.minClients, Math.ceil(config.fractionFit * config.clients)));
}

/**
 * Wraps `strategy` as the config asks: DP(SecAgg(strategy)), DP(strategy) or SecAgg(strategy).
 * Bad settings fail here, before any round (`BAD_CONFIG`, exit code 2 in the CLI).
 */
export function withPrivacy(config: SimulationConfig, strategy: Strategy, keys?: InProcessKeys | SocketKeys): Strategy {
  let wrapped = strategy;
  const secure = config.secureAggregation;
  const perRound = clientsPerRound(config);
  if (secure) {
    if (!keys) throw new FedtlError('BAD_CONFIG', `--secure-aggregation runs with virtual or socket clients (--mode virtual|socket); mode ${config.mode} is not supported yet`);
    if ('socketCoordinator' in keys) {
      if (config.dp) throw new FedtlError('BAD_CONFIG', 'secure aggregation with differential privacy over sockets is not available yet; use --mode virtual for both');
      return new SocketSecureAggregation(wrapped, {
        coordinator: keys.socketCoordinator,
        maxClients: perRound,
        ...(secure.threshold === undefined ? {} : { threshold: secure.threshold }),
        ...(secure.clipRange === undefined ? {} : { clipRange: secure.clipRange }),
      });
    }
    wrapped = new SecureAggregation(wrapped, {
      coordinator: keys.coordinator,
      identityOf: keys.identityOf,
      maxClients: perRound,
      ...(secure.threshold === undefined ? {} : { threshold: secure.threshold }),
      ...(secure.clipRange === undefined ? {} : { clipRange: secure.clipRange }),
      // Under DP every client weighs the same (DP-FedAvg's uniform weights), and the ring needs dither.
      ...(config.dp ? { maxWeight: 1, dither: true } : {}),
    });
  }
  if (config.dp) {
    const dp = resolveDp({ ...config.dp, placement: secure ? 'distributed' : 'central' }, { population: config.clients, clientsPerRound: perRound, rounds: config.rounds });
    wrapped = new DifferentialPrivacy(wrapped, { dp, population: config.clients, minContributors: strategy.minUpdates });
  }
  return wrapped;
}

/** Copies the round's privacy account into its record (history.json, the report). */
export function annotatePrivacy(strategy: Strategy, record: RoundRecord): void {
  if (!(strategy instanceof DifferentialPrivacy)) return;
  const last = strategy.lastRecord;
  if (!last || last.round !== record.round) return;
  record.privacy = { epsilonRound: last.epsilonRound, epsilonTotal: last.epsilonTotal, delta: last.delta, noiseMultiplier: last.noiseMultiplier, clipNorm: last.clipNorm };
}

/** Whether a run stopped because the next round would pass the privacy budget. */
export function isBudgetStop(error: unknown): error is FedtlError {
  return error instanceof FedtlError && error.code === 'PRIVACY_BUDGET';
}

/**
 * Checks the privacy settings before any data is loaded, so a bad threshold, ring, S or ε fails
 * at start (`BAD_CONFIG` / `PRIVACY_BUDGET`, exit code 2) rather than after minutes of features.
 */
export function checkPrivacy(config: SimulationConfig, base: Strategy): void {
  const keys = config.mode === 'virtual' ? { coordinator: generateIdentity(), identityOf: () => undefined } : config.mode === 'socket' ? { socketCoordinator: generateIdentity() } : undefined;
  withPrivacy(config, base, keys);
}
