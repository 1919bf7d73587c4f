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
 * - **worker pool**: seconds per round of mnist-mlp (100 clients, C = 0.1, E = 1, B = 10) and
 *   imdb-glove (1,000 clients, C = 0.1) with virtual clients trained by 1 and by 2 worker threads
 *   (`--pool 1,2`), each in a fresh process: 8 (mnist-mlp) or 30 (imdb-glove) warm-up rounds, then
 *   at least 7 measured ones; the speed-up is the ratio of the measured rounds' medians (that of
 *   all rounds is printed beside it). Also the main thread's busy seconds per measured round
 *   (event-loop utilization): what stays on it whatever the pool size, and the cores the process
 *   got (CPU time of all its threads over wall time).
 *   `--pool-presets fashion-transfer` measures fine-tuning rounds the same way: the main job's
 *   recipe (6 clients, the head for two rounds, then the base's top convolution too), 3 warm-up
 *   rounds (the head-only ones and the first at the new boundary), then 7 fine-tuning rounds;
 *   `--pool 0,1,2` adds the main thread (no pool) for comparison.
 *
 * Run: `npx tsx scripts/bench/simulation.ts [--clients 100,1000,10000] [--rounds 3] [--no-imdb] [--pool 1,2 | --no-pool] [--pool-presets mnist-mlp,imdb-glove] [--results simulation]`
 * A default run takes about a minute on 2 cores (more the first time, for the GloVe features).
 * Writes `scripts/bench/results/<--results>.json`, so a scale run (`--clients 1000,100000
 * --rounds 1 --no-imdb --no-pool --results simulation-100k`) keeps the default run's file.
 */
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { Logger } from '../../shared/core/log.ts';
import { createRandom } from '../../shared/math/random.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { createIdentityBase } from '../../shared/bases/identity.ts';
import { partition } from '../../shared/math/partition.ts';
import { clientOrder, groupByClient } from '../simulation/client-shards.ts';
import { resolveConfig, type SimulationConfig } from '../simulation/presets.ts';
import { startTrainingPool, VirtualFederation } from '../simulation/run-federated.ts';
import { featuresOf, loadSimulationData, openSimulationBase, simulationCache } from '../simulation/simulation-data.ts';
import { VirtualIdentities } from '../simulation/virtual-identities.ts';
import { intListArg, parseArgs, printTable, round3, writeResults } from './bench-util.ts';

const args = parseArgs();
const quiet: Logger = { debug() {}, info() {}, warn: (m) => console.warn(m), error: (m) => console.error(m) };
const MB = 1024 * 1024;
const EXAMPLES_PER_CLIENT = 20;
/** Rounds of each pool run that are measured (at least; `--rounds` may ask for more). */
const POOL_ROUNDS = 7;
/**
 * Rounds each pool run trains before the measured ones: every training worker is a fresh V8
 * isolate that compiles TensorFlow.js's JavaScript for itself, on V8's background threads, which
 * compete with the workers for the cores. Sampled per thread (/proc) on imdb-glove with one
 * worker, that compilation cost 0.13–0.22 CPU-s a round for the first 15 rounds (100 clients a
 * round) and about 0.04 from round 17; with two workers each sees half the jobs, so it takes about
 * twice as many rounds to settle. On mnist-mlp (10 clients a round of 20 steps each) it settled
 * within 5 rounds. The speed-up of all rounds is reported beside the steady one.
 */
const POOL_WARM_UP_ROUNDS: Record<string, number> = { 'mnist-mlp': 8, 'imdb-glove': 30, 'fashion-transfer': 3 };
/** Presets the pool runs by default (`--pool-presets` picks others, `fashion-transfer` among them). */
const POOL_PRESETS = ['mnist-mlp', 'imdb-glove'];
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
/**
 * The scale run's client data: two separable Gaussian classes in 100 dimensions (training does real
 * work; labels are skewed by a Dirichlet partition), grouped by client. Built in its own function so
 * the ungrouped training matrix is garbage once the shards exist: a local of the async scale worker
 * would stay reachable across its awaits and count a second copy of the data in the peak RSS.
 */
function syntheticClientData(config: SimulationConfig, clients: number) {
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
  return { shards: groupByClient(clientOrder(parts), train.features, train.labels), test };
}

async function scaleWorker(clients: number, rounds: number): Promise<ScaleResult> {
  await selectBackend({ log: false });
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
  const { shards, test } = syntheticClientData(config, clients);
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
  // The kernel's high-water mark for this process (KiB): a timer sampling RSS cannot run while
  // synchronous work (building the data, grouping it) holds the thread, and missed that peak.
  const peakRss = process.resourceUsage().maxRSS * 1024;
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

/**
 * Seconds per round of `preset` with its virtual clients trained by a pool of `workers` threads:
 * mnist-mlp (100 clients over 20,000 images, C = 0.1, E = 1, B = 10, IID) or imdb-glove (1,000
 * clients over 20,000 reviews, C = 0.1). Same seed, so both pool sizes do exactly the same work.
 */
async function poolRound(preset: string, workers: number, rounds: number, warmUpRounds: number): Promise<{ preset: string; workers: number; warmUpRounds: number; secondsPerRound: number[]; medianSeconds: number; medianSecondsAllRounds: number; finalAccuracy: number | null; mainBusySecondsPerRound: number; coresUsed: number }> {
  await selectBackend({ log: false });
  const config =
    preset === 'mnist-mlp'
      ? resolveConfig('mnist-mlp', { clients: 100, fractionFit: 0.1, epochs: 1, batchSize: 10, trainExamples: 20_000, testExamples: 2000, rounds, mode: 'virtual', partition: { scheme: 'iid', alpha: 0.5, beta: 0.5, shardsPerClient: 2 } })
      : preset === 'fashion-transfer'
        ? resolveConfig('fashion-transfer', { rounds, mode: 'virtual' })
        : resolveConfig('imdb-glove', { clients: 1000, fractionFit: 0.1, trainExamples: 20_000, rounds, mode: 'virtual' });
  const data = await loadSimulationData(config);
  const { base } = await openSimulationBase(config.base);
  const cache = simulationCache();
  const trainFeatures = await featuresOf(base, data.train, cache);
  const testFeatures = await featuresOf(base, data.test, cache);
  const { scheme, alpha, beta, shardsPerClient } = config.partition;
  const parts = partition(data.train.labels, { scheme, numClients: config.clients, seed: config.seed, numClasses: data.train.classNames.length, alpha, beta, shardsPerClient });
  const shards = groupByClient(clientOrder(parts), trainFeatures, data.train.labels);
  // 0 workers: the clients train in this thread (no pool), the yardstick of a fine-tuning run.
  const pool = workers > 0 ? await startTrainingPool({ config, base }, shards, workers) : null;
  // Measured from the end of the last warm-up round (onRound runs in round order). With the pool,
  // server evaluation overlaps the next round's training, so round W's onRound runs while round W+1
  // trains; but the loop times round W+1 from that same moment (`seconds` counts from the later of
  // its start and round W's completion, server/round-loop.ts), so this window is exactly the rounds
  // W+1…R as their `seconds` count them: one period per round, each from one completion to the next.
  let idleBefore = performance.eventLoopUtilization();
  let cpuBefore = process.cpuUsage();
  let wallBefore = performance.now();
  const onRound = (record: { round: number }) => {
    if (record.round !== warmUpRounds) return;
    idleBefore = performance.eventLoopUtilization();
    cpuBefore = process.cpuUsage();
    wallBefore = performance.now();
  };
  // A fine-tuning recipe (fashion-transfer) trains on the raw sets' features at each stage's boundary.
  const fineTuning = config.trainable ? { parts, trainDataset: data.train, testDataset: data.test } : {};
  const federation = new VirtualFederation({ config, base, baseDirectory: null, shards, pool, testFeatures, testLabels: data.test.labels, mode: 'virtual', label: 'bench', logger: quiet, onRound, ...fineTuning });
  const history = (await federation.run()).history;
  // What stays serial: the time the main thread (opening, aggregation) was busy; and the CPU time
  // of every thread of this process over wall time: the cores the run really got.
  const mainBusy = performance.eventLoopUtilization(idleBefore).active / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const coresUsed = (cpu.user + cpu.system) / 1000 / (performance.now() - wallBefore);
  federation.dispose();
  await pool?.close();
  base.dispose();
  const seconds = history.map((r) => r.seconds);
  const measured = seconds.slice(warmUpRounds);
  return { preset, workers, warmUpRounds, secondsPerRound: seconds, medianSeconds: median(measured), medianSecondsAllRounds: median(seconds), finalAccuracy: history.at(-1)?.serverAccuracy ?? null, mainBusySecondsPerRound: mainBusy / Math.max(1, measured.length), coresUsed };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1] ?? Number.NaN;
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
} else if (worker === 'pool') {
  console.log(JSON.stringify(await poolRound(args.get('preset') ?? 'mnist-mlp', intListArg(args, 'workers', 0)?.[0] ?? 1, rounds, intListArg(args, 'warm-up')?.[0] ?? 0)));
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
        target: row.clients >= 10_000 ? `${row.clients.toLocaleString('en-US')} clients in 2 GB` : '—',
        status: row.clients >= 10_000 ? (Number(row['peak RSS MB']) <= 2048 ? 'met' : 'missed') : '—',
      })),
    ...(imdb ? [{ measurement: `imdb-glove round, ${imdb.perRound} of ${imdb.clients} clients sampled`, result: `${round3(imdb.medianSeconds)} s/round (median of ${imdb.secondsPerRound.length}); ${round3(imdb.updatesPerSecond)} updates/s`, ratio: '—', target: '—', status: '—' }] : []),
  ];
  // Worker pool: each preset with 1 and with 2 training threads, one fresh process each, interleaved.
  const poolSizes = args.has('no-pool') ? [] : (intListArg(args, 'pool', 0) ?? [1, 2]);
  type PoolResult = Awaited<ReturnType<typeof poolRound>>;
  const pools: PoolResult[] = [];
  const poolPresets = args.get('pool-presets')?.split(',') ?? POOL_PRESETS;
  for (const preset of poolSizes.length > 0 ? poolPresets : []) {
    for (const workers of poolSizes) {
      console.log(`pool: ${preset} with ${workers} training worker(s) …`);
      const warmUp = POOL_WARM_UP_ROUNDS[preset] ?? 0;
      pools.push(await inChild<PoolResult>(['--worker', 'pool', '--preset', preset, '--workers', String(workers), '--rounds', String(warmUp + Math.max(POOL_ROUNDS, rounds)), '--warm-up', String(warmUp)]));
    }
  }
  const poolRows = pools.map((p) => {
    const one = pools.find((q) => q.preset === p.preset && q.workers === 1);
    const inThread = pools.find((q) => q.preset === p.preset && q.workers === 0);
    return { preset: p.preset, workers: p.workers, 'warm-up rounds': p.warmUpRounds, 's/round (median)': round3(p.medianSeconds), 'speed-up vs 1 worker': one ? round3(one.medianSeconds / p.medianSeconds) : '—', 'speed-up, all rounds': one ? round3(one.medianSecondsAllRounds / p.medianSecondsAllRounds) : '—', 'speed-up vs main thread': inThread ? round3(inThread.medianSeconds / p.medianSeconds) : '—', accuracy: p.finalAccuracy === null ? '—' : round3(p.finalAccuracy), 'main thread busy s/round': round3(p.mainBusySecondsPerRound), 'cores used': round3(p.coresUsed) };
  });
  if (poolRows.length > 0) printTable(poolRows);
  for (const row of poolRows.filter((r) => r.workers === 2)) {
    if (row.preset === 'fashion-transfer') {
      summary.push({ measurement: 'fashion-transfer fine-tuning rounds, 2 training workers vs the main thread', result: `${row['s/round (median)']} s/round`, ratio: `${row['speed-up vs main thread']}×`, target: '—', status: '—' });
      continue;
    }
    summary.push({ measurement: `${row.preset} virtual clients, 2 training workers vs 1`, result: `${row['s/round (median)']} s/round`, ratio: `${row['speed-up vs 1 worker']}×`, target: '≥ 1.7×', status: Number(row['speed-up vs 1 worker']) >= 1.7 ? 'met' : 'missed' });
  }
  const file = writeResults(args.get('results') ?? 'simulation', { params: { counts, rounds, examplesPerClient: EXAMPLES_PER_CLIENT, features: FEATURES, poolSizes, poolPresets }, scale, rows, imdb, pools: poolRows, summary });
  console.log(`wrote ${file}`);
}
