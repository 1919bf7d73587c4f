import path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { PARTITION_SCHEMES, type PartitionScheme } from '../../shared/math/partition.ts';
import { fraction, nonNegativeNumber, onShutdown, positiveInteger, positiveNumber } from '../cli.ts';
import { fineTuneRecipeFor, presetNames, resolveConfig, SCRATCH_FEATURES, SIMULATION_MODES, type ScratchFeatures, type SimulationConfig, type SimulationMode } from '../simulation/presets.ts';
import { stopProcessClients } from '../simulation/process-clients.ts';
import { runSimulation, summaryLines } from '../simulation/run-simulation.ts';
import { checkPrivacy } from '../simulation/private-strategy.ts';
import { strategyOf } from '../simulation/run-federated.ts';
import { curveLines, parseCurveSizes, runTransferCurve } from '../simulation/transfer-curve.ts';
import { addStrategyOptions, strategyParamsFromFlags } from './strategy-options.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import { parseTrainableSet, type TrainableSetSpec } from '../../shared/model/trainable-set.ts';
import { parseAugmentationJson } from '../../shared/model/augmentation.ts';
import { addDpOptions, dpFlags } from './privacy-options.ts';

/** Typed flags; strategy parameters arrive under their attribute names (see strategy-options.ts). */
interface SimulateFlags extends Record<string, unknown> {
  preset: string;
  clients?: number;
  rounds?: number;
  partition?: PartitionScheme;
  alpha?: number;
  shards?: number;
  fraction?: number;
  minClients?: number;
  epochs?: number;
  batchSize?: number;
  lr?: number;
  optimizer?: 'sgd' | 'adam';
  hidden?: string;
  scratch?: ScratchFeatures[];
  strategy?: string;
  mode?: SimulationMode;
  dropout?: number;
  straggler?: number;
  seed?: number;
  trainExamples?: number;
  testExamples?: number;
  validationFraction?: number;
  workers?: number;
  baselines: boolean;
  out?: string;
  trainable?: string;
  fineTune?: boolean;
  tokenDropout?: number;
  augment?: string;
  logitAdjustment?: number;
  averageTail?: number;
  secureAggregation?: boolean;
  secaggThreshold?: number;
  secaggClipRange?: number;
  dpClip?: number;
  dpNoiseMultiplier?: number;
  dpEpsilon?: number;
  dpDelta?: number;
  dpBudget?: number;
  dpAdaptiveClip?: boolean;
  curve?: number[];
  targetAccuracy?: number;
}

/** `--target-accuracy 0.9` or `90` (percent, any value above 1) → a fraction in (0, 1]. */
export function targetAccuracy(value: string): number {
  const number = Number(value.trim().replace(/\s*%$/, ''));
  const fraction = number > 1 ? number / 100 : number;
  if (value.trim() === '' || !(fraction > 0 && fraction <= 1)) throw new InvalidArgumentError(`--target-accuracy: expected a fraction in (0, 1] or a percent in (1, 100], got "${value}"`);
  return fraction;
}

/** `--scratch tf-idf,bag-of-words` → the list, each name checked. */
function scratchList(value: string): ScratchFeatures[] {
  const names = value.split(',').map((v) => v.trim()).filter((v) => v !== '');
  for (const name of names) {
    if (!(SCRATCH_FEATURES as readonly string[]).includes(name)) throw new InvalidArgumentError(`"${name}" is not a from-scratch baseline; choose from ${SCRATCH_FEATURES.join(', ')}`);
  }
  return names as ScratchFeatures[];
}

