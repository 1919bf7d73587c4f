/**
 * Benchmark (1): coordinator ingest. N sealed updates of P parameters are opened, validated and
 * folded into a weighted sum (Float64Array), side by side with plain accumulation of the very
 * same Float32 deltas, in one run. Reports MB/s of delta bytes and the ratio sealed/plain
 * (target ≥ 0.5×), and checks that both paths produce bit-identical sums.
 *
 * Modes:
 * - plain: `acc[i] += w * delta[i]` over the plaintext deltas (the floor: no security at all).
 * - sealed sync: `openUpdate` (SHA-256 + Ed25519 verify + X25519/HKDF + ChaCha20-Poly1305 +
 *   finiteness/range/L2 scan), then accumulate.
 * - sealed async: `openUpdateAsync`, pipelined one ahead: while update k is accumulated on the
 *   main thread, update k+1's SHA-256 runs on the libuv pool — how a coordinator reading sockets
 *   would use it.
 * - sealed parallel: `ingest-designs/parallel-opener.ts`, a pool of worker threads running the same
 *   `openUpdate`; envelope bytes are transferred (not copied) to a worker, the decrypted delta is
 *   transferred back, and the main thread accumulates in submission order (so the sum is still
 *   bit-identical to plain), keeping up to 2 × workers updates in flight.
 * - roundloop: the path the round loop really uses, driven as `RoundLoop` drives it: a `FitRound`
 *   (server/round-state.ts) per round, given the opener `startCoordinator` builds
 *   (`createUpdateOpener`, one thread) and the strategy's own aggregation (`FedAvg.aggregateFit`);
 *   each update goes through `FitRound.accept` (sender, replay and round checks, the example cap,
 *   the metric fold) and each round ends with `Aggregation.finish()`. A round holds at most one
 *   update per client and per envelope (replays are refused there), so the N updates are split
 *   into rounds of min(pool, 64 clients); its sum is checked to 1e-9 relative.
 *   Reported as `roundloop/plain`: the serial path (`ingestWorkers: 0`).
 * - roundloop-workers×W: the same rounds with the coordinator's worker ingest
 *   (server/update-ingest.ts, `ingestWorkers: W`): `FitRound.acceptAsync`, W workers that open and
 *   fold FedAvg's partial sums, `settle()` merging them. Checked to 1e-9 relative (float64
 *   reassociation). Each round's envelope copies are made before its clock starts (a coordinator
 *   gets each update in a fresh socket buffer, which moves to a worker without a copy).
 * - roundloop-open×W: the same, for a strategy that needs every update (FedAvg behind an identity
 *   `mapUpdates`, so no partial sums): workers open, the main thread adds in arrival order.
 *
 * Memory: a pool of distinct sealed envelopes (≤ `--pool-mb`, default 512) is built once and
 * cycled through; envelopes are independent, so reopening one costs the same as a new one
 * (replay detection is the coordinator's job, not the envelope's).
 *
 * Run: `npx tsx scripts/bench/ingest.ts [--n 1000] [--p 10k,100k,1M,5M] [--reps 3] [--pool-mb 512] [--workers 2]`
 * Without --n/--p a default mix runs in about a minute. Writes `results/ingest.json`.
 * `--workers` takes a list (e.g. `1,2,4`); one parallel, one roundloop-workers and one roundloop-open column per entry. @default os.availableParallelism()
 */
