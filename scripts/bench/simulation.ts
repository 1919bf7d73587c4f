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
 *   (`--pool 1,2`), **side by side in one fresh process per preset**: each pool size's pool warms up
 *   over 8 (mnist-mlp) or 30 (imdb-glove) rounds, then `--cycles` (3) cycles each run one
 *   federation of 1 + 5 rounds per pool size, back to back, in alternating order (1, 2 | 2, 1 |
 *   1, 2), timing the 5 rounds after each federation's first. Each cycle gives a ratio of the two
 *   blocks' medians; the speed-up is the median of the cycles' ratios (each is printed). Pool runs
 *   in separate processes minutes apart gave 1.18–1.91× for the same build on the idle machine,
 *   the 1-worker run being the one that moved (0.30–0.50 s a round), so the sizes are now timed
 *   back to back. Every block must end with the same accuracy (same seed, same rounds), or the
 *   run fails. Also the main thread's busy seconds per measured round (event-loop utilization):
 *   what stays on it whatever the pool size, and the cores the process got (CPU time of all its
 *   threads over wall time).
 *   `--pool-presets fashion-transfer` measures fine-tuning rounds the same way, except that a pool
 *   is set up for one fine-tuning federation, so each block starts a fresh pool and trains the main
 *   job's recipe (6 clients, the head for two rounds, then the base's top convolution too): 3
 *   warm-up rounds (the head-only ones and the first at the new boundary), then 5 fine-tuning
 *   rounds; `--pool 0,1,2` adds the main thread (no pool) for comparison.
 *
 * Run: `npx tsx scripts/bench/simulation.ts [--clients 100,1000,10000] [--rounds 3] [--no-imdb] [--pool 1,2 | --no-pool] [--pool-presets mnist-mlp,imdb-glove] [--cycles 3] [--results simulation]`
 * (`--rounds` sets the scale and imdb-glove runs' rounds; the pool runs' rounds are fixed above.)
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
import type { TrainingPool } from '../simulation/training-pool.ts';
import { featuresOf, loadSimulationData, openSimulationBase, simulationCache } from '../simulation/simulation-data.ts';
import { VirtualIdentities } from '../simulation/virtual-identities.ts';
import { intListArg, median, parseArgs, printTable, round3, writeResults } from './bench-util.ts';

const args = parseArgs();
const quiet: Logger = { debug() {}, info() {}, warn: (m) => console.warn(m), error: (m) => console.error(m) };
const MB = 1024 * 1024;
const EXAMPLES_PER_CLIENT = 20;
/** Rounds each measured block of a pool run times, after its first (a fresh federation's set-up). */
const POOL_BLOCK_ROUNDS = 5;
/** Cycles of a pool run: one measured block per pool size each (`--cycles`). */
const POOL_CYCLES = 3;
/**
 * Rounds each pool size's pool trains before its measured blocks (a fine-tuning recipe: at the
 * start of each block): every training worker is a fresh V8 isolate that compiles TensorFlow.js's
 * JavaScript for itself, on V8's background threads, which compete with the workers for the cores.
 * Sampled per thread (/proc) on imdb-glove with one worker, that compilation cost 0.13–0.22 CPU-s a
 * round for the first 15 rounds (100 clients a round) and about 0.04 from round 17; with two
 * workers each sees half the jobs, so it takes about twice as many rounds to settle. On mnist-mlp
 * (10 clients a round of 20 steps each) it settled within 5 rounds.
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
  return {
    clients: config.clients,
    perRound: history[0]?.selected ?? 0,
    secondsPerRound: seconds,
    medianSeconds: seconds.length > 0 ? median(seconds) : Number.NaN,
    updatesPerSecond: history.reduce((s, r) => s + r.accepted, 0) / seconds.reduce((a, b) => a + b, 0),
    finalAccuracy: history.at(-1)?.serverAccuracy ?? null,
  };
}

/** What every block of a preset's pool runs shares: the data, grouped by client, and the base. */
interface PoolSetup {
  preset: string;
  configFor: (rounds: number) => SimulationConfig;
  federationInput: (config: SimulationConfig) => Omit<ConstructorParameters<typeof VirtualFederation>[0], 'pool' | 'onRound'>;
  base: Awaited<ReturnType<typeof openSimulationBase>>['base'];
  shards: ReturnType<typeof groupByClient>;
}

