/**
 * Benchmark (6): how far the virtual-client simulator scales on one machine.
 *
 * - **scale** (one fresh process per client count N, so heaps do not mix): N virtual clients of an
 *   imdb-glove-sized federation (100-dimensional features, a softmax head over 2 classes, 20
 *   synthetic examples per client, E = 2, B = 32, C = 0.1 ⇒ N/10 clients per round). Measured:
 *   - *memory per virtual client*: the federation's own bookkeeping (identities, participants, the
 *     round loop's member table), heap + array buffers after a full GC, before and after the
 *     clients are registered, divided by N; and RSS per client including its data,
 *     (RSS(N) − RSS(N₀)) / (N − N₀) with N₀ the smallest count measured;
 *   - *client updates per second*: updates trained, sealed, opened, validated and aggregated per
 *     second of round time (server evaluation on 2,000 test rows included), over `--rounds` rounds;
 *   - peak RSS of the process.
 * - **imdb-glove round**: the `imdb-glove` preset with 1,000 clients over 20,000 real reviews
 *   (GloVe features from the cache; the first run computes them, ~1 min), C = 0.1 ⇒ 100 sampled
 *   clients per round: seconds per round (median over `--rounds`).
 *
 * Run: `npx tsx scripts/bench/simulation.ts [--clients 100,1000,10000] [--rounds 3] [--no-imdb]`
 * A default run takes about a minute on 2 cores (more the first time, for the GloVe features).
 * Writes `scripts/bench/results/simulation.json`.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { Logger } from '../../shared/core/log.ts';
import { createRandom } from '../../shared/math/random.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { createIdentityBase } from '../../shared/bases/identity.ts';
import { partition } from '../../shared/math/partition.ts';
import { clientOrder, groupByClient } from '../simulation/client-shards.ts';
import { resolveConfig } from '../simulation/presets.ts';
import { VirtualFederation } from '../simulation/run-federated.ts';
import { featuresOf, loadSimulationData, openSimulationBase, simulationCache } from '../simulation/simulation-data.ts';
import { VirtualIdentities } from '../simulation/virtual-identities.ts';
import { intListArg, parseArgs, printTable, round3, writeResults } from './bench-util.ts';

const args = parseArgs();
const quiet: Logger = { debug() {}, info() {}, warn: (m) => console.warn(m), error: (m) => console.error(m) };
const MB = 1024 * 1024;
const EXAMPLES_PER_CLIENT = 20;
const FEATURES = 100;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Heap, array buffers and RSS after a full collection. */
function settledMemory(): { heapAndBuffers: number; rss: number } {
  gc();
  gc();
  const usage = process.memoryUsage();
  return { heapAndBuffers: usage.heapUsed + usage.arrayBuffers, rss: usage.rss };
}

interface ScaleResult {
  clients: number;
  perRound: number;
  rounds: number;
  identitiesSeconds: number;
  bookkeepingBytesPerClient: number;
  dataBytes: number;
  rssMB: number;
  peakRssMB: number;
  updatesPerSecond: number;
  secondsPerRound: number;
}

/** One client count, in this (fresh) process. */
async function scaleWorker(clients: number, rounds: number): Promise<ScaleResult> {
  await selectBackend({ log: false });
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
  sampler.unref();
  const config = resolveConfig('imdb-glove', {
    clients,
    fractionFit: 0.1,
    minClients: 2,
    rounds,
    trainExamples: clients * EXAMPLES_PER_CLIENT,
    testExamples: 2000,
    dropoutRate: 0,
    mode: 'virtual',
  });
  // Two separable Gaussian classes in 100 dimensions: training does real work, labels are skewed.
  const random = createRandom('bench-simulation');
  const synthetic = (rows: number) => {
    const values = new Float32Array(rows * FEATURES);
    const labels = new Int32Array(rows);
    for (let r = 0; r < rows; r++) {
      labels[r] = random.nextFloat() < 0.5 ? 0 : 1;
      for (let c = 0; c < FEATURES; c++) values[r * FEATURES + c] = random.normal() + (labels[r] === 1 && c < 10 ? 0.5 : 0);
    }
    return { features: { values, rows, cols: FEATURES }, labels };
  };
  const train = synthetic(config.trainExamples);
  const test = synthetic(config.testExamples);
  const parts = partition(train.labels, { scheme: 'dirichlet', numClients: clients, seed: config.seed, numClasses: 2, alpha: 0.5 });
  const shards = groupByClient(clientOrder(parts), train.features, train.labels);
  const base = createIdentityBase(FEATURES);
  const before = settledMemory();
  const identitiesStarted = performance.now();
  const identities = new VirtualIdentities(clients);
  const identitiesSeconds = (performance.now() - identitiesStarted) / 1000;
  const roundSeconds: number[] = [];
  const federation = new VirtualFederation({
    config,
    base,
    baseDirectory: null,
    shards,
    testFeatures: test.features,
    testLabels: test.labels,
    mode: 'virtual',
    label: 'bench',
    identities,
    logger: quiet,
    onRound: (record) => roundSeconds.push(record.seconds),
  });
  const after = settledMemory();
  const history = (await federation.run()).history;
  federation.dispose();
  clearInterval(sampler);
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  const updates = history.reduce((sum, r) => sum + r.accepted, 0);
  const seconds = roundSeconds.reduce((a, b) => a + b, 0);
  return {
    clients,
    perRound: history[0]?.selected ?? 0,
    rounds: history.length,
    identitiesSeconds,
    bookkeepingBytesPerClient: (after.heapAndBuffers - before.heapAndBuffers) / clients,
    dataBytes: shards.features.values.byteLength + shards.labels.byteLength + shards.offsets.byteLength,
    rssMB: after.rss / MB,
    peakRssMB: peakRss / MB,
    updatesPerSecond: updates / seconds,
    secondsPerRound: seconds / history.length,
  };
}