import { availableParallelism } from 'node:os';
import { createParallelOpener, type ParallelOpener, type ParallelOpenedUpdate } from './ingest-designs/parallel-opener.ts';
import { generateIdentity, type Identity, publicIdentity, type PublicIdentity } from '../../shared/crypto/identity.ts';
import { type OpenUpdateOptions, openUpdate, openUpdateAsync, sealUpdate } from '../../shared/crypto/update-envelope.ts';
import { FitRound } from '../../server/round-state.ts';
import { UpdateIngest } from '../../server/update-ingest.ts';
import { createUpdateOpener } from '../../server/update-opener.ts';
import { FedAvg, WeightedDeltaMean } from '../../shared/strategy/fed-avg.ts';
import { mapUpdates } from '../../shared/strategy/strategy-wrapper.ts';
import type { Aggregation } from '../../shared/strategy/strategy.ts';
import { intListArg, mbPerSecond, parseArgs, printTable, round3, writeResults } from './bench-util.ts';

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
const started = performance.now();
const openers = new Map<number, ParallelOpener>(
  workerCounts.map((w) => [w, createParallelOpener({ identity: coordinator, resolveClientKeys: (id) => directory.get(id), workers: w })]),
);
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
  const options: OpenUpdateOptions = {
    coordinatorIdentity: coordinator,
    expected: { roundId: 'bench', parameterCount: P },
    resolveClient: (id) => directory.get(id),
  };

  const plain = (): Float64Array => {
    const acc = new Float64Array(P);
    for (let k = 0; k < N; k++) accumulate(acc, deltas[k % poolSize] as Float32Array, weights[k % poolSize] as number);
    return acc;
  };
  const sync = (): Float64Array => {
    const acc = new Float64Array(P);
    for (let k = 0; k < N; k++) {
      const { header, delta } = openUpdate(envelopes[k % poolSize] as Uint8Array, options);
      accumulate(acc, delta, header.exampleCount);
    }
    return acc;
  };
  const pipelined = async (): Promise<Float64Array> => {
    const acc = new Float64Array(P);
    let next = openUpdateAsync(envelopes[0] as Uint8Array, options);
    for (let k = 0; k < N; k++) {
      const current = await next;
      if (k + 1 < N) next = openUpdateAsync(envelopes[(k + 1) % poolSize] as Uint8Array, options);
      accumulate(acc, current.delta, current.header.exampleCount);
    }
    return acc;
  };

  const parallel = async (opener: ParallelOpener): Promise<Float64Array> => {
    const acc = new Float64Array(P);
    // In flight at once; an envelope slot is reused only after its previous open came back.
    const window = Math.max(1, Math.min(N, 2 * opener.workers, poolSize));
    const submit = (k: number): Promise<ParallelOpenedUpdate> => {
      const slot = k % poolSize;
      return opener.open(envelopes[slot] as Uint8Array, { roundId: 'bench', clientId: senders[slot] as string, parameterCount: P }).then((opened) => {
        envelopes[slot] = opened.sealed; // the bytes were moved to the worker and came back
        return opened;
      });
    };
    const inFlight: Promise<ParallelOpenedUpdate>[] = [];
    let next = 0;
    for (; next < window; next++) inFlight.push(submit(next));
    for (let k = 0; k < N; k++) {
      const opened = await (inFlight.shift() as Promise<ParallelOpenedUpdate>);
      if (next < N) inFlight.push(submit(next++));
      accumulate(acc, opened.delta, opened.exampleCount);
    }
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
  const roundLoop = async (ingest: UpdateIngest | null, check: boolean, openOnly = false): Promise<{ ms: number; acc: Float64Array | null }> => {
    const acc = check ? new Float64Array(P) : null;
    let ms = 0;
    for (let first = 0, round = 1; first < N; first += perRound, round++) {
      const count = Math.min(perRound, N - first);
      const slots = Array.from({ length: count }, (_, j) => (first + j) % poolSize);
      const inputs = ingest === null ? slots.map((slot) => envelopes[slot] as Uint8Array) : slots.map((slot) => (envelopes[slot] as Uint8Array).slice());
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
      if (acc !== null) {
        // Only for the check: Σ n_k Δ_k of this round, in float64, from the strategy's own state.
        const m = (mean as WeightedDeltaMean).meanDelta();
        for (let i = 0; i < P; i++) acc[i] = (acc[i] as number) + (m[i] as number) * mean.exampleCount;
      }
    }
    return { ms, acc };
  };

  // Warm up every path (JIT, key caches, worker start), and check they agree with plain: bit for
  // bit where the summation order is plain's, to 1e-9 relative (max-norm) for ingest.
  const reference = plain();
  const checks: [string, Float64Array, number][] = [['sync', sync(), 0], ['async', await pipelined(), 0], ['roundloop', (await roundLoop(null, true)).acc!, 1e-9]];
  for (const [w, opener] of openers) checks.push([`parallel(${w})`, await parallel(opener), 0]);
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

  // Interleave the modes across repetitions so drift in machine load hits all of them; keep the best.
  const best = new Map<string, number>();
  const time = async (key: string, fn: () => unknown): Promise<void> => {
    const t = performance.now();
    await fn();
    best.set(key, Math.min(best.get(key) ?? Infinity, performance.now() - t));
  };
  const timeRounds = async (key: string, run: () => Promise<{ ms: number }>): Promise<void> => {
    const { ms } = await run();
    best.set(key, Math.min(best.get(key) ?? Infinity, ms));
  };
  for (let r = 0; r < reps; r++) {
    await time('plain', plain);
    await time('sync', sync);
    await time('async', pipelined);
    await timeRounds('roundloop', () => roundLoop(null, false));
    for (const [w, opener] of openers) await time(`par${w}`, () => parallel(opener));
    for (const [w, ingest] of ingests) {
      await timeRounds(`rlw${w}`, () => roundLoop(ingest, false));
      await timeRounds(`rlo${w}`, () => roundLoop(ingest, false, true));
    }
  }
  const total = N * bytesPerUpdate;
  const bestPlain = best.get('plain') as number;
  const row: Result = { N, P, 'plain MB/s': round3(mbPerSecond(total, bestPlain)) };
  const modes: [string, string][] = [
    ['sync', 'sync'],
    ['async', 'async'],
    ['roundloop', 'roundloop'],
    ...workerCounts.map((w): [string, string] => [`par${w}`, `parallel×${w}`]),
    ...workerCounts.map((w): [string, string] => [`rlw${w}`, `roundloop-workers×${w}`]),
    ...workerCounts.map((w): [string, string] => [`rlo${w}`, `roundloop-open×${w}`]),
  ];
  for (const [key, label] of modes) row[`${label} MB/s`] = round3(mbPerSecond(total, best.get(key) as number));
  for (const [key, label] of modes) row[`${label}/plain`] = round3(bestPlain / (best.get(key) as number));
  row['seal ms/update'] = round3(sealMs / poolSize);
  results.push(row);
  console.log(`N=${N} P=${P} pool=${poolSize}: ` + modes.map(([, label]) => `${label} ${row[`${label} MB/s`]} MB/s (${row[`${label}/plain`]}x)`).join(', ') + `, plain ${row['plain MB/s']} MB/s`);
}
await Promise.all([...openers.values()].map((o) => o.close()));
await Promise.all([...ingests.values()].map((i) => i.close()));

console.log();
printTable(results);
const path = writeResults('ingest', {
  params: { configs, reps, poolMB: poolBytes / 1e6, clients: MAX_CLIENTS, workers: workerCounts, timing: 'best of reps, modes interleaved' },
  target: 'roundloop/plain (the path the round loop uses) >= 0.5x plain accumulation for P >= 1M',
  results,
  totalSeconds: round3((performance.now() - started) / 1000),
});
console.log(`\nwrote ${path} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
