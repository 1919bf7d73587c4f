/**
 * Strategies by name, for the command line and config files: each entry lists its own parameters
 * (config key, flag, description, default, range), and the registry refuses a duplicate name.
 * Defaults are read from the strategy's own `*_DEFAULTS` constants, so each is written once.
 */
import { FedtlError } from '../core/errors.ts';
import { DRIFT_DEFAULTS, DriftCorrected } from './drift-correction.ts';
import { FEDAVGM_DEFAULTS, FedAvgM } from './fed-avg-m.ts';
import { FEDAVG_DEFAULTS, FedAvg, type FedAvgOptions } from './fed-avg.ts';
import { FEDOPT_DEFAULTS, FedAdagrad, FedAdam, FedYogi } from './fed-opt.ts';
import { FEDPROX_DEFAULTS, FedProx } from './fed-prox.ts';
import { HOLDING_DEFAULTS } from './held-updates.ts';
import { FedMedian, FedTrimmedMean, Krum, KRUM_DEFAULTS, NORM_BOUNDING_DEFAULTS, NormBounding, TRIMMED_MEAN_DEFAULTS } from './robust.ts';
import type { Strategy } from './strategy.ts';

/** A strategy parameter, as a config key (camelCase) and a flag (kebab-case). */
export interface StrategyParam {
  key: string;
  flag: string;
  description: string;
  default: number;
  /** Inclusive lower bound. */
  min: number;
  /** Exclusive upper bound. @default Infinity */
  below?: number;
  integer?: boolean;
  /** The lower bound itself is refused. @default false */
  exclusiveMin?: boolean;
}

export interface StrategyEntry {
  name: string;
  summary: string;
  params: readonly StrategyParam[];
  create(common: FedAvgOptions, params: Readonly<Record<string, number>>): Strategy;
}

const serverLr = (value: number): StrategyParam => ({ key: 'serverLearningRate', flag: 'server-lr', description: 'server learning rate η', default: value, min: 0, exclusiveMin: true });
const maxHeld: StrategyParam = { key: 'maxHeldMB', flag: 'max-held-mb', description: 'memory cap of the updates a round holds, MiB', default: HOLDING_DEFAULTS.maxHeldMB, min: 0, exclusiveMin: true };
const fedOptParams: StrategyParam[] = [
  serverLr(FEDOPT_DEFAULTS.serverLearningRate),
  { key: 'beta1', flag: 'beta1', description: 'first-moment decay β₁', default: FEDOPT_DEFAULTS.beta1, min: 0, below: 1 },
  { key: 'beta2', flag: 'beta2', description: 'second-moment decay β₂', default: FEDOPT_DEFAULTS.beta2, min: 0, below: 1 },
  { key: 'tau', flag: 'tau', description: 'adaptivity τ', default: FEDOPT_DEFAULTS.tau, min: 0, exclusiveMin: true },
];

const registry = new Map<string, StrategyEntry>();

/** Adds a strategy; a second entry with the same name is refused. */
export function registerStrategy(entry: StrategyEntry): void {
  if (registry.has(entry.name)) throw new FedtlError('BAD_CONFIG', `strategy ${entry.name} is already registered`);
  registry.set(entry.name, entry);
}

export function strategyNames(): string[] {
  return [...registry.keys()];
}

export function strategyEntry(name: string): StrategyEntry {
  const entry = registry.get(name);
  if (!entry) throw new FedtlError('BAD_CONFIG', `unknown strategy "${name}"; choose one of ${strategyNames().join(', ')}`);
  return entry;
}

/** Every parameter of every strategy, once per key (for flags and the config schema). */
export function allStrategyParams(): StrategyParam[] {
  const byKey = new Map<string, StrategyParam>();
  for (const entry of registry.values()) for (const param of entry.params) if (!byKey.has(param.key)) byKey.set(param.key, param);
  return [...byKey.values()];
}

/**
 * Builds strategy `name` with the common FedAvg options and `given` parameters (missing ones take
 * their defaults). A parameter the strategy does not take, or out of its range, is a BAD_CONFIG
 * error naming it.
 */
export function createStrategy(name: string, common: FedAvgOptions, given: Readonly<Record<string, number | undefined>> = {}): Strategy {
  const entry = strategyEntry(name);
  const params: Record<string, number> = {};
  for (const [key, value] of Object.entries(given)) {
    if (value === undefined) continue;
    const param = entry.params.find((p) => p.key === key);
    if (!param) {
      const takes = entry.params.map((p) => `${p.key} (--${p.flag})`).join(', ') || 'no parameters';
      throw new FedtlError('BAD_CONFIG', `${key} is not a parameter of strategy ${name}; it takes ${takes}`);
    }
    const low = param.exclusiveMin ? value <= param.min : value < param.min;
    if (!Number.isFinite(value) || low || value >= (param.below ?? Number.POSITIVE_INFINITY) || (param.integer && !Number.isSafeInteger(value))) {
      throw new FedtlError('BAD_CONFIG', `${key} (--${param.flag}) of strategy ${name} must be ${param.integer ? 'an integer ' : ''}${param.exclusiveMin ? '>' : '≥'} ${param.min}${param.below !== undefined ? ` and < ${param.below}` : ''}, got ${value}`);
    }
    params[key] = value;
  }
  for (const param of entry.params) params[param.key] ??= param.default;
  const strategy = entry.create(common, params);
  // Recorded on the instance, whatever its class: checkpoints compare them on resume.
  Object.defineProperty(strategy, 'params', { value: Object.freeze({ ...params }), enumerable: false });
  return strategy;
}

