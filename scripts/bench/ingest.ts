/**
 * Benchmark (1): coordinator ingest on the round loop's own path. N sealed updates of P parameters
 * are opened, validated and folded into the strategy's aggregation exactly as the coordinator does
 * it, side by side with plain accumulation of the very same Float32 deltas, in one run. Reports MB/s
 * of delta bytes, the ratio to plain (target ≥ 0.5× for P ≥ 1M) and CPU milliseconds per update
 * (all threads of the process, `process.cpuUsage`: what a path costs whatever the machine's load).
 *
 * Modes:
 * - plain: `acc[i] += w * delta[i]` over the plaintext deltas, one delta per pass (the floor: no
 *   security at all).
 * - roundloop-serial: a `FitRound` (server/round-state.ts) per round, as `RoundLoop` drives it,
 *   given the opener `startCoordinator` builds (`createUpdateOpener`, this thread) and the
 *   strategy's own aggregation (`FedAvg.aggregateFit`); each update goes through `FitRound.accept`
 *   (sender, replay and round checks, the example cap, the metric fold) and each round ends with
 *   `Aggregation.finish()`. The path with `ingestWorkers: 0`.
 * - roundloop-workers×W: the same rounds with the coordinator's worker ingest
 *   (server/update-ingest.ts, `ingestWorkers: W`): `FitRound.acceptAsync`, W workers that open and
 *   fold FedAvg's partial sums, `settle()` merging them.
 * - roundloop-open×W: the same, for a strategy that needs every update (FedAvg behind an identity
 *   `mapUpdates`, so no partial sums): workers open, the main thread adds in arrival order.
 * - roundloop: whichever of these the coordinator takes by default for a head of P parameters
 *   (`defaultIngestWorkers(P)`), reported as `roundloop/plain`: the figure the target is judged on.
 *
 * A round holds at most one update per client and per envelope (replays are refused there), so the
 * N updates are split into rounds of min(pool, 64 clients). Each round's envelope copies are made
 * before its clock starts: a coordinator receives every update in a fresh buffer from its socket,
 * which the workers then take over. Every mode runs once untimed first (JIT, key caches, worker
 * start-up, the workers' buffers) and its sum is checked against plain to 1e-9 relative (float64
 * reassociation), so both sides of the first timed pair start warm. Then each repetition times
 * every mode as a pair with its own plain run right before it (A B A B …); a mode's ratio is the
 * median of its pairs' ratios (every pair is printed and written to the JSON's `pairs`), its MB/s
 * and CPU the medians of its runs.
 *
 * Memory: a pool of distinct sealed envelopes (≤ `--pool-mb`, default 512) is built once and
 * cycled through; envelopes are independent, so reopening one costs the same as a new one
 * (replay detection is the coordinator's job, not the envelope's).
 *
 * Run: `npx tsx scripts/bench/ingest.ts [--n 1000] [--p 10k,100k,1M,5M] [--reps 3] [--pool-mb 512] [--workers 2]`
 * Without --n/--p a default mix runs in about a minute. Writes `results/ingest.json`.
 * `--workers` takes a list (e.g. `1,2,4`); one roundloop-workers and one roundloop-open column per entry. @default os.availableParallelism()
 */
import { availableParallelism } from 'node:os';
import { generateIdentity, type Identity, publicIdentity, type PublicIdentity } from '../../shared/crypto/identity.ts';
import { sealUpdate } from '../../shared/crypto/update-envelope.ts';
import { FitRound } from '../../server/round-state.ts';
import { defaultIngestWorkers, UpdateIngest } from '../../server/update-ingest.ts';
import { createUpdateOpener } from '../../server/update-opener.ts';
import { FedAvg, WeightedDeltaMean } from '../../shared/strategy/fed-avg.ts';
import { mapUpdates } from '../../shared/strategy/strategy-wrapper.ts';
import type { Aggregation } from '../../shared/strategy/strategy.ts';
import { intListArg, mbPerSecond, median, medianRatio, type Pair, pairOf, parseArgs, printTable, round3, writeResults } from './bench-util.ts';

const args = parseArgs();
const ns = intListArg(args, 'n');
const ps = intListArg(args, 'p');
const reps = intListArg(args, 'reps')?.[0] ?? 3;
const poolBytes = (intListArg(args, 'pool-mb')?.[0] ?? 512) * 1e6;
const workerCounts = intListArg(args, 'workers') ?? [availableParallelism()];
const MAX_CLIENTS = 64;

