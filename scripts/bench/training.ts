/**
 * Benchmark (2): a client's local training. For each backend (wasm, cpu) and each real base
 * (`glove-100d` on IMDB reviews, `mobilenet-v2-96` on MNIST or Fashion-MNIST digits), measured in
 * one run:
 *
 * - **forward**: the frozen base's throughput (examples/s) through `extractFeatures`, the same
 *   batching the client uses;
 * - **cached**: a round's local work as fedtl does it — E epochs of head training on features
 *   computed once (`trainHead` with `epochs: E`);
 * - **naive**: the same E epochs with the frozen base re-run over the data before every epoch
 *   (E × (forward + one epoch)), what a pipeline without the feature cache pays.
 *
 * Reports examples/s (examples × E / seconds), the ratio naive/cached time (the speed-up), the
 * cost ratio cached/naive and whether it meets the target "a round's local work costs ≤ 1/E of the
 * naive pipeline". The one-off feature extraction is reported separately (`forward s`): it is paid
 * once per data set, on the first round, not per round.
 *
 * Run: `npx tsx scripts/bench/training.ts [--backends wasm,cpu] [--epochs 1,5] [--texts 1000]
 *   [--texts-cpu 400] [--images 128] [--images-cpu 8] [--image-data mnist|fashion] [--batch 32] [--reps 1]`
 * The cpu backend is ~5–20× slower, hence smaller default counts there; a default run takes ~1.5 min.
 * Writes `scripts/bench/results/training.json`.
 */
import * as tf from '@tensorflow/tfjs';
import { subset, type LabeledDataset } from '../../client/data/dataset.ts';
import { loadFashionMnist } from '../../client/data/fashion-mnist.ts';
import { loadImdb } from '../../client/data/imdb.ts';
import { loadMnist } from '../../client/data/mnist.ts';
import { batchSourceFor } from '../../client/features.ts';
import { openBase } from '../../shared/bases/index.ts';
import type { Logger } from '../../shared/core/log.ts';
import { extractFeatures } from '../../shared/model/feature-cache.ts';
import type { FeatureMatrix } from '../../shared/model/feature-matrix.ts';
import { buildHead, getHeadWeights, setHeadWeights, type HeadSpec } from '../../shared/model/head.ts';
import { trainHead } from '../../shared/model/head-training.ts';
import { isBackendName, selectBackend, type BackendName } from '../../shared/tf/select-backend.ts';
import { intListArg, parseArgs, printTable, round3, writeResults } from './bench-util.ts';

const args = parseArgs();
const backends = (args.get('backends') ?? 'wasm,cpu').split(',').map((name) => {
  if (!isBackendName(name)) throw new Error(`--backends: '${name}' is not a backend (tensorflow, wasm, cpu)`);
  return name;
});
const epochsList = intListArg(args, 'epochs') ?? [1, 5];
const textCount = intListArg(args, 'texts')?.[0] ?? 1000;
const textCountCpu = intListArg(args, 'texts-cpu')?.[0] ?? 400;
const imageCount = intListArg(args, 'images')?.[0] ?? 128;
const imageCountCpu = intListArg(args, 'images-cpu')?.[0] ?? 8;
const imageData = args.get('image-data') ?? 'mnist';
if (imageData !== 'mnist' && imageData !== 'fashion') throw new Error(`--image-data must be mnist or fashion, got '${imageData}'`);
const batchSize = intListArg(args, 'batch')?.[0] ?? 32;
const reps = intListArg(args, 'reps')?.[0] ?? 1;

interface Task {
  base: string;
  data: string;
  head: HeadSpec;
  /** Examples on this backend. */
  count(backend: BackendName): number;
  load(count: number): Promise<LabeledDataset>;
}

const TASKS: Task[] = [
  {
    base: 'glove-100d',
    data: 'imdb',
    head: { hidden: [64], activation: 'relu', dropout: 0, classes: 2 },
    count: (backend) => (backend === 'cpu' ? textCountCpu : textCount),
    load: (count) => loadImdb({ limit: count, seed: 1 }),
  },
  {
    base: 'mobilenet-v2-96',
    data: imageData === 'fashion' ? 'fashion-mnist' : 'mnist',
    head: { hidden: [256], activation: 'relu', dropout: 0, classes: 10 },
    count: (backend) => (backend === 'cpu' ? imageCountCpu : imageCount),
    load: (count) => (imageData === 'fashion' ? loadFashionMnist({ split: 'train', limit: count, seed: 1 }) : loadMnist({ split: 'train', limit: count, seed: 1 })),
  },
];

type Row = Record<string, string | number>;
const rows: Row[] = [];
const forwardRows: Row[] = [];
const skipped: { backend: string; reason: string }[] = [];
const started = performance.now();
const datasets = new Map<string, LabeledDataset>();
const quietLogger: Logger = { debug() {}, info() {}, warn: (m) => console.warn(m), error: (m) => console.error(m) };

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t = performance.now();
  const value = await fn();
  return { ms: performance.now() - t, value };
}

