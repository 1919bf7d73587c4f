/**
 * Benchmark: the coordinator's event loop during a `simulate --mode socket` run, whose clients
 * share its process.
 *
 * The issue's job (MNIST 784-200-200-10, 3 IID clients × 2,000 images, E = 1, B = 64, SGD 0.1)
 * runs once with the socket clients training in this thread (`--workers 0`, as before) and once
 * with them training in worker threads (`--workers 2`), each in a fresh process. Measured on the
 * process's main thread — the coordinator's — with `perf_hooks.monitorEventLoopDelay` from the
 * first round to the last: how long a heartbeat, a deadline or another client's message can wait
 * (p50, p99, max of the delay, in ms). Also seconds per round, test accuracy per round (identical
 * in both runs: the same trainer, weights, rows and seed) and bytes of weights sent per round.
 *
 * Run: `npx tsx scripts/bench/socket-event-loop.ts [--workers 0,2] [--rounds 3] [--seed 1]`
 * Writes `scripts/bench/results/socket-event-loop.json`; exits non-zero if the accuracies differ.
 */
import { spawn } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../../shared/core/log.ts';
import { partition } from '../../shared/math/partition.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { resolveConfig } from '../simulation/presets.ts';
import { runFederated } from '../simulation/run-federated.ts';
import { featuresOf, loadSimulationData, openSimulationBase, simulationCache } from '../simulation/simulation-data.ts';
import { intListArg, machineInfo, median, parseArgs, printTable, round3, writeResults } from './bench-util.ts';

const args = parseArgs();
const quiet: Logger = { debug() {}, info() {}, warn: (m) => console.warn(m), error: (m) => console.error(m) };

interface SocketRun {
  workers: number;
  secondsPerRound: number[];
  medianSeconds: number;
  accuracy: (number | null)[];
  bytesDown: number[];
  /** Event-loop delay of the coordinator's thread over the rounds, in ms. */
  delay: { p50: number; p99: number; max: number; mean: number };
  loadAverage1m: number;
}

/** One socket federation in this (fresh) process, its clients training with `workers` threads. */
async function socketRun(workers: number, rounds: number, seed: number): Promise<SocketRun> {
  await selectBackend({ log: false });
  const config = resolveConfig('mnist-mlp', {
    clients: 3,
    rounds,
    partition: { scheme: 'iid', alpha: 0.5, beta: 0.5, shardsPerClient: 2 },
    fractionFit: 1,
    minClients: 3,
    epochs: 1,
    batchSize: 64,
    learningRate: 0.1,
    optimizer: 'sgd',
    trainExamples: 6000,
    testExamples: 1000,
    baselines: { centralized: false, localOnly: false, scratch: false },
    seed,
    mode: 'socket',
    trainingWorkers: workers,
  });
  const data = await loadSimulationData(config);
  const { base, directory } = await openSimulationBase(config.base);
  const testFeatures = await featuresOf(base, data.test, simulationCache());
  const parts = partition(data.train.labels, { scheme: 'iid', numClients: config.clients, seed: config.seed, numClasses: data.train.classNames.length });
  // Resolution 10 ms: the delays that matter here are a client's training step or more.
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const { history } = await runFederated({ config, base, baseDirectory: directory, parts, trainDataset: data.train, testDataset: data.test, testFeatures, testLabels: data.test.labels, mode: 'socket', label: 'bench', logger: quiet });
  delay.disable();
  base.dispose();
  const seconds = history.map((r) => r.seconds);
  const ms = (ns: number) => ns / 1e6;
  return {
    workers,
    secondsPerRound: seconds,
    medianSeconds: seconds.length > 0 ? median(seconds) : Number.NaN,
    accuracy: history.map((r) => r.serverAccuracy),
    bytesDown: history.map((r) => r.bytesDown),
    delay: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max), mean: ms(delay.mean) },
    loadAverage1m: Number(machineInfo()['loadAverage1m']),
  };
}

/** Runs this script again with `--worker` and parses the JSON line it prints. */
function inChild(workers: number, rounds: number, seed: number): Promise<SocketRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--worker', '--workers', String(workers), '--rounds', String(rounds), '--seed', String(seed)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = out.trim().split('\n').filter((l) => l.startsWith('{')).at(-1);
      if (code !== 0 || !line) reject(new Error(`socket run with ${workers} workers exited with ${code}:\n${out}`));
      else resolve(JSON.parse(line) as SocketRun);
    });
  });
}

const rounds = intListArg(args, 'rounds')?.[0] ?? 3;
const seed = Number(args.get('seed') ?? 1);
if (args.has('worker')) {
  const workers = Number(args.get('workers') ?? 0);
  console.log(JSON.stringify(await socketRun(workers, rounds, seed)));
} else {
  const sizes = (args.get('workers') ?? '0,2').split(',').map(Number);
  const runs: SocketRun[] = [];
  for (const workers of sizes) {
    console.log(`socket federation, clients training with ${workers === 0 ? 'no worker (the coordinator\'s thread)' : `${workers} worker thread(s)`} …`);
    runs.push(await inChild(workers, rounds, seed));
  }
  printTable(
    runs.map((r) => ({
      workers: r.workers,
      'delay p50 ms': round3(r.delay.p50),
      'delay p99 ms': round3(r.delay.p99),
      'delay max ms': round3(r.delay.max),
      's/round (median)': round3(r.medianSeconds),
      accuracy: r.accuracy.map((a) => (a === null ? 'n/a' : (100 * a).toFixed(1))).join(' → '),
      'MB down/round': r.bytesDown.map((b) => round3(b / 1e6)).join(', '),
      load: r.loadAverage1m,
    })),
  );
  const inThread = runs.find((r) => r.workers === 0);
  const pooled = runs.filter((r) => r.workers > 0);
  const identical = runs.every((r) => JSON.stringify(r.accuracy) === JSON.stringify(runs[0]!.accuracy));
  const summary = inThread
    ? pooled.map((r) => ({
        measurement: `coordinator event-loop delay, socket simulation (mnist-mlp, 3 clients, ${rounds} rounds), clients training in ${r.workers} worker thread(s) vs the coordinator's thread`,
        result: `p99 ${round3(r.delay.p99)} vs ${round3(inThread.delay.p99)} ms, max ${round3(r.delay.max)} vs ${round3(inThread.delay.max)} ms; ${round3(r.medianSeconds)} vs ${round3(inThread.medianSeconds)} s/round; accuracy ${identical ? 'identical' : 'DIFFERENT'}`,
        ratio: `p99 ${round3(inThread.delay.p99 / r.delay.p99)}× lower`,
        target: 'training off the coordinator\'s event loop',
        status: identical ? 'met' : 'accuracy differs',
      }))
    : [];
  const path = writeResults('socket-event-loop', { rounds, seed, runs, identicalAccuracy: identical, summary });
  console.log(`wrote ${path}`);
  if (!identical) {
    console.error('the runs reached different accuracies: training in workers must give the same numbers');
    process.exitCode = 1;
  }
}