/**
 * mnist-mlp (100 clients over 20,000 images, C = 0.1, E = 1, B = 10, IID), imdb-glove (1,000
 * clients over 20,000 reviews, C = 0.1) or fashion-transfer (its fine-tuning recipe): data, features
 * and shards built once for every block of the run.
 */
async function poolSetup(preset: string): Promise<PoolSetup> {
  await selectBackend({ log: false });
  const configFor = (rounds: number) =>
    preset === 'mnist-mlp'
      ? resolveConfig('mnist-mlp', { clients: 100, fractionFit: 0.1, epochs: 1, batchSize: 10, trainExamples: 20_000, testExamples: 2000, rounds, mode: 'virtual', partition: { scheme: 'iid', alpha: 0.5, beta: 0.5, shardsPerClient: 2 } })
      : preset === 'fashion-transfer'
        ? resolveConfig('fashion-transfer', { rounds, mode: 'virtual' })
        : resolveConfig('imdb-glove', { clients: 1000, fractionFit: 0.1, trainExamples: 20_000, rounds, mode: 'virtual' });
  const config = configFor(1);
  const data = await loadSimulationData(config);
  const { base } = await openSimulationBase(config.base);
  const cache = simulationCache();
  const trainFeatures = await featuresOf(base, data.train, cache);
  const testFeatures = await featuresOf(base, data.test, cache);
  const { scheme, alpha, beta, shardsPerClient } = config.partition;
  const parts = partition(data.train.labels, { scheme, numClients: config.clients, seed: config.seed, numClasses: data.train.classNames.length, alpha, beta, shardsPerClient });
  const shards = groupByClient(clientOrder(parts), trainFeatures, data.train.labels);
  // A fine-tuning recipe (fashion-transfer) trains on the raw sets' features at each stage's boundary.
  const fineTuning = config.trainable ? { parts, trainDataset: data.train, testDataset: data.test } : {};
  const federationInput = (roundConfig: SimulationConfig) => ({ config: roundConfig, base, baseDirectory: null, shards, testFeatures, testLabels: data.test.labels, mode: 'virtual' as const, label: 'bench', logger: quiet, ...fineTuning });
  return { preset, configFor, federationInput, base, shards };
}

/** One federation of a pool run: its rounds' seconds, and what the rounds after `skip` cost. */
interface PoolBlock {
  workers: number;
  /** The cycle the block belongs to; -1 for a warm-up block. */
  cycle: number;
  secondsPerRound: number[];
  /** Median seconds of the rounds after the block's first `skip`. */
  medianSeconds: number;
  finalAccuracy: number | null;
  /** The main thread's busy seconds over the measured rounds (event-loop utilization). */
  mainBusySeconds: number;
  /** CPU seconds of every thread of the process, and wall seconds, over the measured rounds. */
  cpuSeconds: number;
  wallSeconds: number;
  measuredRounds: number;
}

/**
 * Runs one federation of `rounds` rounds with its clients trained by `pool` (null: in this thread),
 * measuring the rounds after the first `skip`.
 */