/** The imdb-glove preset with 1,000 clients, C = 0.1: seconds per round of 100 sampled clients. */
async function imdbRound(rounds: number): Promise<{ clients: number; perRound: number; secondsPerRound: number[]; medianSeconds: number; updatesPerSecond: number; finalAccuracy: number | null }> {
  await selectBackend({ log: false });
  const config = resolveConfig('imdb-glove', { clients: 1000, fractionFit: 0.1, trainExamples: 20_000, rounds, mode: 'virtual' });
  const data = await loadSimulationData(config);
  const { base } = await openSimulationBase(config.base);
  const cache = simulationCache();
  const trainFeatures = await featuresOf(base, data.train, cache);
  const testFeatures = await featuresOf(base, data.test, cache);
  const parts = partition(data.train.labels, { scheme: config.partition.scheme, numClients: config.clients, seed: config.seed, numClasses: 2, alpha: config.partition.alpha });
  const shards = groupByClient(clientOrder(parts), trainFeatures, data.train.labels);
  const federation = new VirtualFederation({ config, base, baseDirectory: null, shards, testFeatures, testLabels: data.test.labels, mode: 'virtual', label: 'bench', logger: quiet });
  const history = (await federation.run()).history;
  federation.dispose();
  base.dispose();
  const seconds = history.map((r) => r.seconds);
  const sorted = [...seconds].sort((a, b) => a - b);
  return {
    clients: config.clients,
    perRound: history[0]?.selected ?? 0,
    secondsPerRound: seconds,
    medianSeconds: sorted[sorted.length >> 1] ?? Number.NaN,
    updatesPerSecond: history.reduce((s, r) => s + r.accepted, 0) / seconds.reduce((a, b) => a + b, 0),
    finalAccuracy: history.at(-1)?.serverAccuracy ?? null,
  };
}

/** Runs this script again with `--worker <what>` and parses the JSON line it prints. */
function inChild<T>(workerArgs: string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...workerArgs], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = out.trim().split('\n').filter((l) => l.startsWith('{')).at(-1);
      if (code !== 0 || !line) reject(new Error(`worker ${workerArgs.join(' ')} exited with ${code}:\n${out}`));
      else resolve(JSON.parse(line) as T);
    });
  });
}

const worker = args.get('worker');
const rounds = intListArg(args, 'rounds')?.[0] ?? 3;
if (worker === 'scale') {
  console.log(JSON.stringify(await scaleWorker(intListArg(args, 'clients')?.[0] ?? 1000, rounds)));
} else if (worker === 'imdb') {
  console.log(JSON.stringify(await imdbRound(rounds)));
} else {
  const counts = intListArg(args, 'clients') ?? [100, 1000, 10_000];
  const scale: ScaleResult[] = [];
  for (const clients of counts) {
    console.log(`scale: ${clients} virtual clients …`);
    scale.push(await inChild<ScaleResult>(['--worker', 'scale', '--clients', String(clients), '--rounds', String(rounds)]));
  }
  const smallest = scale[0]!;
  const rows = scale.map((r) => ({
    clients: r.clients,
    'per round': r.perRound,
    'identities s': round3(r.identitiesSeconds),
    'bookkeeping B/client': Math.round(r.bookkeepingBytesPerClient),
    'RSS MB': round3(r.rssMB),
    'RSS KB/client (with data)': r === smallest ? '—' : round3((r.rssMB - smallest.rssMB) * 1024 / (r.clients - smallest.clients)),
    'peak RSS MB': round3(r.peakRssMB),
    'updates/s': round3(r.updatesPerSecond),
    's/round': round3(r.secondsPerRound),
  }));
  printTable(rows);
  const imdb = args.has('no-imdb') ? null : await inChild<Awaited<ReturnType<typeof imdbRound>>>(['--worker', 'imdb', '--rounds', String(Math.max(3, rounds))]);
  if (imdb) console.log(`imdb-glove, ${imdb.clients} clients, ${imdb.perRound} per round: median ${round3(imdb.medianSeconds)} s/round (${imdb.secondsPerRound.map(round3).join(', ')}), ${round3(imdb.updatesPerSecond)} updates/s`);
  const summary = [
    ...rows
      .filter((row) => row.clients >= 1000)
      .map((row) => ({
        measurement: `${row.clients} virtual clients (imdb-glove-sized head, 20 ex/client, C = 0.1)`,
        result: `${row['updates/s']} client updates/s; ${row['bookkeeping B/client']} B/client bookkeeping, ${row['RSS KB/client (with data)']} KB/client RSS with data; peak RSS ${row['peak RSS MB']} MB`,
        ratio: '—',
        target: row.clients >= 10_000 ? '10,000 clients in 2 GB' : '—',
        status: row.clients >= 10_000 ? (Number(row['peak RSS MB']) <= 2048 ? 'met' : 'missed') : '—',
      })),
    ...(imdb ? [{ measurement: `imdb-glove round, ${imdb.perRound} of ${imdb.clients} clients sampled`, result: `${round3(imdb.medianSeconds)} s/round (median of ${imdb.secondsPerRound.length}); ${round3(imdb.updatesPerSecond)} updates/s`, ratio: '—', target: '—', status: '—' }] : []),
  ];
  const file = writeResults('simulation', { params: { counts, rounds, examplesPerClient: EXAMPLES_PER_CLIENT, features: FEATURES }, scale, rows, imdb, summary });
  console.log(`wrote ${file}`);
}
