/**
 * Benchmark: secure aggregation (SecAgg+, shared/secagg) against plain sealed updates, one round,
 * coordinator and client protocol cost, client training excluded. Both paths run side by side in
 * one process on the same deltas of a P-parameter head (default 330,000):
 *
 * - plain: each client seals its float32 delta (update envelope); the coordinator opens every
 *   envelope and folds it into the streaming FedAvg mean;
 * - secure: the full SecAgg+ round of `runSecAggRound` — per-round X25519 keys, graph, Shamir
 *   shares, quantization, masks, every message sealed and signed — then decoding the mean.
 *
 * Clients run on their own machines, so a round's protocol time is modelled as coordinator time +
 * the slowest client's time (clients work in parallel); both are also reported separately. The
 * decoded secure mean is checked against the plain mean within the quantization bound (exit 1 on
 * a mismatch).
 *
 * Run: `npm run bench:secagg -- [--clients 10,50,100] [--params 330000] [--dropout 0.1]`
 * Writes `scripts/bench/results/secagg.json`.
 */
import { performance } from 'node:perf_hooks';
import { generateIdentity, openUpdate, publicIdentity, sealUpdate, type Identity } from '../../shared/crypto/index.ts';
import { createRandom } from '../../shared/math/index.ts';
import { decodeSum, defaultDegree, defaultThreshold, ringCodec, runSecAggRound } from '../../shared/secagg/index.ts';
import { WeightedDeltaMean } from '../../shared/strategy/index.ts';
import { intListArg, parseArgs, printTable, round3, writeResults } from './bench-util.ts';

const args = parseArgs();
const clientCounts = intListArg(args, 'clients') ?? [10, 50, 100];
const params = intListArg(args, 'params')?.[0] ?? 330_000;
const dropout = Number(args.get('dropout') ?? 0.1);

const coordinator = generateIdentity();
const rng = createRandom(7);

interface Case {
  clients: number;
  dropped: number;
}
const cases: Case[] = [...clientCounts.map((k) => ({ clients: k, dropped: 0 }))];
const largest = Math.max(...clientCounts);
if (dropout > 0) cases.push({ clients: largest, dropped: Math.round(largest * dropout) });

const identities: Identity[] = Array.from({ length: largest }, () => generateIdentity());
const deltas = identities.map(() => Float32Array.from({ length: params }, () => (rng.nextFloat() - 0.5) * 0.02));
const weights = identities.map(() => 1 + rng.nextInt(200));
const keys = new Map(identities.map((id) => [publicIdentity(id).clientId, publicIdentity(id)]));

function plainRound(k: number, survivors: number): { coordinatorMs: number; clientMaxMs: number; clientMeanMs: number; mean: Float32Array } {
  const global = new Float32Array(params);
  const agg = new WeightedDeltaMean(global);
  let coordinatorMs = 0;
  let clientMax = 0;
  let clientSum = 0;
  for (let i = 0; i < survivors; i++) {
    const t0 = performance.now();
    const sealed = sealUpdate({ header: { roundId: 'bench', exampleCount: weights[i]! }, delta: deltas[i]! }, { clientIdentity: identities[i]!, coordinatorBoxKey: coordinator.box.publicKey });
    const t1 = performance.now();
    const opened = openUpdate(sealed, { coordinatorIdentity: coordinator, expected: { roundId: 'bench', parameterCount: params }, resolveClient: (id) => keys.get(id) });
    agg.add({ clientId: opened.header.clientId, delta: opened.delta, exampleCount: opened.header.exampleCount, metrics: {} });
    const t2 = performance.now();
    clientMax = Math.max(clientMax, t1 - t0);
    clientSum += t1 - t0;
    coordinatorMs += t2 - t1;
  }
  const t3 = performance.now();
  const mean = agg.finish();
  coordinatorMs += performance.now() - t3;
  void k;
  return { coordinatorMs, clientMaxMs: clientMax, clientMeanMs: clientSum / survivors, mean };
}

