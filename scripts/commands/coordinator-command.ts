import { readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { startCoordinator } from '../../server/start-coordinator.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import { AllowList } from '../../shared/crypto/allow-list.ts';
import { formatPublicIdentity, loadIdentity, publicIdentity } from '../../shared/crypto/identity.ts';
import { parseHeadSpec } from '../../shared/model/head.ts';
import { FedAvg } from '../../shared/strategy/fed-avg.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { onShutdown, positiveInteger, positiveNumber, fraction } from '../cli.ts';
import { openSimulationBase } from '../simulation/simulation-data.ts';
import { exportFederatedModel } from './export-model.ts';

/** Every coordinator setting; a config file (JSON) may give any of them, flags override it. */
export interface CoordinatorConfig {
  identity: string;
  allow: string;
  base: string;
  hidden: number[];
  activation: string;
  dropoutRate: number;
  classes: number;
  classNames?: string[];
  rounds: number;
  fraction: number;
  minClients: number;
  maxClients?: number;
  minUpdates?: number;
  epochs: number;
  batchSize: number;
  lr: number;
  optimizer: 'sgd' | 'adam';
  deadline: number;
  maxExamples?: number;
  maxDeltaNorm?: number;
  port: number;
  host: string;
  /** PEM certificate chain and private key files: serve HTTPS/WSS instead of plain HTTP. */
  tlsCert?: string;
  tlsKey?: string;
  out: string;
  seed: number;
}

const DEFAULTS: Omit<CoordinatorConfig, 'identity' | 'allow' | 'classes'> = {
  base: 'glove-100d',
  hidden: [],
  activation: 'relu',
  dropoutRate: 0,
  rounds: 10,
  fraction: 1,
  minClients: 2,
  epochs: 1,
  batchSize: 32,
  lr: 0.01,
  optimizer: 'adam',
  deadline: 600,
  port: 7070,
  host: '127.0.0.1',
  out: 'fedtl-run',
  seed: 0,
};

function parseList(value: string): number[] {
  if (value.trim() === '') return [];
  return value.split(',').map((part) => {
    const n = Number(part.trim());
    if (!Number.isSafeInteger(n) || n <= 0) throw new FedtlError('BAD_CONFIG', `--hidden takes comma-separated layer sizes, got "${value}"`);
    return n;
  });
}

async function readConfigFile(file: string | undefined): Promise<Record<string, unknown>> {
  if (!file) return {};
  try {
    const parsed: unknown = JSON.parse(await readFile(file, 'utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('expected a JSON object');
    return parsed as Record<string, unknown>;
  } catch (cause) {
    throw new FedtlError('BAD_CONFIG', `cannot read config file ${file}: ${(cause as Error).message}`, { cause });
  }
}

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
  program
    .command('coordinator')
    .description('Run a coordinator: admit allow-listed clients, serve the frozen base, run FedAvg rounds, checkpoint, export')
    .option('--config <file>', 'JSON file with any of the settings below (flags override it)')
    .option('--identity <file>', 'coordinator identity file (fedtl keygen)')
    .option('--allow <file>', 'allow list: one client public key per line; re-read on change')
    .option('--base <name|dir>', `frozen base: glove-100d, mobilenet-v2-96|128|224, identity-<n>, or a model directory (default ${DEFAULTS.base})`)
    .option('--hidden <sizes>', 'hidden layer sizes of the head, comma-separated (default none: a softmax head)')
    .option('--activation <name>', 'activation of hidden layers (default relu)')
    .option('--classes <n>', 'number of classes', positiveInteger('classes'))
    .option('--class-names <names>', 'comma-separated class names, in label order')
    .option('--rounds <n>', `rounds (default ${DEFAULTS.rounds})`, positiveInteger('rounds'))
    .option('--fraction <c>', 'fraction of clients selected per round (default 1)', fraction('fraction'))
    .option('--min-clients <n>', `fewest clients per round (default ${DEFAULTS.minClients})`, positiveInteger('min-clients'))
    .option('--max-clients <n>', 'most clients per round', positiveInteger('max-clients'))
    .option('--min-updates <n>', 'quorum: fewest accepted updates for a round to count (default min-clients)', positiveInteger('min-updates'))
    .option('--epochs <e>', 'local epochs per round (default 1)', positiveInteger('epochs'))
    .option('--batch-size <b>', 'local batch size (default 32)', positiveInteger('batch-size'))
    .option('--lr <rate>', 'client learning rate (default 0.01)', positiveNumber('lr'))
    .addOption(new Option('--optimizer <name>', 'client optimizer (default adam)').choices(['sgd', 'adam']))
    .option('--deadline <seconds>', `time clients have per round (default ${DEFAULTS.deadline})`, positiveNumber('deadline'))
    .option('--max-examples <n>', 'largest example count one client may claim (counts weigh FedAvg; default 10,000,000)', positiveInteger('max-examples'))
    .option('--max-delta-norm <x>', 'refuse updates whose delta has a larger L2 norm (default: no limit)', positiveNumber('max-delta-norm'))
    .option('--port <n>', `port (default ${DEFAULTS.port}; 0 = any free port)`, (v) => Number.parseInt(v, 10))
    .option('--host <address>', 'address to listen on (default 127.0.0.1; 0.0.0.0 for remote clients, with TLS)')
    .option('--tls-cert <file>', 'PEM certificate (chain) to serve HTTPS/WSS with; clients then use an https:// URL')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--out <dir>', `checkpoints, history and the exported model (default ${DEFAULTS.out})`)
    .option('--seed <n>', 'seed of the initial head and client selection', (v) => Number.parseInt(v, 10))
    .action(async (flags: Record<string, unknown>) => {
      const file = await readConfigFile(flags['config'] as string | undefined);
      const pick = <T>(key: string): T | undefined => (flags[key] ?? file[key]) as T | undefined;
      const hiddenFlag = pick<string | number[]>('hidden');
      const classNamesValue = pick<string | string[]>('classNames');
      const config: CoordinatorConfig = {
        ...DEFAULTS,
        ...(file as Partial<CoordinatorConfig>),
        ...Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)),
        hidden: typeof hiddenFlag === 'string' ? parseList(hiddenFlag) : (hiddenFlag ?? DEFAULTS.hidden),
        ...(classNamesValue ? { classNames: typeof classNamesValue === 'string' ? classNamesValue.split(',').map((s) => s.trim()) : classNamesValue } : {}),
      } as CoordinatorConfig;
      if (!config.identity) throw new FedtlError('BAD_CONFIG', 'a coordinator needs --identity (create one with `fedtl keygen --out coordinator.key`)');
      if (!config.allow) throw new FedtlError('BAD_CONFIG', 'a coordinator needs --allow <file> listing the client public keys it admits');
      const classes = config.classes ?? config.classNames?.length;
      if (!classes) throw new FedtlError('BAD_CONFIG', 'give --classes <n> or --class-names a,b,c');
      const headSpec = parseHeadSpec({ hidden: config.hidden, activation: config.activation, dropout: config.dropoutRate, classes }, 'head settings');
      await selectBackend();
      const identity = loadIdentity(config.identity);
      const allowList = AllowList.load(config.allow);
      const { base, directory } = await openSimulationBase(config.base);
      const tls = await readTlsFiles(config.tlsCert, config.tlsKey);
      const coordinator = await startCoordinator({
        identity,
        allowList,
        base,
        baseDirectory: directory,
        headSpec,
        strategy: new FedAvg({
          fractionFit: config.fraction,
          minClients: config.minClients,
          ...(config.maxClients ? { maxClients: config.maxClients } : {}),
          ...(config.minUpdates ? { minUpdates: config.minUpdates } : {}),
          epochs: config.epochs,
          batchSize: config.batchSize,
          learningRate: config.lr,
          optimizer: config.optimizer,
        }),
        rounds: config.rounds,
        seed: config.seed,
        port: config.port,
        host: config.host,
        ...(tls ? { tls } : {}),
        validation: {
          ...(config.maxExamples ? { maxExampleCount: config.maxExamples } : {}),
          ...(config.maxDeltaNorm ? { maxL2Norm: config.maxDeltaNorm } : {}),
        },
        loop: {
          roundTimeoutMs: config.deadline * 1000,
          evaluateTimeoutMs: config.deadline * 1000,
          checkpointDir: path.join(config.out, 'checkpoint'),
          onRound: (record) => {
            const evalText = record.evalAccuracy !== null ? ` · federated eval accuracy ${(100 * record.evalAccuracy).toFixed(1)}% on ${record.evalExamples}` : '';
            process.stdout.write(`round ${record.round}/${config.rounds} · ${record.accepted}/${record.selected} clients · ${record.examples} examples${evalText} · ${record.seconds.toFixed(1)} s\n`);
          },
        },
      });
      process.stdout.write(`coordinator public key (clients pin it with --coordinator-key):\n${formatPublicIdentity(publicIdentity(identity))}\n`);
      process.stdout.write(`listening on ${coordinator.url}\n`);
      onShutdown(async () => {
        await coordinator.close();
        allowList.close();
      });
      const history = await coordinator.run();
      await mkdir(config.out, { recursive: true });
      await writeFile(path.join(config.out, 'history.json'), JSON.stringify(history, null, 1));
      const modelDir = await exportFederatedModel(base, headSpec, coordinator.loop.weights, path.join(config.out, 'model'), config.classNames);
      process.stdout.write(`done: ${history.length} rounds; history ${path.join(config.out, 'history.json')}; model ${modelDir}\n`);
      await coordinator.close();
      allowList.close();
      base.dispose();
    });
}