async function poolBlock(setup: PoolSetup, pool: TrainingPool | null, workers: number, cycle: number, rounds: number, skip: number): Promise<PoolBlock> {
  // Measured from the end of round `skip` (onRound runs in round order). With the pool, server
  // evaluation overlaps the next round's training, so round W's onRound runs while round W+1
  // trains; but the loop times round W+1 from that same moment (`seconds` counts from the later of
  // its start and round W's completion, server/round-loop.ts), so this window is exactly the rounds
  // W+1…R as their `seconds` count them: one period per round, each from one completion to the next.
  let idleBefore = performance.eventLoopUtilization();
  let cpuBefore = process.cpuUsage();
  let wallBefore = performance.now();
  const onRound = (record: { round: number }) => {
    if (record.round !== skip) return;
    idleBefore = performance.eventLoopUtilization();
    cpuBefore = process.cpuUsage();
    wallBefore = performance.now();
  };
  const federation = new VirtualFederation({ ...setup.federationInput(setup.configFor(rounds)), pool, onRound });
  try {
    const history = (await federation.run()).history;
    const mainBusy = performance.eventLoopUtilization(idleBefore).active / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    const wallSeconds = (performance.now() - wallBefore) / 1000;
    const seconds = history.map((r) => r.seconds);
    const measured = seconds.slice(skip);
    return { workers, cycle, secondsPerRound: seconds, medianSeconds: measured.length > 0 ? median(measured) : Number.NaN, finalAccuracy: history.at(-1)?.serverAccuracy ?? null, mainBusySeconds: mainBusy, cpuSeconds: (cpu.user + cpu.system) / 1e6, wallSeconds, measuredRounds: measured.length };
  } finally {
    federation.dispose();
  }
}

/**
 * Seconds per round of `preset` with its virtual clients trained by pools of each size in `sizes`
 * (0: in this thread), side by side in this one process: each size's pool warms up (every worker
 * is a fresh V8 isolate that compiles TensorFlow.js for itself), then `cycles` cycles each run one
 * federation per size, in alternating order (1, 2 | 2, 1 | 1, 2 …). A cycle's blocks run back to
 * back, so a change in how fast the machine runs the same work (measured: one worker's identical
 * rounds moved from 1.4 to 2.1 CPU-seconds within a minute, other work on the machine) moves both
 * sides of a cycle together; each cycle gives a ratio, and the figure is their median. A
 * fine-tuning recipe sets up its pool for one federation, so each of its blocks starts a fresh
 * pool and measures the rounds after its warm-up rounds.
 */