const rowAveraging: StrategyParam = {
  key: 'rowAveraging',
  flag: 'row-averaging',
  description: 'average each embedding row over the clients that sent it (1) or over the round (0)',
  default: FEDAVG_DEFAULTS.rowAveraging ? 1 : 0,
  min: 0,
  below: 2,
  integer: true,
};
registerStrategy({
  name: 'fedavg',
  summary: 'FedAvg (McMahan et al. 2017)',
  params: [serverLr(FEDAVG_DEFAULTS.serverLearningRate), rowAveraging],
  create: (c, p) => new FedAvg({ ...c, serverLearningRate: p['serverLearningRate']!, rowAveraging: p['rowAveraging'] === 1 }),
});
registerStrategy({
  name: 'fedavgm',
  summary: 'FedAvg with server momentum (Hsu et al. 2019)',
  params: [serverLr(FEDAVG_DEFAULTS.serverLearningRate), { key: 'serverMomentum', flag: 'server-momentum', description: 'server momentum β', default: FEDAVGM_DEFAULTS.serverMomentum, min: 0, below: 1 }],
  create: (c, p) => new FedAvgM({ ...c, serverLearningRate: p['serverLearningRate']!, serverMomentum: p['serverMomentum']! }),
});
registerStrategy({
  name: 'fedprox',
  summary: 'FedAvg with a proximal term μ on the clients (Li et al. 2020)',
  params: [{ key: 'proximalMu', flag: 'proximal-mu', description: 'proximal weight μ', default: FEDPROX_DEFAULTS.proximalMu, min: 0 }, rowAveraging],
  create: (c, p) => new FedProx({ ...c, proximalMu: p['proximalMu']!, rowAveraging: p['rowAveraging'] === 1 }),
});
registerStrategy({
  name: 'scaffold',
  summary: "FedAvg (with server momentum β > 0) whose clients correct their drift with this round's control variates (SCAFFOLD, Karimireddy et al. 2020; fresh as FedLin, Mitra et al. 2021): one more exchange per round",
  params: [
    { key: 'driftCorrection', flag: 'drift-correction', description: 'weight λ of the correction λ·(c − c_i)', default: DRIFT_DEFAULTS.weight, min: 0, exclusiveMin: true },
    serverLr(FEDAVG_DEFAULTS.serverLearningRate),
    { key: 'serverMomentum', flag: 'server-momentum', description: 'server momentum β', default: 0, min: 0, below: 1 },
    rowAveraging,
  ],
  create: (c, p) => {
    const momentum = p['serverMomentum']!;
    if (momentum > 0 && p['rowAveraging'] === 1) throw new FedtlError('BAD_CONFIG', 'strategy scaffold averages embedding rows (rowAveraging 1) only without server momentum (serverMomentum 0)');
    const inner = momentum > 0 ? new FedAvgM({ ...c, serverLearningRate: p['serverLearningRate']!, serverMomentum: momentum }) : new FedAvg({ ...c, serverLearningRate: p['serverLearningRate']!, rowAveraging: p['rowAveraging'] === 1 });
    return new DriftCorrected(inner, { weight: p['driftCorrection']!, name: 'scaffold' });
  },
});
for (const [name, Type] of [['fedadam', FedAdam], ['fedyogi', FedYogi], ['fedadagrad', FedAdagrad]] as const) {
  registerStrategy({
    name,
    summary: `${Type.name}: server optimizer on the pseudo-gradient (Reddi et al. 2021)`,
    // FedAdagrad sums squares without decay: it takes no β₂.
    params: name === 'fedadagrad' ? fedOptParams.filter((p) => p.key !== 'beta2') : fedOptParams,
    create: (c, p) => new Type({ ...c, serverLearningRate: p['serverLearningRate']!, beta1: p['beta1']!, ...(p['beta2'] !== undefined ? { beta2: p['beta2'] } : {}), tau: p['tau']! }),
  });
}
registerStrategy({ name: 'median', summary: 'coordinate-wise median (Yin et al. 2018); holds every update', params: [maxHeld], create: (c, p) => new FedMedian({ ...c, maxHeldMB: p['maxHeldMB']! }) });
registerStrategy({
  name: 'trimmed-mean',
  summary: 'coordinate-wise trimmed mean (Yin et al. 2018); holds every update',
  params: [{ key: 'trimFraction', flag: 'trim-fraction', description: 'fraction cut from each end', default: TRIMMED_MEAN_DEFAULTS.trimFraction, min: 0, below: 0.5 }, maxHeld],
  create: (c, p) => new FedTrimmedMean({ ...c, trimFraction: p['trimFraction']!, maxHeldMB: p['maxHeldMB']! }),
});
registerStrategy({
  name: 'krum',
  summary: 'Krum / Multi-Krum (Blanchard et al. 2017); holds every update',
  params: [
    { key: 'byzantine', flag: 'byzantine', description: 'Byzantine clients f tolerated (rounds need 2f + 3 updates)', default: KRUM_DEFAULTS.byzantine, min: 0, integer: true },
    { key: 'multiKrum', flag: 'multi-krum', description: 'updates averaged m (1 = Krum)', default: KRUM_DEFAULTS.multiKrum, min: 1, integer: true },
    maxHeld,
  ],
  create: (c, p) => new Krum({ ...c, byzantine: p['byzantine']!, multiKrum: p['multiKrum']!, maxHeldMB: p['maxHeldMB']! }),
});
registerStrategy({
  name: 'norm-bounding',
  summary: "clip each delta to c × the round's median norm, then FedAvg; holds every update",
  params: [{ key: 'normMultiplier', flag: 'norm-multiplier', description: 'bound c, in median norms', default: NORM_BOUNDING_DEFAULTS.normMultiplier, min: 0, exclusiveMin: true }, maxHeld],
  create: (c, p) => new NormBounding({ ...c, normMultiplier: p['normMultiplier']!, maxHeldMB: p['maxHeldMB']! }),
});