function curveSizes(value: string): number[] {
  try {
    return parseCurveSizes(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

export function registerSimulateCommand(program: Command): void {
  const command = program
    .command('simulate')
    .description('Simulate N clients against one coordinator on real data, with baselines, and write report.json + report.html')
    .addOption(new Option('--preset <name>', 'preset').choices(presetNames()).default('imdb-glove'))
    .option('--clients <n>', 'number of clients', positiveInteger('clients'))
    .option('--rounds <n>', 'federated rounds', positiveInteger('rounds'))
    .addOption(new Option('--partition <scheme>', 'how data is split over clients').choices([...PARTITION_SCHEMES]))
    .option('--alpha <a>', 'Dirichlet concentration of label skew (smaller = more skewed)', positiveNumber('alpha'))
    .option('--shards <n>', 'shards per client for the shards partition', positiveInteger('shards'))
    .option('--fraction <c>', 'fraction C of clients sampled per round', fraction('fraction'))
    .option('--min-clients <n>', 'fewest clients per round', positiveInteger('min-clients'))
    .option('--epochs <e>', 'local epochs E', positiveInteger('epochs'))
    .option('--batch-size <b>', 'local batch size B', positiveInteger('batch-size'))
    .option('--lr <rate>', 'client learning rate', positiveNumber('lr'))
    .addOption(new Option('--optimizer <name>', 'client optimizer').choices(['sgd', 'adam']))
    .option('--hidden <sizes>', 'hidden layer sizes of the head, comma-separated ("" for a softmax head)')
    .addOption(new Option('--mode <mode>', 'virtual: clients in-process (scales to 10,000); socket: real socket.io clients in-process; process: each client a separate `fedtl client` process (all over loopback)').choices([...SIMULATION_MODES]))
    .option('--dropout <p>', 'probability a selected client crashes in a round', fraction('dropout'))
    .option('--straggler <p>', 'probability a selected client misses the deadline', fraction('straggler'))
    .option('--seed <n>', 'seed of data sampling, partition, selection and faults', (v) => Number.parseInt(v, 10))
    .option('--train-examples <n>', 'training examples drawn from the data set', positiveInteger('train-examples'))
    .option('--test-examples <n>', 'held-out test examples', positiveInteger('test-examples'))
    .option('--validation-fraction <f>', 'share of each client\'s data kept out of training for federated evaluation, in [0, 1) (default 0: every mode trains on all of it)', fraction('validation-fraction'))
    .option('--workers <n>', 'worker threads training virtual clients (0 = in the main thread; default one per core)', (v) => {
      const n = Number(v);
      if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('workers must be an integer ≥ 0');
      return n;
    })
    .option('--scratch <list>', `from-scratch baselines, comma-separated, the strongest is the one reported against (${SCRATCH_FEATURES.join(', ')}; "" for none)`, scratchList)
    .option('--no-baselines', 'skip the centralized, local-only and from-scratch baselines')
    .option('--trainable <json>', 'what trains by round, e.g. \'{"stages":[{"fromRound":1,"groups":[{"select":"head"}]},{"fromRound":5,"groups":[{"select":"top","count":1,"lrMultiplier":0.5}]}]}\'; "none" for the head alone (feature extraction)')
    .option('--fine-tune', "fine-tune with the preset's recipe (imdb-glove: head-only rounds, then the GloVe table; fashion-mobilenet: then MobileNetV2's top two blocks)")
    .option('--average-tail <f>', "server-side iterate averaging: evaluate and export the mean of the global models of the last fraction f of each stage's rounds, in (0, 1]; 0 turns it off (default: the preset's)", fraction('average-tail'))
    .option('--augment <json>', 'augmentation in stages whose features are the raw input (the whole base trains), for the federation and centralized fine-tuning alike, e.g. \'{"flip":true,"cropPadding":2,"brightness":0.1}\' (default: the preset\'s, none for every preset)')
    .option('--token-dropout <p>', 'text augmentation while the embedding table trains: probability of dropping each token', fraction('token-dropout'))
    .option('--logit-adjustment <tau>', 'logit adjustment τ of every client\'s local training by its own label prior (balanced softmax), in every federation of the run; centralized training has no label skew to correct and trains without it; 0 = off (default: the preset\'s)', nonNegativeNumber('logit-adjustment'))
    .option('--curve <sizes>', 'transfer curve: run the preset at each training-set size (e.g. 100,500,2000) and chart federated feature extraction, federated fine-tuning (the preset\'s recipe or --trainable), federated from scratch and centralized accuracy', curveSizes)
    .option('--dashboard', 'serve the coordinator\'s live dashboard (socket and process modes); its address is printed')
    .option('--target-accuracy <a>', 'test accuracy to aim for, as a fraction (0.9) or percent (90); the report marks it and the round that first reached it', targetAccuracy)
    .option('--out <dir>', 'directory of report.json and report.html (default runs/<preset>-<time>)')
    .option('--secure-aggregation', 'secure aggregation (SecAgg+) of the deltas; virtual or socket mode')
    .option('--secagg-threshold <t>', 'Shamir threshold t of secure aggregation (default ⌈2(k+1)/3⌉ of k neighbours)', positiveInteger('secagg-threshold'))
    .option('--secagg-clip-range <c>', 'per-coordinate range [−c, c] of the secure-aggregation ring (default 1)', positiveNumber('secagg-clip-range'));
  addDpOptions(command);
  addStrategyOptions(command);
  command.action(async (flags: SimulateFlags) => {
      const overrides: Partial<SimulationConfig> = {};
      const base = resolveConfig(flags.preset);
      if (flags.clients !== undefined) overrides.clients = flags.clients;
      if (flags.rounds !== undefined) overrides.rounds = flags.rounds;
      if (flags.partition || flags.alpha !== undefined || flags.shards !== undefined) {
        overrides.partition = {
          ...base.partition,
          ...(flags.partition ? { scheme: flags.partition } : {}),
          ...(flags.alpha !== undefined ? { alpha: flags.alpha } : {}),
          ...(flags.shards !== undefined ? { shardsPerClient: flags.shards } : {}),
        };
      }
      if (flags.fraction !== undefined) overrides.fractionFit = flags.fraction;
      if (flags.minClients !== undefined) overrides.minClients = flags.minClients;
      if (flags.epochs !== undefined) overrides.epochs = flags.epochs;
      if (flags.batchSize !== undefined) overrides.batchSize = flags.batchSize;
      if (flags.lr !== undefined) overrides.learningRate = flags.lr;
      if (flags.mode) overrides.mode = flags.mode;
      if (flags['dashboard'] === true) {
        const mode = flags.mode ?? base.mode;
        if (mode === 'virtual') throw new FedtlError('BAD_CONFIG', '--dashboard needs --mode socket or --mode process: virtual clients run without a coordinator server to serve it');
        overrides.dashboard = true;
      }
      if (flags.optimizer) overrides.optimizer = flags.optimizer;
      if (flags.scratch !== undefined) overrides.scratchFeatures = flags.scratch;
      if (flags.strategy) overrides.strategy = flags.strategy;
      const strategyParams = strategyParamsFromFlags(flags);
      if (Object.keys(strategyParams).length > 0) overrides.strategyParams = strategyParams;
      if (flags.hidden !== undefined) overrides.head = { ...base.head, hidden: flags.hidden.trim() === '' ? [] : flags.hidden.split(',').map((v) => positiveInteger('hidden')(v.trim())) };
      if (flags.dropout !== undefined) overrides.dropoutRate = flags.dropout;
      if (flags.straggler !== undefined) overrides.stragglerRate = flags.straggler;
      if (flags.seed !== undefined && Number.isFinite(flags.seed)) overrides.seed = flags.seed;
      if (flags.trainExamples !== undefined) overrides.trainExamples = flags.trainExamples;
      if (flags.testExamples !== undefined) overrides.testExamples = flags.testExamples;
      if (flags.validationFraction !== undefined) overrides.validationFraction = flags.validationFraction;
      if (flags.workers !== undefined) overrides.trainingWorkers = flags.workers;
      if (flags.targetAccuracy !== undefined) overrides.targetAccuracy = flags.targetAccuracy;
      if (flags.fineTune) Object.assign(overrides, fineTuneOverrides(base, flags, overrides.strategyParams));
      if (flags.trainable !== undefined) overrides.trainable = parseTrainableFlag(flags.trainable);
      if (flags.averageTail !== undefined) overrides.iterateAveraging = flags.averageTail === 0 ? null : { tailFraction: flags.averageTail };
      if (flags.augment !== undefined) overrides.augmentation = parseAugmentationJson(flags.augment);
      if (flags.tokenDropout !== undefined) overrides.augmentation = { ...(overrides.augmentation ?? base.augmentation), tokenDropout: flags.tokenDropout };
      if (flags.logitAdjustment !== undefined) overrides.logitAdjustment = flags.logitAdjustment;
      if (!flags.baselines) overrides.baselines = { centralized: false, localOnly: false, scratch: false };
      if (flags.secureAggregation) {
        overrides.secureAggregation = {
          ...(flags.secaggThreshold !== undefined ? { threshold: flags.secaggThreshold } : {}),
          ...(flags.secaggClipRange !== undefined ? { clipRange: flags.secaggClipRange } : {}),
        };
      }
      const dp = dpFlags(flags);
      if (dp) overrides.dp = dp;
      if (overrides.clients !== undefined && flags.minClients === undefined) overrides.minClients = Math.min(base.minClients, overrides.clients);
      const config = resolveConfig(flags.preset, overrides);
      checkPrivacy(config, strategyOf(config));
      const outDir = flags.out ?? path.join('runs', `${config.preset}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
      // Process mode: kill the client processes and delete their identities and data on ^C.
      onShutdown(() => stopProcessClients());
      if (flags.curve) {
        const curve = await runTransferCurve(config, flags.curve, { outDir });
        process.stdout.write(curveLines(curve, outDir).join('\n') + '\n');
        return;
      }
      const result = await runSimulation(config, { outDir });
      process.stdout.write(summaryLines(result, outDir).join('\n') + '\n');
    });
}

/** `--trainable`: a JSON schedule, or "none" for feature extraction; checked again against the base at start. */
function parseTrainableFlag(value: string): TrainableSetSpec | null {
  if (value.trim() === 'none') return null;
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch (cause) {
    throw new FedtlError('BAD_CONFIG', `--trainable must be JSON like {"stages":[...]} or "none": ${(cause as Error).message}`, { cause });
  }
  return parseTrainableSet(json, { source: '--trainable' });
}

/**
 * What `--fine-tune` changes in a preset: the preset's recipe (cut to the run's rounds); for a
 * plain run also the recipe's own base and strategy. A curve switches base and strategy for its
 * fine-tuning runs alone (`withFineTuneRecipe`), `--trainable` replaces the recipe (so the preset's
 * base stays), and `--strategy` wins over the recipe's.
 */
export function fineTuneOverrides(
  base: SimulationConfig,
  flags: Pick<SimulateFlags, 'rounds' | 'strategy' | 'curve' | 'trainable'>,
  strategyParams: Record<string, number> | undefined,
): Partial<SimulationConfig> {
  if (!base.fineTune) throw new FedtlError('BAD_CONFIG', `preset ${base.preset} has no fine-tuning recipe; give one with --trainable`);
  const overrides: Partial<SimulationConfig> = { trainable: fineTuneRecipeFor(base.fineTune, flags.rounds ?? base.rounds) };
  if (base.fineTuneBase && !flags.curve && flags.trainable === undefined) overrides.base = base.fineTuneBase;
  if (base.fineTuneStrategy && !flags.strategy && !flags.curve) {
    overrides.strategy = base.fineTuneStrategy.strategy;
    overrides.strategyParams = { ...base.fineTuneStrategy.strategyParams, ...strategyParams };
  }
  return overrides;
}
