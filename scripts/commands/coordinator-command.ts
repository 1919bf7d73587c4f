import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { SocketSecureAggregation } from '../../server/secure-aggregation.ts';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { startCoordinator } from '../../server/start-coordinator.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import { AllowList } from '../../shared/crypto/allow-list.ts';
import { formatPublicIdentity, loadIdentity, publicIdentity } from '../../shared/crypto/identity.ts';
import { parseHeadSpec } from '../../shared/model/head.ts';
import { createStrategy } from '../../shared/strategy/registry.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { onShutdown, nonNegativeInteger, positiveInteger, positiveNumber, fraction } from '../cli.ts';
import { COORDINATOR_DEFAULTS as DEFAULTS, readCoordinatorFile, resolveCoordinatorConfig } from './coordinator-config.ts';
import { addStrategyOptions, strategyParamsFromFlags } from './strategy-options.ts';
import { openSimulationBase } from '../simulation/simulation-data.ts';
import { exportFederatedModel } from './export-model.ts';
import { EarlyStopping } from '../../shared/model/early-stopping.ts';
import { exportFineTunedModel } from '../../shared/model/fine-tune-model.ts';
import { addDpOptions, dpFlags } from './privacy-options.ts';
import { loadCheckpoint } from '../../server/checkpoint.ts';
import { DifferentialPrivacy, resolveDp } from '../../shared/privacy/index.ts';
import { annotatePrivacy, isBudgetStop } from '../simulation/private-strategy.ts';

/** Both TLS files or neither; read once at start (a renewed certificate needs a restart). */
async function readTlsFiles(certFile: string | undefined, keyFile: string | undefined): Promise<{ cert: string; key: string } | null> {
  if (!certFile && !keyFile) return null;
  if (!certFile || !keyFile) throw new FedtlError('BAD_CONFIG', 'TLS needs both --tls-cert and --tls-key');
  const read = async (file: string, what: string): Promise<string> => {
    try {
      return await readFile(file, 'utf8');
    } catch (cause) {
      throw new FedtlError('BAD_CONFIG', `cannot read the TLS ${what} ${file}: ${(cause as Error).message}`, { cause });
    }
  };
  return { cert: await read(certFile, 'certificate'), key: await read(keyFile, 'key') };
}