// Warm-up (JIT, native key caches) of both paths before anything is timed.
plainRound(3, 3);
runSecAggRound({ roundId: 'warm-up', coordinator, codec: ringCodec({ maxClients: 3, maxWeight: 200 }), clients: identities.slice(0, 3).map((identity, i) => ({ identity, delta: deltas[i]!, weight: 1 })) });

const rows: Record<string, string | number>[] = [];
const results: Record<string, unknown>[] = [];
let failed = false;
for (const c of cases) {
  const k = c.clients;
  const survivors = k - c.dropped;
  const plain = plainRound(k, survivors);
  const codec = ringCodec({ maxClients: k, maxWeight: 200 });
  const secure = runSecAggRound({
    roundId: `bench-${k}-${c.dropped}`,
    coordinator,
    codec,
    // The dropped clients leave after sharing their keys: the costliest case for the coordinator, which must then remove their pairwise masks.
    clients: identities.slice(0, k).map((identity, i) => ({ identity, delta: deltas[i]!, weight: weights[i]!, ...(i >= survivors ? { dropBefore: 'mask' as const } : {}) })),
  });
  // Correctness: the decoded secure mean equals the plain mean of the survivors within the bound.
  const decoded = decodeSum(codec, secure.sum, params);
  let worst = 0;
  for (let i = 0; i < params; i++) worst = Math.max(worst, Math.abs(decoded.weightedSum[i]! / decoded.totalWeight - plain.mean[i]!));
  const bound = codec.sumErrorBound / decoded.totalWeight + 1e-6; // + float32 rounding of the plain mean
  if (!(worst <= bound) || secure.survivors.length !== survivors) failed = true;
  const clientTimes = [...secure.clientMs.values()];
  const secureClientMax = Math.max(...clientTimes);
  const secureClientMean = clientTimes.reduce((a, b) => a + b, 0) / clientTimes.length;
  const plainRoundMs = plain.coordinatorMs + plain.clientMaxMs;
  const secureRoundMs = secure.coordinatorMs + secureClientMax;
  const degree = defaultDegree(k);
  const row = {
    clients: k,
    dropped: c.dropped,
    degree,
    threshold: defaultThreshold(degree),
    'plain coord ms': round3(plain.coordinatorMs),
    'secure coord ms': round3(secure.coordinatorMs),
    'plain client ms': round3(plain.clientMaxMs),
    'secure client ms': round3(secureClientMax),
    'plain round ms': round3(plainRoundMs),
    'secure round ms': round3(secureRoundMs),
    'x plain': round3(secureRoundMs / plainRoundMs),
  };
  rows.push(row);
  results.push({
    ...row,
    params,
    secureClientMeanMs: round3(secureClientMean),
    plainClientMeanMs: round3(plain.clientMeanMs),
    secureBytesUpPerClient: Math.round(secure.bytesSent / clientTimes.length),
    plainBytesUpPerClient: params * 4 + 300,
    maxAbsErrorOfMean: worst,
    errorBound: bound,
  });
  process.stdout.write(`K = ${k}, ${c.dropped} dropped: ${round3(secureRoundMs / plainRoundMs)}x plain\n`);
}
printTable(rows);
const file = writeResults('secagg', {
  description:
    'One round of secure aggregation (SecAgg+) vs plain sealed updates, protocol cost only (no training). round ms = coordinator ms + slowest client ms (clients run in parallel on their own machines).',
  command: `npm run bench:secagg -- --clients ${clientCounts.join(',')} --params ${params} --dropout ${dropout}`,
  ring: { bits: 32, clipRange: 1, maxWeight: 200 },
  results,
});
process.stdout.write(`wrote ${file}\n`);
if (failed) {
  process.stderr.write('secure aggregation sum did not match the plain mean within the bound\n');
  process.exit(1);
}