for (const backend of backends) {
  try {
    await selectBackend({ prefer: backend, log: false });
  } catch (error) {
    skipped.push({ backend, reason: (error as Error).message.split('\n')[0] ?? '' });
    console.log(`skipping backend ${backend}: ${(error as Error).message.split('\n')[0]}`);
    continue;
  }
  for (const task of TASKS) {
    const n = task.count(backend);
    const key = `${task.data}:${n}`;
    let dataset = datasets.get(key);
    if (!dataset) {
      const largest = [...datasets.entries()].find(([k, d]) => k.startsWith(`${task.data}:`) && d.size >= n)?.[1];
      dataset = largest ? subset(largest, Array.from({ length: n }, (_, i) => i)) : await task.load(n);
      datasets.set(key, dataset);
    }
    const base = await openBase(task.base, { logger: quietLogger });
    const tensorsBefore = tf.memory().numTensors;
    const source = batchSourceFor(base, dataset);
    const extract = (): Promise<FeatureMatrix> => extractFeatures(base, n, source, { batchSize: 64 });
    // Warm-up: kernels compile / JIT on the first batch.
    await extractFeatures(base, Math.min(n, 8), source, { batchSize: 8 });
    let forwardMs = Infinity;
    let features!: FeatureMatrix;
    for (let r = 0; r < reps; r++) {
      const run = await timed(extract);
      forwardMs = Math.min(forwardMs, run.ms);
      features = run.value;
    }
    forwardRows.push({ backend, base: task.base, examples: n, 'forward ex/s': round3((n * 1000) / forwardMs), 'ms/example': round3(forwardMs / n) });
    console.log(`${backend} ${task.base}: forward ${round3((n * 1000) / forwardMs)} ex/s over ${n} ${task.data} examples`);

    const head = buildHead(base.embeddingSize, task.head, { seed: 1 });
    const initial = getHeadWeights(head);
    const options = { batchSize, learningRate: 0.01, optimizer: 'adam' as const };
    await trainHead(head, { values: features.values.subarray(0, Math.min(n, batchSize) * features.cols), rows: Math.min(n, batchSize), cols: features.cols }, dataset.labels.subarray(0, Math.min(n, batchSize)), options);
    for (const epochs of epochsList) {
      let cachedMs = Infinity;
      let naiveMs = Infinity;
      let naiveForwardMs = 0;
      for (let r = 0; r < reps; r++) {
        // Interleaved, same starting head: only what the cache removes differs.
        setHeadWeights(head, initial);
        cachedMs = Math.min(cachedMs, (await timed(() => trainHead(head, features, dataset.labels, { ...options, epochs, seed: r }))).ms);
        setHeadWeights(head, initial);
        let forwardPart = 0;
        const naive = await timed(async () => {
          for (let epoch = 0; epoch < epochs; epoch++) {
            const f = await timed(extract); // the base re-runs every epoch
            forwardPart += f.ms;
            await trainHead(head, f.value, dataset.labels, { ...options, epochs: 1, seed: r * 1000 + epoch });
          }
        });
        if (naive.ms < naiveMs) {
          naiveMs = naive.ms;
          naiveForwardMs = forwardPart;
        }
      }
      const cost = cachedMs / naiveMs;
      const row: Row = {
        backend,
        base: task.base,
        data: task.data,
        examples: n,
        E: epochs,
        'cached ex/s': round3((n * epochs * 1000) / cachedMs),
        'naive ex/s': round3((n * epochs * 1000) / naiveMs),
        'cached/naive speed': round3(naiveMs / cachedMs),
        'cost cached/naive': round3(cost),
        'target ≤1/E': cost <= 1 / epochs ? 'met' : 'missed',
        'cached s': round3(cachedMs / 1000),
        'naive s': round3(naiveMs / 1000),
        'naive base share': round3(naiveForwardMs / naiveMs),
      };
      rows.push(row);
      console.log(`  E=${epochs}: cached ${row['cached ex/s']} ex/s, naive ${row['naive ex/s']} ex/s → ${row['cached/naive speed']}× (cost ${row['cost cached/naive']}, target ≤ ${round3(1 / epochs)}: ${row['target ≤1/E']})`);
    }
    head.dispose();
    base.dispose();
    const leaked = tf.memory().numTensors - tensorsBefore;
    if (leaked > 0) console.warn(`  note: ${leaked} tensor(s) still allocated after ${task.base} on ${backend}`);
  }
}

console.log('\nBase forward throughput');
printTable(forwardRows);
console.log('\nHead training, cached features vs re-running the base every epoch');
printTable(rows);
const path = writeResults('training', {
  params: { backends, epochs: epochsList, texts: textCount, textsCpu: textCountCpu, images: imageCount, imagesCpu: imageCountCpu, imageData, batchSize, reps, optimizer: 'adam', learningRate: 0.01 },
  target: "a round's local work (E epochs on cached features) costs <= 1/E of the naive pipeline (base re-run every epoch)",
  note: 'naive = E x (extractFeatures + trainHead 1 epoch); cached = trainHead E epochs on features extracted once. The one-off extraction is the forward row.',
  forward: forwardRows,
  results: rows,
  skipped,
  totalSeconds: round3((performance.now() - started) / 1000),
});
console.log(`\nwrote ${path} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
