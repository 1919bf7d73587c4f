/**
 * Benchmark: the two delta kernels of `shared/math/delta-kernels.ts` in WebAssembly SIMD (arrays in
 * a `KernelMemory`, as an ingest worker keeps them) against the same functions in JavaScript (plain
 * arrays), side by side on `--values` float32 values (1M by default, a 1M-parameter update):
 * - the sum of squares (the update envelope's range, finiteness and L2 checks), ms per update;
 * - the four-wide fold `acc += (wa·a + wb·b) + (wc·c + wd·d)` into a float64 sum, ms per pass of
 *   four updates (and per update).
 *
 * Each of `--pairs` interleaved pairs times JavaScript, then SIMD, each for at least `--ms`
 * milliseconds (bench-util's `timeSync`); the ratio reported is the median of the pairs' ratios
 * (`medianRatio`), so a change of load between pairs cancels. One thread. Before timing, both paths
 * must give bit-identical results and the SIMD path must actually be taken (`inKernelMemory`), or the
 * script exits non-zero without writing a figure.
 *
 * Run: `npm run bench:delta-kernels [-- --values 1M] [--pairs 7] [--ms 200]` (about 10 s).
 * Writes `scripts/bench/results/delta-kernels.json`.
 */
import { foldQuad, inKernelMemory, KernelMemory, sumOfSquares } from '../../shared/math/delta-kernels.ts';
import { createRandom } from '../../shared/math/random.ts';
import { intListArg, median, medianRatio, pairOf, parseArgs, printTable, round3, timeSync, writeResults, type Pair } from './bench-util.ts';

const args = parseArgs();
/** @default 1M values (a 1M-parameter update). */
const n = intListArg(args, 'values')?.[0] ?? 1_000_000;
/** @default 7 interleaved pairs. */
const pairs = intListArg(args, 'pairs')?.[0] ?? 7;
/** @default 200 ms of calls per side of a pair. */
const minMs = intListArg(args, 'ms')?.[0] ?? 200;

function fail(message: string): never {
  console.error(`MISMATCH ${message}`);
  process.exit(1);
}

const rng = createRandom(7);
const deltas = [0, 1, 2, 3].map(() => Float32Array.from({ length: n }, () => (rng.nextFloat() * 2 - 1) * 0.01));
const weights = [17, 5, 1, 250.5] as const;

const kernel = KernelMemory.create();
if (kernel === null) fail('no WebAssembly SIMD on this engine: nothing to compare');
// The ingest worker's layout (server/update-ingest-service.ts): the float64 sum, then four float32 buffers.
if (!kernel.reserve(8 * n + 4 * 4 * n)) fail(`${n} values do not fit a kernel memory`);
const simdSum = new Float64Array(kernel.buffer, 0, n);
const simdDeltas = deltas.map((delta, k) => {
  const view = new Float32Array(kernel.buffer, 8 * n + 4 * n * k, n);
  view.set(delta);
  return view;
});
const plainSum = new Float64Array(n);
if (!inKernelMemory(simdSum, ...simdDeltas) || inKernelMemory(plainSum) || inKernelMemory(deltas[0]!)) fail('the two sides do not take the paths they are meant to');

const fold = (acc: Float64Array, d: Float32Array[]): void => foldQuad(acc, d[0]!, weights[0], d[1]!, weights[1], d[2]!, weights[2], d[3]!, weights[3]);

// Correctness first: the same sums and the same folded values, bit for bit.
for (let k = 0; k < 4; k++) {
  if (!Object.is(sumOfSquares(simdDeltas[k]!), sumOfSquares(deltas[k]!))) fail(`sum of squares of delta ${k} differs between SIMD and JavaScript`);
}
fold(simdSum, simdDeltas);
fold(plainSum, deltas);
for (let i = 0; i < n; i++) if (!Object.is(simdSum[i], plainSum[i])) fail(`fold: element ${i} is ${simdSum[i]} in SIMD, ${plainSum[i]} in JavaScript`);

let sink = 0;
const measure = (js: () => void, simd: () => void): Pair[] =>
  Array.from({ length: pairs }, () => pairOf(timeSync(js, { minMs }).msPerCall, timeSync(simd, { minMs }).msPerCall));
const sumPairs = measure(
  () => (sink += sumOfSquares(deltas[0]!)),
  () => (sink += sumOfSquares(simdDeltas[0]!)),
);
const foldPairs = measure(
  () => fold(plainSum, deltas),
  () => fold(simdSum, simdDeltas),
);
if (!Number.isFinite(sink)) fail('the timed sums were not finite');

const row = (kernelName: string, perUpdate: number, list: Pair[]) => ({
  kernel: kernelName,
  'JavaScript ms': round3(median(list.map((p) => p.baselineMs))),
  'SIMD ms': round3(median(list.map((p) => p.candidateMs))),
  'JavaScript ms/update': round3(median(list.map((p) => p.baselineMs)) / perUpdate),
  'SIMD ms/update': round3(median(list.map((p) => p.candidateMs)) / perUpdate),
  'SIMD speed-up': round3(medianRatio(list)),
  'pair ratios': list.map((p) => round3(p.ratio)).join(', '),
});
const results = [row(`sum of squares, ${n} values`, 1, sumPairs), row(`four-wide fold, ${n} values × 4 updates`, 4, foldPairs)];
printTable(results);

const values = n >= 1e6 && n % 1e6 === 0 ? `${n / 1e6}M` : String(n);
const path = writeResults('delta-kernels', {
  params: { values: n, pairs, minMsPerSide: minMs },
  results,
  pairs: { sumOfSquares: sumPairs, foldQuad: foldPairs },
  summary: results.map((r) => ({
    measurement: `${r.kernel.startsWith('sum') ? 'sum of squares' : 'four-wide fold'} of ${values} values, SIMD vs JavaScript (one thread)`,
    result: `SIMD ${r['SIMD ms/update']} ms vs JavaScript ${r['JavaScript ms/update']} ms per update`,
    ratio: `${r['SIMD speed-up']}× (median of ${pairs} pairs)`,
  })),
});
console.log(`wrote ${path}`);
