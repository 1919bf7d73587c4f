/**
 * Benchmark (4): serving the frozen base to K clients over loopback, through the real path — the
 * coordinator's `base:read` handler (`readBaseChunk`) answering socket.io acks, and the client's
 * `ensureBase` (chunked pull into `<file>.part`, SHA-256 check, rename) — against a plain `net`
 * server streaming the same files to K sockets, measured in the same run. Reports aggregate MB/s
 * (K × base size / wall time until the last client finished) and the ratio fedtl/raw, for several
 * chunk sizes. Timed as interleaved pairs: per repetition and setting the raw socket, then fedtl,
 * then the raw socket that also verifies; a setting's ratio is the median of its pairs' ratios (each
 * pair printed and written to the JSON's `pairs`), after one untimed run of every path.
 *
 * Two baselines, both a plain `net` server streaming the files from disk (page cache) to K sockets:
 * - **raw** (the ratio the target is set on, `x raw`): the receiver only counts the bytes. This is
 *   the transport's ceiling; it neither verifies nor keeps anything.
 * - **raw + SHA-256 + file** (`x raw+verify`): the receiver also hashes every byte on its thread and
 *   writes it to a file through a write stream — the least any download that keeps a verified copy
 *   does, written the plain Node way.
 * The fedtl path does what the second does (every byte hashed once, SHA-256, and written to the
 * `.part` file, on the client's writing thread) and also pays a request/ack per chunk (hidden by
 * keeping several in flight) and socket.io framing; its server sends views of memory it hashed once
 * at start instead of reading the files per client (`--raw-from-memory` gives the raw server that too).
 *
 * Topology: the clients run in a child process by default (`base-distribution-clients.ts`), as a
 * real client runs on another machine, so the coordinator's thread serves and the clients' thread
 * receives, decodes, hashes and writes; `--in-process` runs them in the coordinator's own thread
 * (how this benchmark measured before). The raw baseline always runs in the same topology as the
 * fedtl path it is compared with.
 *
 * Base served: a synthetic directory of `--mb` MB of random bytes (model.json + one shard, the
 * layout of a real base) unless `--dir` names a real base directory (e.g. `.fedtl-cache/glove-100d`).
 *
 * Run: `npx tsx scripts/bench/base-distribution.ts [--clients 4] [--mb 40] [--chunks 256k,1M]
 *   [--in-flight 1,4] [--reps 2] [--dir path] [--in-process] [--raw-from-memory]` (`--in-flight`: chunk requests a
 *   client keeps in flight; `--raw-from-memory`: the raw server sends files it read once, as the coordinator does)
 * Writes `scripts/bench/results/base-distribution.json` (`base-distribution-in-process.json` with --in-process).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Coordinator } from '../../server/coordinator.ts';
import { describeBaseDirectory } from '../../server/base-server.ts';
import type { Logger } from '../../shared/core/log.ts';
import { encodeKey, generateIdentity } from '../../shared/crypto/identity.ts';
import type { BaseDescriptor } from '../../shared/protocol/protocol.ts';
import { FedAvg } from '../../shared/strategy/fed-avg.ts';
import { type ClientJob, type ClientTiming, runClientJob, stopwatch } from './base-distribution-clients.ts';
import { mbPerSecond, median, medianRatio, pairOf, parseArgs, printTable, round3, writeResults } from './bench-util.ts';

const args = parseArgs();
const K = Number(args.get('clients') ?? 4);
const sizeMB = Number(args.get('mb') ?? 40);
const reps = Number(args.get('reps') ?? 2);
const realDir = args.get('dir');
const inProcess = args.has('in-process');
const inFlights = (args.get('in-flight') ?? '1,4').split(',').map(Number);
if (!inFlights.every((n) => Number.isSafeInteger(n) && n >= 1)) throw new Error('--in-flight: a list of positive integers, e.g. 1,4');
const chunkSizes = (args.get('chunks') ?? '256k,1M').split(',').map((text) => {
  const m = /^(\d+)([kKmM])$/.exec(text.trim());
  if (!m) throw new Error(`--chunks: '${text}' should look like 256k or 1M`);
  return Number(m[1]) * (m[2]?.toLowerCase() === 'k' ? 1024 : 1024 * 1024);
});
if (!(K >= 1) || !(sizeMB > 0) || !(reps >= 1)) throw new Error('--clients, --mb and --reps must be positive');

const quiet: Logger = { debug() {}, info() {}, warn: (m) => console.warn(m), error: (m) => console.error(m) };
const work = await mkdtemp(path.join(os.tmpdir(), 'fedtl-bench-base-'));
const started = performance.now();

// ---- the base directory -------------------------------------------------------------------------
let baseDir: string;
if (realDir !== undefined) {
  baseDir = path.resolve(realDir);
} else {
  baseDir = path.join(work, 'base');
  await mkdir(baseDir);
  const shard = randomBytes(Math.round(sizeMB * 1e6));
  await writeFile(path.join(baseDir, 'weights.bin'), shard);
  await writeFile(path.join(baseDir, 'model.json'), JSON.stringify({ format: 'synthetic', weightsManifest: [{ paths: ['weights.bin'] }] }));
}
const descriptor: BaseDescriptor = await describeBaseDirectory(baseDir, 'bench-base', 'b'.repeat(64));
const totalBytes = descriptor.files.reduce((sum, f) => sum + f.bytes, 0);
console.log(`serving ${descriptor.files.length} file(s), ${(totalBytes / 1e6).toFixed(1)} MB, to ${K} client(s) over loopback`);

// ---- where the clients run ----------------------------------------------------------------------
let child: ChildProcess | null = null;
if (!inProcess) {
  const entry = fileURLToPath(new URL('./base-distribution-clients.ts', import.meta.url));
  child = fork(entry, [], { serialization: 'advanced', env: { ...process.env, FEDTL_BENCH_BASE_CLIENTS: '1' } });
  await new Promise<void>((resolve, reject) => {
    child!.once('message', () => resolve());
    child!.once('error', reject);
    child!.once('exit', (code) => reject(new Error(`client process exited with code ${code}`)));
  });
}

/** One measured run: the clients' wall time and CPU, and this (serving) process's CPU meanwhile. */
interface RunTiming extends ClientTiming {
  /** CPU ms of this process while the clients ran; with --in-process it holds the clients too. */
  serverCpuMs: number;
}