async function poolRuns(preset: string, sizes: readonly number[], cycles: number) {
  const setup = await poolSetup(preset);
  const warmUp = POOL_WARM_UP_ROUNDS[preset] ?? 0;
  const fineTuning = Boolean(setup.configFor(1).trainable);
  const start = (workers: number) => (workers > 0 ? startTrainingPool({ config: setup.configFor(1), base: setup.base }, setup.shards, workers) : Promise.resolve(null));
  const blocks: PoolBlock[] = [];
  const pools = new Map<number, TrainingPool | null>();
  try {
    if (!fineTuning) {
      for (const workers of sizes) {
        const pool = await start(workers);
        pools.set(workers, pool);
        if (warmUp > 0) blocks.push(await poolBlock(setup, pool, workers, -1, warmUp, warmUp));
      }
    }
    for (let cycle = 0; cycle < cycles; cycle++) {
      for (const workers of cycle % 2 === 0 ? sizes : [...sizes].reverse()) {
        if (fineTuning) {
          const pool = await start(workers);
          try {
            blocks.push(await poolBlock(setup, pool, workers, cycle, warmUp + POOL_BLOCK_ROUNDS, warmUp));
          } finally {
            await pool?.close();
          }
        } else {
          blocks.push(await poolBlock(setup, pools.get(workers) ?? null, workers, cycle, 1 + POOL_BLOCK_ROUNDS, 1));
        }
      }
    }
  } finally {
    for (const pool of pools.values()) await pool?.close();
    setup.base.dispose();
  }
  // Same seed, same rounds: every measured block must end with the same model whatever the pool size.
  const accuracies = new Set(blocks.filter((b) => b.cycle >= 0).map((b) => b.finalAccuracy));
  if (accuracies.size !== 1 || accuracies.has(null)) throw new Error(`${preset}: the pool sizes ended with different accuracies (${[...accuracies].join(', ')})`);
  return { preset, sizes, cycles, warmUpRounds: warmUp, blockRounds: POOL_BLOCK_ROUNDS, blocks };
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
  console.log(JSON.stringify(await poolRuns(args.get('preset') ?? 'mnist-mlp', intListArg(args, 'pool', 0) ?? [1, 2], intListArg(args, 'cycles')?.[0] ?? POOL_CYCLES)));
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
  // Worker pool: each preset in one fresh process, its pool sizes side by side in cycles (poolRuns).
  const poolSizes = args.has('no-pool') ? [] : (intListArg(args, 'pool', 0) ?? [1, 2]);
  const cycles = intListArg(args, 'cycles')?.[0] ?? POOL_CYCLES;
  if (!(cycles >= 1)) throw new Error(`--cycles must be at least 1, got ${cycles}`);
  type PoolRun = Awaited<ReturnType<typeof poolRuns>>;
  const poolRunsDone: PoolRun[] = [];
  const poolPresets = args.get('pool-presets')?.split(',') ?? POOL_PRESETS;
  for (const preset of poolSizes.length > 0 ? poolPresets : []) {
    console.log(`pool: ${preset} with ${poolSizes.join(', ')} training worker(s), ${cycles} cycles …`);
    poolRunsDone.push(await inChild<PoolRun>(['--worker', 'pool', '--preset', preset, '--pool', poolSizes.join(','), '--cycles', String(cycles)]));
  }
  const poolRows = poolRunsDone.flatMap((run) => {
    const measured = run.blocks.filter((b) => b.cycle >= 0);
    const blockOf = (workers: number, cycle: number) => measured.find((b) => b.workers === workers && b.cycle === cycle);
    // Per cycle, the reference size's block median over this size's: blocks of one cycle ran back to back.
    const perCycle = (reference: number, workers: number) =>
      run.sizes.includes(reference) ? Array.from({ length: run.cycles }, (_, c) => blockOf(reference, c)!.medianSeconds / blockOf(workers, c)!.medianSeconds) : [];
    return run.sizes.map((workers) => {
      const mine = measured.filter((b) => b.workers === workers);
      const vsOne = perCycle(1, workers);
      const vsThread = perCycle(0, workers);
      const sum = (key: 'mainBusySeconds' | 'cpuSeconds' | 'wallSeconds' | 'measuredRounds') => mine.reduce((total, b) => total + b[key], 0);
      return {
        preset: run.preset,
        workers,
        'rounds measured': sum('measuredRounds'),
        's/round (median)': round3(median(mine.flatMap((b) => b.secondsPerRound.slice(b.secondsPerRound.length - b.measuredRounds)))),
        'speed-up vs 1 worker': vsOne.length > 0 ? round3(median(vsOne)) : '—',
        'per cycle': vsOne.length > 0 ? vsOne.map(round3).join(' / ') : '—',
        'speed-up vs main thread': vsThread.length > 0 ? round3(median(vsThread)) : '—',
        accuracy: mine[0]?.finalAccuracy == null ? '—' : round3(mine[0].finalAccuracy),
        'main thread busy s/round': round3(sum('mainBusySeconds') / sum('measuredRounds')),
        'cores used': round3(sum('cpuSeconds') / sum('wallSeconds')),
      };
    });
  });
  if (poolRows.length > 0) printTable(poolRows);
  for (const row of poolRows.filter((r) => r.workers === 2)) {
    if (row.preset === 'fashion-transfer') {
      summary.push({ measurement: 'fashion-transfer fine-tuning rounds, 2 training workers vs the main thread', result: `${row['s/round (median)']} s/round`, ratio: `${row['speed-up vs main thread']}×`, target: '—', status: '—' });
      continue;
    }
    summary.push({ measurement: `${row.preset} virtual clients, 2 training workers vs 1 (median of ${cycles} side-by-side cycles: ${row['per cycle']})`, result: `${row['s/round (median)']} s/round`, ratio: `${row['speed-up vs 1 worker']}×`, target: '≥ 1.7×', status: Number(row['speed-up vs 1 worker']) >= 1.7 ? 'met' : 'missed' });
  }
  const file = writeResults(args.get('results') ?? 'simulation', { params: { counts, rounds, examplesPerClient: EXAMPLES_PER_CLIENT, features: FEATURES, poolSizes, poolPresets, cycles, blockRounds: POOL_BLOCK_ROUNDS }, scale, rows, imdb, pools: poolRows, poolBlocks: poolRunsDone.map(({ preset, blocks }) => ({ preset, blocks })), summary });
  console.log(`wrote ${file}`);
}