/** Default mix: ~0.4–0.8 GB of delta bytes per mode and size. */
const DEFAULT_CONFIGS: [number, number][] = [
  [1000, 10_000],
  [1000, 100_000],
  [200, 1_000_000],
  [40, 5_000_000],
];
const configs: [number, number][] =
  ns === undefined && ps === undefined
    ? DEFAULT_CONFIGS
    : (ns ?? [100]).flatMap((n) => (ps ?? [100_000]).map((p): [number, number] => [n, p]));

/** The aggregation step both paths share, so the ratio measures only what sealing adds. */
function accumulate(acc: Float64Array, delta: Float32Array, weight: number): void {
  const n = delta.length;
  for (let i = 0; i < n; i++) acc[i] = (acc[i] as number) + weight * (delta[i] as number);
}

const coordinator = generateIdentity();
const clients: Identity[] = Array.from({ length: MAX_CLIENTS }, () => generateIdentity());
const directory = new Map<string, PublicIdentity>(clients.map((c) => [publicIdentity(c).clientId, publicIdentity(c)]));
const coordinatorBoxKey = publicIdentity(coordinator).boxKey;

type Result = Record<string, string | number>;
const results: Result[] = [];
/** Every timed pair, in the order run (written to the JSON beside the medians). */
const pairs: Result[] = [];
const started = performance.now();
// The coordinator's default worker count for each head size is always measured (it is `roundloop`).
for (const [, P] of configs) {
  const w = defaultIngestWorkers(P);
  if (w > 0 && !workerCounts.includes(w)) workerCounts.push(w);
}
const ingests = new Map<number, UpdateIngest>();
for (const w of workerCounts) ingests.set(w, await UpdateIngest.start({ identity: coordinator, resolveClient: (id) => directory.get(id), workers: w }));

