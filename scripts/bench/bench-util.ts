/**
 * Small helpers shared by the benchmarks in `scripts/bench`: argument parsing, timing, and
 * writing results as JSON to `scripts/bench/results/<name>.json` next to a printed table.
 *
 * Benchmarks are scripts, not library code: they may print, and they exit non-zero on a
 * correctness mismatch so a fast-but-wrong path can never post a number.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from '../../shared/math/statistics.ts';

/** Directory the JSON results are written to. */
export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'results');

/** Parses `--name value` and `--name=value` pairs; a bare `--flag` becomes `'true'`. */
export function parseArgs(argv: readonly string[] = process.argv.slice(2)): Map<string, string> {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (!arg.startsWith('--')) throw new Error(`unexpected argument '${arg}' (options look like --name value)`);
    const eq = arg.indexOf('=');
    if (eq !== -1) {
      args.set(arg.slice(2, eq), arg.slice(eq + 1));
    } else {
      const next = argv[i + 1];
      if (next !== undefined && !next.startsWith('--')) {
        args.set(arg.slice(2), next);
        i++;
      } else {
        args.set(arg.slice(2), 'true');
      }
    }
  }
  return args;
}

/**
 * A comma-separated list of integers ≥ `min` (positive, by default), accepting `10k`, `5M` and
 * `1e6` spellings.
 */
export function intListArg(args: Map<string, string>, name: string, min = 1): number[] | undefined {
  const raw = args.get(name);
  if (raw === undefined) return undefined;
  return raw.split(',').map((item) => {
    const m = /^(\d+(?:\.\d+)?(?:e\d+)?)([kKmM]?)$/.exec(item.trim());
    const value = m ? Number(m[1]) * (m[2] === 'k' || m[2] === 'K' ? 1e3 : m[2] === 'm' || m[2] === 'M' ? 1e6 : 1) : NaN;
    if (!Number.isSafeInteger(value) || value < min) throw new Error(`--${name}: '${item}' is not an integer ≥ ${min}`);
    return value;
  });
}

/** Timing of one measured function. */
export interface Timing {
  /** Mean milliseconds per call over the measured calls. */
  readonly msPerCall: number;
  readonly calls: number;
}

/**
 * Times `fn`: one warm-up call (JIT, caches), then calls until both `minCalls` and `minMs` are
 * reached.
 */
export function timeSync(fn: () => unknown, options: { /** @default 3 */ minCalls?: number; /** @default 300 */ minMs?: number } = {}): Timing {
  const minCalls = options.minCalls ?? 3;
  const minMs = options.minMs ?? 300;
  fn();
  let calls = 0;
  const start = performance.now();
  let elapsed = 0;
  while (calls < minCalls || elapsed < minMs) {
    fn();
    calls++;
    elapsed = performance.now() - start;
  }
  return { msPerCall: elapsed / calls, calls };
}

/** MB/s (10^6 bytes per second) for `bytes` processed in `ms`. */
export function mbPerSecond(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

/** Rounds for display and JSON, keeping 3 significant digits. */
export function round3(value: number): number {
  return Number.isFinite(value) ? Number(value.toPrecision(3)) : value;
}

/** Prints rows as an aligned table. */
export function printTable(rows: readonly Record<string, string | number>[]): void {
  const first = rows[0];
  if (first === undefined) return;
  const columns = Object.keys(first);
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? '').length)));
  const fmt = (cells: string[]) => cells.map((cell, i) => cell.padStart(widths[i] ?? 0)).join('  ');
  console.log(fmt(columns));
  for (const row of rows) console.log(fmt(columns.map((c) => String(row[c] ?? ''))));
}

/** Machine description stored with every result, since numbers mean nothing without it. */
export function machineInfo(): Record<string, string | number> {
  const cpu = cpus();
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpuModel: cpu[0]?.model ?? 'unknown',
    cpuCount: cpu.length,
    memoryGB: Math.round(totalmem() / 1e9),
    // Other processes on the machine skew throughput (and especially multi-thread) numbers.
    loadAverage1m: Number((loadavg()[0] ?? 0).toFixed(2)),
  };
}

/** Writes `{ name, date, machine, ...data }` to `results/<name>.json` and returns the path. */
export function writeResults(name: string, data: Record<string, unknown>): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = join(RESULTS_DIR, `${name}.json`);
  writeFileSync(path, JSON.stringify({ name, date: new Date().toISOString(), machine: machineInfo(), ...data }, null, 2) + '\n');
  return path;
}

/** The benchmarks' median: the same as the coordinator's (shared/math/statistics.ts). */
export { median };

/**
 * A side-by-side comparison measured as interleaved pairs (A B A B …): each pair's ratio is
 * `baselineMs / candidateMs` (above 1: the candidate is faster), and the figure reported is the
 * median of those ratios. A pair runs its two sides back to back, so a change in the machine's
 * load between pairs moves both sides of a pair together and cancels in its ratio, where taking
 * each side's best run independently would compare a quiet moment of one with a busy one of the other.
 */
export interface Pair {
  /** Wall ms of the baseline (A), then of the candidate (B). */
  baselineMs: number;
  candidateMs: number;
  ratio: number;
}

/** Builds a {@link Pair} from the two wall times of one A-then-B pair. */
export function pairOf(baselineMs: number, candidateMs: number): Pair {
  return { baselineMs, candidateMs, ratio: baselineMs / candidateMs };
}

/** The median of the pairs' ratios ({@link Pair}). */
export function medianRatio(pairs: readonly Pair[]): number {
  return median(pairs.map((p) => p.ratio));
}