export function registerCoordinatorCommand(program: Command): void {
  const command = program
    .command('coordinator')
    .description('Run a coordinator: admit allow-listed clients, serve the frozen base, run federated rounds with a strategy, checkpoint, export')
    .option('--config <file>', 'JSON file with any of the settings below, by their camelCase names (flags override it); an unknown key or a wrong type stops the coordinator')
    .option('--identity <file>', 'coordinator identity file (fedtl keygen)')
    .option('--allow <file>', 'allow list: one client public key per line; re-read on change')
    .option('--base <name|dir>', `frozen base: glove-100d, mobilenet-v2-96|128|224, identity-<n>, or a model directory (default ${DEFAULTS.base})`)
    .option('--hidden <sizes>', 'hidden layer sizes of the head, comma-separated (default none: a softmax head)')
    .option('--activation <name>', `activation of hidden layers (default ${DEFAULTS.activation})`)
    .option('--classes <n>', 'number of classes', positiveInteger('classes'))
    .option('--class-names <names>', 'comma-separated class names, in label order (clients with other names or another order are refused)')
    .option('--dashboard', 'serve a live read-only dashboard at /dashboard and Prometheus metrics at /metrics, behind a token printed at start')
    .option('--feature-columns <names>', 'CSV data: comma-separated feature column names in model order (default: those of the first client)')
    .option('--rounds <n>', `rounds (default ${DEFAULTS.rounds})`, positiveInteger('rounds'))
    .option('--fraction <c>', `fraction of clients selected per round (default ${DEFAULTS.fraction})`, fraction('fraction'))
    .option('--min-clients <n>', `fewest clients per round (default ${DEFAULTS.minClients})`, positiveInteger('min-clients'))
    .option('--max-clients <n>', 'most clients per round', positiveInteger('max-clients'))
    .option('--min-updates <n>', 'quorum: fewest accepted updates for a round to count (default min-clients)', positiveInteger('min-updates'))
    .option('--epochs <e>', `local epochs per round (default ${DEFAULTS.epochs})`, positiveInteger('epochs'))
    .option('--batch-size <b>', `local batch size (default ${DEFAULTS.batchSize})`, positiveInteger('batch-size'))
    .option('--lr <rate>', `client learning rate (default ${DEFAULTS.lr})`, positiveNumber('lr'))
    .addOption(new Option('--optimizer <name>', `client optimizer (default ${DEFAULTS.optimizer})`).choices(['sgd', 'adam']))
    .option('--deadline <seconds>', `time clients have per round (default ${DEFAULTS.deadline})`, positiveNumber('deadline'))
    .option('--max-examples <n>', 'largest example count one client may claim (counts weigh FedAvg; default 10,000,000)', positiveInteger('max-examples'))
    .option('--max-delta-norm <x>', 'refuse updates whose delta has a larger L2 norm (default: no limit)', positiveNumber('max-delta-norm'))
    .option('--ingest-workers <n>', 'worker threads that open (and for weighted-mean strategies sum) sealed updates; 0 opens them on the main thread (default: one per core for heads of ≥ 100k parameters, else 0)', nonNegativeInteger('ingest-workers'))
    .option('--port <n>', `port (default ${DEFAULTS.port}; 0 = any free port)`, (v) => Number.parseInt(v, 10))
    .option('--host <address>', `address to listen on (default ${DEFAULTS.host}; 0.0.0.0 for remote clients, with TLS)`)
    .option('--tls-cert <file>', 'PEM certificate (chain) to serve HTTPS/WSS with; clients then use an https:// URL')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--out <dir>', `checkpoints, history and the exported model (default ${DEFAULTS.out})`)
    .option('--seed <n>', `seed of the initial head and client selection (default ${DEFAULTS.seed})`, (v) => Number.parseInt(v, 10));
  command.option('--secure-aggregation', 'secure aggregation of the deltas (SecAgg+): the coordinator learns only their sum');
  addDpOptions(command);
  addStrategyOptions(command, DEFAULTS.strategy);
  command.action(async (flags: Record<string, unknown>) => {
      const file = await readCoordinatorFile(flags['config'] as string | undefined);
      const config = resolveCoordinatorConfig(file, flags, strategyParamsFromFlags(flags));
      const headSpec = parseHeadSpec({ hidden: config.hidden, activation: config.activation, dropout: config.dropoutRate, classes: config.classes }, 'head settings');
      const baseStrategy = createStrategy(
        config.strategy,
        {
          fractionFit: config.fraction,
          minClients: config.minClients,
          ...(config.maxClients ? { maxClients: config.maxClients } : {}),
          ...(config.minUpdates ? { minUpdates: config.minUpdates } : {}),
          epochs: config.epochs,
          batchSize: config.batchSize,
          learningRate: config.lr,
          optimizer: config.optimizer,
        },
        config.strategyParams,
      );
      const dpOptions = dpFlags(config);
      if (config.secureAggregation && dpOptions) {
        throw new FedtlError('BAD_CONFIG', 'secure aggregation with differential privacy over sockets is not available yet (it needs noise added by the clients); use one of the two, or `fedtl simulate --secure-aggregation` with DP flags');
      }
      if (config.secureAggregation && config.trainable !== undefined) {
        throw new FedtlError('BAD_CONFIG', 'secure aggregation does not combine with fine-tuning (--trainable) yet; train the head only');
      }
      const allowList = AllowList.load(config.allow);
      const identity = loadIdentity(config.identity);
      let strategy = baseStrategy;
      if (config.secureAggregation) {
        // The ring is sized for the most clients one round can select: every admitted client.
        const population = allowList.entries().filter((e) => e.status !== 'revoked').length;
        strategy = new SocketSecureAggregation(baseStrategy, { coordinator: identity, maxClients: Math.max(2, Math.min(population, config.maxClients ?? population)) });
      }
      if (dpOptions) {
        // q = clients per round / admitted clients; the allow list is the population.
        const population = allowList.entries().filter((e) => e.status !== 'revoked').length;
        const perRound = Math.min(population, config.maxClients ?? population, Math.max(config.minClients, Math.ceil(config.fraction * population)));
        const done = (await loadCheckpoint(path.join(config.out, 'checkpoint')))?.round ?? 0;
        const dp = resolveDp(dpOptions, { population, clientsPerRound: perRound, rounds: config.rounds, roundsDone: done });
        strategy = new DifferentialPrivacy(baseStrategy, { dp, population });
        process.stdout.write(
          `differential privacy: clip S = ${dp.clipNorm}, noise multiplier z = ${dp.noiseMultiplier.toFixed(4)}, q = ${dp.samplingRate.toFixed(4)}; ${config.rounds} rounds would cost ε = ${dp.plannedEpsilon.toFixed(3)} at δ = ${dp.delta}` +
            `${dp.budgetEpsilon === undefined ? '' : `; budget ε = ${dp.budgetEpsilon}`}\n`,
        );
      }
      await selectBackend();
      const { base, directory } = await openSimulationBase(config.base);
      const tls = await readTlsFiles(config.tlsCert, config.tlsKey);
      const coordinator = await startCoordinator({
        identity,
        allowList,
        base,
        baseDirectory: directory,
        headSpec,
        ...(config.classNames ? { classNames: config.classNames } : {}),
        ...(config.featureColumns ? { featureColumns: config.featureColumns } : {}),
        ...(config.dashboard ? { dashboard: true } : {}),
        strategy,
        rounds: config.rounds,
        seed: config.seed,
        ...(config.trainable !== undefined ? { trainable: config.trainable } : {}),
        port: config.port,
        host: config.host,
        ...(tls ? { tls } : {}),
        ...(config.ingestWorkers !== undefined ? { ingestWorkers: config.ingestWorkers } : {}),
        validation: {
          ...(config.maxExamples ? { maxExampleCount: config.maxExamples } : {}),
          ...(config.maxDeltaNorm ? { maxL2Norm: config.maxDeltaNorm } : {}),
        },
        loop: {
          roundTimeoutMs: config.deadline * 1000,
          evaluateTimeoutMs: config.deadline * 1000,
          checkpointDir: path.join(config.out, 'checkpoint'),
          ...(config.earlyStopping ? { earlyStopping: new EarlyStopping(config.earlyStopping) } : {}),
          ...(config.iterateAveraging ? { iterateAveraging: config.iterateAveraging } : {}),
          onRound: (record) => {
            annotatePrivacy(strategy, record);
            const dpText = record.privacy ? ` · ε ${record.privacy.epsilonRound.toFixed(3)} this round, ${record.privacy.epsilonTotal.toFixed(3)} in all (δ ${record.privacy.delta})` : '';
            const evalText = record.evalAccuracy !== null ? ` · federated eval accuracy ${(100 * record.evalAccuracy).toFixed(1)}% on ${record.evalExamples}` : '';
            process.stdout.write(`round ${record.round}/${config.rounds} · ${record.accepted}/${record.selected} clients · ${record.examples} examples${evalText}${dpText} · ${record.seconds.toFixed(1)} s\n`);
          },
        },
      });
      const modelDir = path.join(config.out, 'model');
      const shutDown = async () => {
        await coordinator.close();
        allowList.close();
        base.dispose();
      };
      // Registered before anything is printed: a signal that arrives before a listener exists kills the process outright.
      let interrupted = false;
      let finished: Promise<void> = Promise.resolve();
      onShutdown(async () => {
        interrupted = true;
        coordinator.loop.stop();
        await finished.catch(() => undefined);
      });
      if (coordinator.loop.completedRounds >= config.rounds) {
        // Re-running a finished run must not look like training: say so and point at the result.
        process.stdout.write(`${config.out} holds a finished run: ${coordinator.loop.completedRounds} of ${config.rounds} rounds done; model ${modelDir}. Use a new --out to start another run, or a larger --rounds to train on.\n`);
        await shutDown();
        return;
      }
      process.stdout.write(`coordinator public key (clients pin it with --coordinator-key):\n${formatPublicIdentity(publicIdentity(identity))}\n`);
      finished = (async () => {
        try {
          let budgetStop: string | undefined;
          try {
            await coordinator.run();
          } catch (error) {
            // The privacy budget stops the run; the history and model it has are still written below.
            if (!isBudgetStop(error)) throw error;
            budgetStop = error.message;
            process.stdout.write(`privacy budget reached: ${error.message}\n`);
          }
          const history = coordinator.loop.history;
          const done = coordinator.loop.completedRounds;
          const complete = done >= config.rounds;
          await mkdir(config.out, { recursive: true });
          await writeFile(path.join(config.out, 'history.json'), JSON.stringify(history, null, 1));
          if (done === 0) {
            process.stdout.write(`stopped before round 1 finished; nothing to export\n`);
            return;
          }
          // An interrupted run still exports what it has, marked partial so nobody mistakes it for the result.
          const run = { status: complete ? 'complete' : 'partial', roundsDone: done, roundsPlanned: config.rounds };
          const trainable = coordinator.loop.trainable;
          if (trainable) {
            // Fine-tuned: the loop holds the whole model; the export carries the trained base layers too.
            const trained = trainable.stageFor(done).layers.map((l) => l.name);
            const names = coordinator.classNames ?? config.classNames ?? Array.from({ length: headSpec.classes }, (_, i) => `class-${i}`);
            await exportFineTunedModel(base, headSpec, { manifest: trainable.manifest, data: coordinator.loop.bestWeights }, modelDir, { classNames: names, headSpec, extra: { run }, trainedLayers: trained });
          } else {
            await exportFederatedModel(base, headSpec, coordinator.loop.bestWeights, modelDir, coordinator.classNames ?? config.classNames, { run }, {
              ...(coordinator.featureColumns ? { featureColumns: coordinator.featureColumns } : {}),
            });
          }
          if (complete) process.stdout.write(`done: ${done} rounds; history ${path.join(config.out, 'history.json')}; model ${modelDir}\n`);
          else if (budgetStop) process.stdout.write(`stopped by the privacy budget after ${done} of ${config.rounds} rounds; model ${modelDir} (partial); history ${path.join(config.out, 'history.json')}\n`);
          else process.stdout.write(`interrupted after ${done} of ${config.rounds} rounds; PARTIAL model ${modelDir} (provenance.extra.run.status = "partial"); run the same command again to continue from the checkpoint\n`);
        } finally {
          await shutDown();
        }
      })();
      await finished;
      if (interrupted) process.exitCode = 130;
    });
}
