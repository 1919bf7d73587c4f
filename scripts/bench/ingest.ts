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
 *
 * Memory: a pool of distinct sealed envelopes (≤ `--pool-mb`, default 512) is built once and
 * cycled through; envelopes are independent, so reopening one costs the same as a new one
 * (replay detection is the coordinator's job, not the envelope's).
 *
 * Run: `npx tsx scripts/bench/ingest.ts [--n 1000] [--p 10k,100k,1M,5M] [--reps 3] [--pool-mb 512]`
 * Without --n/--p a default mix runs in well under a minute. Writes `results/ingest.json`.
 */
import { generateIdentity, type Identity, publicIdentity, type PublicIdentity } from '../../shared/crypto/identity.ts';
import { type OpenUpdateOptions, openUpdate, openUpdateAsync, sealUpdate } from '../../shared/crypto/update-envelope.ts';
import { intListArg, mbPerSecond, parseArgs, printTable, round3, writeResults } from './bench-util.ts';

const args = parseArgs();
const ns = intListArg(args, 'n');
const ps = intListArg(args, 'p');
const reps = intListArg(args, 'reps')?.[0] ?? 3;
const poolBytes = (intListArg(args, 'pool-mb')?.[0] ?? 512) * 1e6;
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

interface Result {
  [key: string]: string | number;
  N: number;
  P: number;
  'plain MB/s': number;
  'sync MB/s': number;
  'async MB/s': number;
  'sync/plain': number;
  'async/plain': number;
  'seal ms/update': number;
}
const results: Result[] = [];
const started = performance.now();

for (const [N, P] of configs) {
  const bytesPerUpdate = P * 4;
  const poolSize = Math.max(1, Math.min(N, Math.floor(poolBytes / (2 * bytesPerUpdate))));
  const deltas: Float32Array[] = [];
  const envelopes: Uint8Array[] = [];
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

  // Warm up every path (JIT, key caches), and check they agree bit for bit.
  const reference = plain();
  for (const [name, acc] of [['sync', sync()], ['async', await pipelined()]] as const) {
    for (let i = 0; i < P; i++) {
      if (acc[i] !== reference[i]) {
        console.error(`MISMATCH: ${name} sum differs from plain at ${i} (N=${N}, P=${P})`);
        process.exit(1);
      }
    }
  }

  // Interleave the modes across repetitions so drift in machine load hits all of them; keep the best.
  const best = { plain: Infinity, sync: Infinity, async: Infinity };
  for (let r = 0; r < reps; r++) {
    let t = performance.now();
    plain();
    best.plain = Math.min(best.plain, performance.now() - t);
    t = performance.now();
    sync();
    best.sync = Math.min(best.sync, performance.now() - t);
    t = performance.now();
    await pipelined();
    best.async = Math.min(best.async, performance.now() - t);
  }
  const total = N * bytesPerUpdate;
  const row: Result = {
    N,
    P,
    'plain MB/s': round3(mbPerSecond(total, best.plain)),
    'sync MB/s': round3(mbPerSecond(total, best.sync)),
    'async MB/s': round3(mbPerSecond(total, best.async)),
    'sync/plain': round3(best.plain / best.sync),
    'async/plain': round3(best.plain / best.async),
    'seal ms/update': round3(sealMs / poolSize),
  };
  results.push(row);
  console.log(`N=${N} P=${P} pool=${poolSize}: plain ${row['plain MB/s']} MB/s, sync ${row['sync MB/s']} (${row['sync/plain']}x), async ${row['async MB/s']} (${row['async/plain']}x)`);
}

console.log();
printTable(results);
const path = writeResults('ingest', {
  params: { configs, reps, poolMB: poolBytes / 1e6, clients: MAX_CLIENTS, timing: 'best of reps, modes interleaved' },
  results,
  totalSeconds: round3((performance.now() - started) / 1000),
});
console.log(`\nwrote ${path} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