for (const [N, P] of configs) {
  const bytesPerUpdate = P * 4;
  const poolSize = Math.max(1, Math.min(N, Math.floor(poolBytes / (2 * bytesPerUpdate))));
  const deltas: Float32Array[] = [];
  const envelopes: Uint8Array[] = [];
  const senders: string[] = [];
  const weights: number[] = [];
  let sealMs = 0;
  for (let k = 0; k < poolSize; k++) {
    const delta = new Float32Array(P);
    let seed = (k + 1) * 2654435761;
    for (let i = 0; i < P; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      delta[i] = (seed / 2 ** 32 - 0.5) * 0.02;
    }
    const exampleCount = 50 + (k % 100);
    const t = performance.now();
    envelopes.push(
      sealUpdate(
        { header: { roundId: 'bench', exampleCount, metrics: { loss: 0.3 } }, delta },
        { clientIdentity: clients[k % MAX_CLIENTS] as Identity, coordinatorBoxKey },
      ),
    );
    sealMs += performance.now() - t;
    senders.push(publicIdentity(clients[k % MAX_CLIENTS] as Identity).clientId);
    deltas.push(delta);
    weights.push(exampleCount);
  }
  const plain = (): Float64Array => {
    const acc = new Float64Array(P);
    for (let k = 0; k < N; k++) accumulate(acc, deltas[k % poolSize] as Float32Array, weights[k % poolSize] as number);
    return acc;
  };

  // The round loop's path: one FitRound per round of distinct clients and envelopes, the
  // coordinator's opener, FedAvg's aggregation, finish() at each round's end.
  const roundOpener = createUpdateOpener(coordinator, (id) => directory.get(id));
  const strategy = new FedAvg();
  const global = new Float32Array(P);
  const perRound = Math.min(poolSize, MAX_CLIENTS);
  /**
   * `ingest` null: the serial path (`FitRound.accept`). Otherwise the worker ingest through
   * `FitRound.acceptAsync` and `settle()`; `openOnly` hides FedAvg's partial sums (as a robust or
   * clipping strategy would), so workers only open and the main thread adds. Each round's envelope
   * copies are made before its clock starts: a coordinator receives every update in a fresh buffer
   * from its socket, which the workers then take over.
   */
  const roundLoop = async (ingest: UpdateIngest | null, check: boolean, openOnly = false): Promise<{ ms: number; cpuMs: number; acc: Float64Array | null }> => {
    const acc = check ? new Float64Array(P) : null;
    let ms = 0;
    let cpuMs = 0;
    for (let first = 0, round = 1; first < N; first += perRound, round++) {
      const count = Math.min(perRound, N - first);
      const slots = Array.from({ length: count }, (_, j) => (first + j) % poolSize);
      const inputs = ingest === null ? slots.map((slot) => envelopes[slot] as Uint8Array) : slots.map((slot) => (envelopes[slot] as Uint8Array).slice());
      const cpu = process.cpuUsage();
      const t = performance.now();
      const mean = strategy.aggregateFit(round, global);
      const aggregation: Aggregation = openOnly ? mapUpdates(mean, (update) => update) : mean;
      const fit = new FitRound({
        round,
        roundId: 'bench',
        selected: slots.map((slot) => senders[slot] as string),
        timeoutMs: 3_600_000,
        aggregation,
        metrics: strategy.aggregateFitMetrics(round),
        openUpdate: roundOpener,
        parameterCount: P,
        ingest,
      });
      const acks = ingest === null ? slots.map((slot, j) => fit.accept(senders[slot] as string, inputs[j] as Uint8Array)) : await Promise.all(slots.map((slot, j) => fit.acceptAsync(senders[slot] as string, inputs[j] as Uint8Array)));
      fit.close();
      const settled = await fit.settle();
      for (const ack of acks) {
        if (!ack.ok || !settled) {
          console.error(`roundloop refused an update: ${JSON.stringify(ack)} (settled: ${settled})`);
          process.exit(1);
        }
      }
      fit.aggregation.finish();
      ms += performance.now() - t;
      const used = process.cpuUsage(cpu);
      cpuMs += (used.user + used.system) / 1000;
      if (acc !== null) {
        // Only for the check: Σ n_k Δ_k of this round, in float64, from the strategy's own state.
        const m = (mean as WeightedDeltaMean).meanDelta();
        for (let i = 0; i < P; i++) acc[i] = (acc[i] as number) + (m[i] as number) * mean.exampleCount;
      }
    }
    return { ms, cpuMs, acc };
  };

  // Warm up every path (JIT, key caches, worker start), and check they agree with plain: bit for
  // bit where the summation order is plain's, to 1e-9 relative (max-norm) for ingest.
  const reference = plain();
  const checks: [string, Float64Array, number][] = [['roundloop-serial', (await roundLoop(null, true)).acc!, 1e-9]];
  for (const [w, ingest] of ingests) {
    checks.push([`roundloop-workers(${w})`, (await roundLoop(ingest, true)).acc!, 1e-9]);
    checks.push([`roundloop-open(${w})`, (await roundLoop(ingest, true, true)).acc!, 1e-9]);
  }
  let refMax = 0;
  for (let i = 0; i < P; i++) refMax = Math.max(refMax, Math.abs(reference[i] as number));
  for (const [name, acc, tolerance] of checks) {
    for (let i = 0; i < P; i++) {
      if (!(Math.abs((acc[i] as number) - (reference[i] as number)) <= tolerance * refMax)) {
        console.error(`MISMATCH: ${name} sum differs from plain at ${i}: ${acc[i]} vs ${reference[i]} (N=${N}, P=${P}, tolerance ${tolerance})`);
        process.exit(1);
      }
    }
  }

  // Timed as interleaved pairs (bench-util `Pair`): in each repetition every mode runs right after
  // its own plain run, A B A B …, and the pair's ratio is plain's wall time over the mode's. The
  // figure reported for a mode is the median of its pairs' ratios: load that changes between pairs
  // moves both sides of a pair together, where best-of-reps per side compared a quiet moment of
  // plain with a busy one of the workers (plain alone moved 774–1,387 MB/s between runs). Both sides
  // ran untimed above (the check), so the first timed pair starts warm.
  const timePlain = async (): Promise<{ ms: number; cpuMs: number }> => {
    const cpu = process.cpuUsage();
    const t = performance.now();
    plain();
    const ms = performance.now() - t;
    const used = process.cpuUsage(cpu);
    return { ms, cpuMs: (used.user + used.system) / 1000 };
  };
  const runs: [string, () => Promise<{ ms: number; cpuMs: number }>][] = [
    ['serial', () => roundLoop(null, false)],
    ...[...ingests].flatMap(([w, ingest]): [string, () => Promise<{ ms: number; cpuMs: number }>][] => [
      [`rlw${w}`, () => roundLoop(ingest, false)],
      [`rlo${w}`, () => roundLoop(ingest, false, true)],
    ]),
  ];
  const measured = new Map<string, { pair: Pair; cpuMs: number; plainCpuMs: number }[]>();
  for (let r = 0; r < reps; r++) {
    for (const [key, run] of runs) {
      const a = await timePlain();
      const b = await run();
      const list = measured.get(key) ?? [];
      list.push({ pair: pairOf(a.ms, b.ms), cpuMs: b.cpuMs, plainCpuMs: a.cpuMs });
      measured.set(key, list);
    }
  }
  const total = N * bytesPerUpdate;
  const defaultWorkers = defaultIngestWorkers(P);
  const defaultKey = defaultWorkers === 0 ? 'serial' : `rlw${defaultWorkers}`;
  measured.set('default', measured.get(defaultKey) ?? []);
  const of = (key: string) => measured.get(key) ?? [];
  const plainRuns = [...measured.entries()].filter(([key]) => key !== 'default').flatMap(([, list]) => list);
  const row: Result = { N, P, 'plain MB/s': round3(median(plainRuns.map((m) => mbPerSecond(total, m.pair.baselineMs)))) };
  const modes: [string, string][] = [
    ['default', 'roundloop'],
    ['serial', 'roundloop-serial'],
    ...workerCounts.map((w): [string, string] => [`rlw${w}`, `roundloop-workers×${w}`]),
    ...workerCounts.map((w): [string, string] => [`rlo${w}`, `roundloop-open×${w}`]),
  ];
  row['roundloop is'] = defaultWorkers === 0 ? 'roundloop-serial' : `roundloop-workers×${defaultWorkers}`;
  for (const [key, label] of modes) row[`${label} MB/s`] = round3(median(of(key).map((m) => mbPerSecond(total, m.pair.candidateMs))));
  for (const [key, label] of modes) row[`${label}/plain`] = round3(medianRatio(of(key).map((m) => m.pair)));
  row['plain cpu ms/update'] = round3(median(plainRuns.map((m) => m.plainCpuMs)) / N);
  for (const [key, label] of modes) row[`${label} cpu ms/update`] = round3(median(of(key).map((m) => m.cpuMs)) / N);
  for (const [key, label] of modes) {
    if (key === 'default') continue;
    of(key).forEach((m, rep) => {
      const pair = { N, P, mode: label, pair: rep + 1, 'plain MB/s': round3(mbPerSecond(total, m.pair.baselineMs)), 'MB/s': round3(mbPerSecond(total, m.pair.candidateMs)), ratio: round3(m.pair.ratio), 'cpu ms/update': round3(m.cpuMs / N) };
      pairs.push(pair);
      console.log(`  pair ${pair.pair}: plain ${pair['plain MB/s']} MB/s, ${label} ${pair['MB/s']} MB/s → ${pair.ratio}×${key === defaultKey ? ' (roundloop)' : ''}`);
    });
  }
  row['seal ms/update'] = round3(sealMs / poolSize);
  results.push(row);
  console.log(`N=${N} P=${P} pool=${poolSize}: ` + modes.map(([, label]) => `${label} ${row[`${label} MB/s`]} MB/s (${row[`${label}/plain`]}x, ${row[`${label} cpu ms/update`]} cpu ms/update)`).join(', ') + `, plain ${row['plain MB/s']} MB/s (${row['plain cpu ms/update']} cpu ms/update)`);
}
await Promise.all([...ingests.values()].map((i) => i.close()));

console.log();
printTable(results);
const path = writeResults('ingest', {
  params: { configs, reps, poolMB: poolBytes / 1e6, clients: MAX_CLIENTS, workers: workerCounts, timing: 'interleaved pairs: per repetition, plain then each mode; ratio = median of the pairs\' ratios, MB/s and CPU = medians' },
  target: 'roundloop/plain (the path the round loop uses) >= 0.5x plain accumulation for P >= 1M',
  results,
  pairs,
  totalSeconds: round3((performance.now() - started) / 1000),
});
console.log(`\nwrote ${path} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