/** Runs `job` in the client process (or this thread with --in-process). */
async function clients(job: ClientJob): Promise<RunTiming> {
  const serving = stopwatch();
  let timing: ClientTiming;
  if (child === null) {
    timing = await runClientJob(job);
  } else {
    const proc = child;
    timing = await new Promise((resolve, reject) => {
      proc.once('message', (reply: Partial<ClientTiming> & { error?: string }) => (reply.ms !== undefined && reply.cpuMs !== undefined ? resolve({ ms: reply.ms, cpuMs: reply.cpuMs }) : reject(new Error(`clients: ${reply.error}`))));
      proc.send(job);
    });
  }
  return { ...timing, serverCpuMs: serving().cpuMs };
}

// ---- raw baseline: net server streaming the files ----------------------------------------------
// With --raw-from-memory the raw server sends files it read once, as the coordinator does, instead
// of reading them (from the page cache) for every client.
const rawHeld = args.has('raw-from-memory') ? new Map(await Promise.all(descriptor.files.map(async (f) => [f.name, await readFile(path.join(baseDir, f.name))] as const))) : null;
async function rawRun(verify = false): Promise<RunTiming> {
  const server = net.createServer((socket) => {
    void (async () => {
      for (const file of descriptor.files) {
        const bytes = rawHeld?.get(file.name);
        if (bytes !== undefined) {
          // From memory, as the coordinator serves: 1 MiB writes, waiting whenever the socket is full.
          for (let at = 0; at < bytes.length; at += 1024 * 1024) if (!socket.write(bytes.subarray(at, at + 1024 * 1024))) await once(socket, 'drain');
          continue;
        }
        await new Promise<void>((resolve, reject) => {
          const stream = createReadStream(path.join(baseDir, file.name), { highWaterMark: 1024 * 1024 });
          stream.on('error', reject);
          stream.on('end', resolve);
          stream.pipe(socket, { end: false });
        });
      }
      socket.end();
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const verifyInto = verify ? await mkdtemp(path.join(work, 'raw-')) : undefined;
  const timing = await clients({ type: 'raw', port, clients: K, expectBytes: totalBytes, ...(verifyInto ? { verifyInto } : {}) });
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return timing;
}

// ---- fedtl: the coordinator's base:read + ensureBase -------------------------------------------
async function fedtlRun(chunkBytes: number, inFlight: number): Promise<RunTiming> {
  const coordinatorIdentity = generateIdentity();
  const identities = Array.from({ length: K }, () => generateIdentity());
  const allowed = new Set(identities.map((id) => encodeKey(id.signing.publicKey)));
  const coordinator = await Coordinator.start({
    identity: coordinatorIdentity,
    admission: { status: (key) => (allowed.has(key) ? 'allowed' : 'unknown') },
    base: { descriptor, directory: baseDir },
    headSpec: { hidden: [], activation: 'relu', dropout: 0, classes: 2 },
    manifest: { entries: [], parameterCount: 2 }, // never used: no round runs
    initialWeights: new Float32Array(2),
    strategy: new FedAvg({ minClients: K }),
    rounds: 0,
    openUpdate: () => {
      throw new Error('no updates in this benchmark');
    },
    chunkBytes,
    logger: quiet,
  });
  try {
    return await clients({ type: 'fedtl', url: coordinator.url, identities, coordinatorSigningKey: encodeKey(coordinatorIdentity.signing.publicKey), descriptor, chunkBytes, inFlight, work });
  } finally {
    await coordinator.close();
  }
}

// ---- measure, as interleaved pairs ------------------------------------------------------------
// Each repetition runs, for every chunk size and depth, the raw socket and then fedtl right after it
// (A B A B …, bench-util `Pair`), then the raw socket that also hashes and writes, so each fedtl run
// has its own baselines next to it. A setting's ratio is the median of its pairs' ratios: the raw
// socket alone moved 818–1,690 MB/s between runs, and taking each side's best run independently
// compared a quiet moment of one with a busy one of the other. Every path runs once untimed first.
interface Measured {
  raw: RunTiming;
  fedtl: RunTiming;
  verified: RunTiming;
}
await rawRun();
await rawRun(true);
for (const chunk of chunkSizes) for (const n of inFlights) await fedtlRun(chunk, n);
const measured = new Map<string, Measured[]>();
const settingKey = (chunk: number, n: number): string => `${chunk}-${n}`;
for (let r = 0; r < reps; r++) {
  for (const chunk of chunkSizes) {
    for (const n of inFlights) {
      const raw = await rawRun();
      const fedtl = await fedtlRun(chunk, n);
      const verified = await rawRun(true);
      const list = measured.get(settingKey(chunk, n)) ?? [];
      list.push({ raw, fedtl, verified });
      measured.set(settingKey(chunk, n), list);
    }
  }
}

const aggregate = K * totalBytes;
const all = [...measured.values()].flat();
const medianOf = (runs: RunTiming[], value: (t: RunTiming) => number): number => median(runs.map(value));
/** A table row for a set of runs: medians of MB/s and of the CPU each side spent per MB delivered. */
const row = (label: Record<string, string | number>, runs: RunTiming[], ratios: Record<string, number>): Record<string, string | number> => ({
  ...label,
  'aggregate MB/s': round3(medianOf(runs, (t) => mbPerSecond(aggregate, t.ms))),
  'per-client MB/s': round3(medianOf(runs, (t) => mbPerSecond(totalBytes, t.ms))),
  s: round3(medianOf(runs, (t) => t.ms) / 1000),
  'x raw': round3(ratios['raw'] ?? Number.NaN),
  'x raw+verify': round3(ratios['verified'] ?? Number.NaN),
  'server CPU ms/MB': inProcess ? '-' : round3(medianOf(runs, (t) => t.serverCpuMs) / (aggregate / 1e6)),
  'client CPU ms/MB': round3(medianOf(runs, (t) => t.cpuMs) / (aggregate / 1e6)),
});
const rawVerifyRatio = median(all.map((m) => m.verified.ms / m.raw.ms));
const rows: Record<string, string | number>[] = [
  row({ path: 'raw net socket', chunk: '-', 'in flight': '-' }, all.map((m) => m.raw), { raw: 1, verified: rawVerifyRatio }),
  row({ path: 'raw net socket + SHA-256 + file', chunk: '-', 'in flight': '-' }, all.map((m) => m.verified), { raw: 1 / rawVerifyRatio, verified: 1 }),
];
const pairs: Record<string, string | number>[] = [];
for (const chunk of chunkSizes) {
  for (const n of inFlights) {
    const chunkLabel = chunk >= 1024 * 1024 ? `${chunk / 1024 / 1024} MiB` : `${chunk / 1024} KiB`;
    const list = measured.get(settingKey(chunk, n)) ?? [];
    const againstRaw = list.map((m) => pairOf(m.raw.ms, m.fedtl.ms));
    const againstVerified = list.map((m) => pairOf(m.verified.ms, m.fedtl.ms));
    rows.push(row({ path: 'fedtl base:read + ensureBase', chunk: chunkLabel, 'in flight': n }, list.map((m) => m.fedtl), { raw: medianRatio(againstRaw), verified: medianRatio(againstVerified) }));
    list.forEach((m, i) => {
      const pair = { chunk: chunkLabel, 'in flight': n, pair: i + 1, 'raw MB/s': round3(mbPerSecond(aggregate, m.raw.ms)), 'fedtl MB/s': round3(mbPerSecond(aggregate, m.fedtl.ms)), 'x raw': round3(againstRaw[i]!.ratio), 'raw+verify MB/s': round3(mbPerSecond(aggregate, m.verified.ms)), 'x raw+verify': round3(againstVerified[i]!.ratio) };
      pairs.push(pair);
      console.log(`${chunkLabel}, ${n} in flight, pair ${pair.pair}: raw ${pair['raw MB/s']} MB/s, fedtl ${pair['fedtl MB/s']} MB/s → ${pair['x raw']}× (raw+verify ${pair['raw+verify MB/s']} MB/s → ${pair['x raw+verify']}×)`);
    });
  }
}
const fedtlRows = rows.slice(2);
const fastestRow = fedtlRows.reduce((a, b) => ((a['x raw'] as number) >= (b['x raw'] as number) ? a : b));
console.log();
printTable(rows);
console.log(`\nfastest here: ${fastestRow['chunk']} chunks, ${fastestRow['in flight']} in flight, ${fastestRow['x raw']}× raw, ${fastestRow['x raw+verify']}× raw + SHA-256 + file`);
child?.disconnect();
await rm(work, { recursive: true, force: true });
const out = writeResults(inProcess ? 'base-distribution-in-process' : 'base-distribution', {
  params: { topology: inProcess ? 'coordinator and clients in one thread' : 'clients in a child process', rawServer: rawHeld ? 'files held in memory' : 'files read per client (page cache)', clients: K, baseBytes: totalBytes, files: descriptor.files.length, source: realDir ?? `synthetic ${sizeMB} MB`, chunkSizes, inFlights, reps, timing: 'interleaved pairs: per repetition and setting raw, fedtl, raw+verify; x raw = median of the pairs\' ratios, MB/s and CPU = medians' },
  results: rows,
  pairs,
  fastest: fastestRow,
  totalSeconds: round3((performance.now() - started) / 1000),
});
console.log(`wrote ${out} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
