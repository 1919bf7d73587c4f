/**
 * Runs every benchmark in `scripts/bench` in sequence, each in its own process (so one's heap,
 * worker threads and tfjs backend cannot skew the next), then prints one markdown table for the
 * README's Performance section and writes it to `scripts/bench/results/summary.md`.
 *
 * Run: `npx tsx scripts/bench/run-all.ts [--only ingest,training] [--skip crypto] [--no-run]`
 * `--no-run` rebuilds the table from the JSON already in `results/` without running anything.
 * Arguments after `--` go to every benchmark unchanged, e.g. `-- --reps 1`; per-benchmark
 * arguments: `--args.training "--images 64"`.
 * A default run takes a few minutes on 2 cores.
 *
 * Adding a benchmark: a script here that writes `results/<name>.json`, an entry in {@link BENCHES},
 * and a summarizer. A benchmark without its own summarizer is summarized from an optional
 * `summary` array in its JSON: `[{ measurement, result, ratio?, target?, status? }]` (all strings).
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RESULTS_DIR, machineInfo, round3 } from './bench-util.ts';

const HERE = dirname(fileURLToPath(import.meta.url));

/** One line of the summary table. */
interface SummaryRow {
  benchmark: string;
  measurement: string;
  result: string;
  ratio: string;
  target: string;
  status: string;
}

interface Bench {
  name: string;
  /** Script path relative to this directory. */
  script: string;
  /** What it measures, for the table. */
  title: string;
  /** A missing script is reported as pending instead of failing the run. */
  optional?: boolean;
  /** Arguments used when `--args.<name>` is not given (e.g. a shorter run than the script's default). */
  defaultArgs?: string[];
  summarize?: (json: Record<string, unknown>) => SummaryRow[];
}

type Json = Record<string, unknown>;
const rowsOf = (json: Json, key: string): Json[] => (Array.isArray(json[key]) ? (json[key] as Json[]) : []);
const num = (value: unknown): number => (typeof value === 'number' ? value : Number.NaN);
const fmt = (value: unknown): string => (typeof value === 'number' ? String(round3(value)) : String(value ?? ''));
const x = (value: unknown): string => `${fmt(value)}×`;

const BENCHES: Bench[] = [
  {
    name: 'ingest',
    script: 'ingest.ts',
    title: 'Coordinator ingest (open + validate + accumulate)',
    summarize: (json) => {
      const out: SummaryRow[] = [];
      for (const row of rowsOf(json, 'results')) {
        const P = num(row['P']);
        const modes = Object.keys(row)
          .filter((k) => k.endsWith('/plain'))
          .map((k) => ({ mode: k.slice(0, -'/plain'.length), ratio: num(row[k]), mbs: num(row[`${k.slice(0, -'/plain'.length)} MB/s`]) }));
        const best = modes.reduce((a, b) => (b.ratio > a.ratio ? b : a), modes[0] ?? { mode: '-', ratio: Number.NaN, mbs: Number.NaN });
        // `roundloop` is the path a coordinator takes by default for this head size (server/update-ingest.ts).
        const judged = modes.find((m) => m.mode === 'roundloop') ?? best;
        out.push({
          benchmark: 'ingest',
          measurement: `N=${fmt(row['N'])} × P=${P >= 1e6 ? `${P / 1e6}M` : `${P / 1e3}k`}: sealed vs plain accumulation`,
          result: `plain ${fmt(row['plain MB/s'])} MB/s; ${modes.map((m) => `${m.mode} ${fmt(m.mbs)}`).join(', ')} MB/s`,
          ratio: modes.map((m) => `${m.mode} ${x(m.ratio)}`).join(', '),
          target: P >= 1e6 ? '≥ 0.5× (P ≥ 1M)' : '—',
          // The target applies to the path the round loop uses by default; the other modes are measured options.
          status: P >= 1e6 ? (judged.ratio >= 0.5 ? `met (${judged.mode} ${x(judged.ratio)})` : `missed (${judged.mode} ${x(judged.ratio)})`) : '—',
        });
      }
      return out;
    },
  },
  {
    name: 'crypto',
    script: 'crypto.ts',
    title: 'Crypto primitives',
    summarize: (json) => {
      const rows = rowsOf(json, 'throughput');
      const sizes = [...new Set(rows.map((r) => String(r['size'])))];
      const size = sizes[sizes.length - 1];
      const pick = (op: string) => rows.find((r) => r['op'] === op && r['size'] === size);
      const out: SummaryRow[] = [];
      for (const op of ['native chacha20-poly1305 open', 'fedtl sealUpdate', 'fedtl openUpdate (verify+decrypt+validate)', 'tweetnacl secretbox open']) {
        const row = pick(op);
        if (!row) continue;
        out.push({ benchmark: 'crypto', measurement: `${op} (${size})`, result: `${fmt(row['MB/s'])} MB/s`, ratio: row['x tweetnacl'] === '' ? '1× (baseline)' : `${x(row['x tweetnacl'])} tweetnacl secretbox`, target: '—', status: '—' });
      }
      return out;
    },
  },
  {
    name: 'training',
    script: 'training.ts',
    title: 'Client local training (cached features vs base every epoch)',
    summarize: (json) => {
      const out: SummaryRow[] = [];
      for (const row of rowsOf(json, 'forward')) {
        out.push({ benchmark: 'training', measurement: `${fmt(row['base'])} forward, ${fmt(row['backend'])}`, result: `${fmt(row['forward ex/s'])} ex/s (${fmt(row['ms/example'])} ms/ex)`, ratio: '—', target: '—', status: '—' });
      }
      for (const row of rowsOf(json, 'results')) {
        const E = num(row['E']);
        out.push({
          benchmark: 'training',
          measurement: `${fmt(row['base'])} head, ${fmt(row['backend'])}, ${fmt(row['examples'])} ${fmt(row['data'])}, E=${E}`,
          result: `cached ${fmt(row['cached ex/s'])} vs naive ${fmt(row['naive ex/s'])} ex/s`,
          ratio: `${x(row['cached/naive speed'])} faster; cost ${fmt(row['cost cached/naive'])}`,
          target: `cost ≤ 1/E = ${fmt(1 / E)}`,
          status: String(row['target ≤1/E'] ?? ''),
        });
      }
      return out;
    },
  },
  {
    name: 'round-overhead',
    script: 'round-overhead.ts',
    title: 'Round overhead, K real socket.io clients',
    summarize: (json) =>
      rowsOf(json, 'results').map((row) => ({
        benchmark: 'round-overhead',
        measurement: `K=${fmt(row['K'])}, ${fmt(row['params'])} params, E=${fmt(row['E'])}, ${fmt(row['examples/client'])} ex/client`,
        result: `round ${fmt(row['wall ms'])} ms; Σ compute ${fmt(row['Σ compute ms'])} ms (slowest ${fmt(row['max compute ms'])}); overhead ${fmt(row['overhead ms'])} ms`,
        ratio: `overhead ${fmt(100 * num(row['overhead/Σcompute']))}% of Σ compute; ${fmt(100 * num(row['overhead/max compute']))}% of slowest client`,
        target: '≤ 10%',
        status: `in-process ${fmt(row['target ≤10% (in-process)'])}; deployment (pessimistic) ${fmt(row['target ≤10% (deployment, pessimistic)'])}`,
      })),
  },
  {
    name: 'base-distribution',
    script: 'base-distribution.ts',
    title: 'Base distribution over loopback',
    summarize: (json) => {
      const params = (json['params'] ?? {}) as Json;
      return rowsOf(json, 'results').map((row) => ({
        benchmark: 'base-distribution',
        measurement: `${fmt(params['clients'])} clients × ${fmt(num(params['baseBytes']) / 1e6)} MB, ${fmt(row['path'])}${row['chunk'] === '-' ? '' : `, chunk ${fmt(row['chunk'])}, ${fmt(row['in flight'])} in flight`}`,
        result: `${fmt(row['aggregate MB/s'])} MB/s aggregate (${fmt(row['per-client MB/s'])} per client)`,
        ratio: `${x(row['x raw'])} raw socket${row['x raw+verify'] === undefined ? '' : `; ${x(row['x raw+verify'])} raw socket + SHA-256 + file`}`,
        target: row['chunk'] === '-' ? '—' : '≥ 0.5× raw',
        status: row['chunk'] === '-' ? '—' : num(row['x raw']) >= 0.5 ? 'met' : 'missed',
      }));
    },
  },
  // ---- SLOT: simulation scale ---------------------------------------------------------------------
  // The virtual-client simulator (scripts/simulation/) gets its benchmark here: write
  // scripts/bench/simulation.ts that writes results/simulation.json with a `summary` array (see the
  // module doc) — or add a summarizer below — and it joins the run and the table automatically.
  // Until then it is listed as pending and does not block the run.
  { name: 'simulation', script: 'simulation.ts', title: 'Simulation scale (virtual clients)', optional: true },
  // Summarized from its JSON's `summary` array.
  { name: 'kernels', script: 'kernels.ts', title: 'wasm gradient kernels vs cpu' },
  // Summarized from its JSON's `summary` array.
  { name: 'delta-kernels', script: 'delta-kernels.ts', title: 'Ingest delta kernels: WebAssembly SIMD vs JavaScript' },
  // Summarized from its JSON's `summary` array.
  { name: 'socket-event-loop', script: 'socket-event-loop.ts', title: 'Coordinator event loop in a socket simulation: clients training in worker threads vs its own thread' },
  // Seconds per round only by default (3 rounds each); rounds to 97 % needs the full run: `--args.fedavg-reference ""`.
  { name: 'fedavg-reference', script: 'fedavg-reference.ts', title: 'fedtl simulate vs a plain TensorFlow.js FedAvg loop (MNIST 2NN, IID)', defaultArgs: ['--rounds', '3', '--reference-rounds', '3'] },
];

// ---- arguments ------------------------------------------------------------------------------------
const argv = process.argv.slice(2);
const dash = argv.indexOf('--');
const own = dash === -1 ? argv : argv.slice(0, dash);
const shared = dash === -1 ? [] : argv.slice(dash + 1);
const options = new Map<string, string>();
for (let i = 0; i < own.length; i++) {
  const arg = own[i] ?? '';
  if (!arg.startsWith('--')) throw new Error(`unexpected argument '${arg}'`);
  const eq = arg.indexOf('=');
  if (eq !== -1) options.set(arg.slice(2, eq), arg.slice(eq + 1));
  else if (arg === '--no-run') options.set('no-run', 'true');
  else options.set(arg.slice(2), own[++i] ?? '');
}
const names = new Set(BENCHES.map((b) => b.name));
const listOption = (key: string): Set<string> | null => {
  const value = options.get(key);
  if (value === undefined) return null;
  const list = value.split(',').filter(Boolean);
  for (const name of list) if (!names.has(name)) throw new Error(`--${key}: unknown benchmark '${name}' (known: ${[...names].join(', ')})`);
  return new Set(list);
};
const only = listOption('only');
const skip = listOption('skip') ?? new Set<string>();
const noRun = options.has('no-run');

// ---- run ------------------------------------------------------------------------------------------
/** Node flags that make a child run TypeScript: inherit tsx's loader if present, else add it. */
function childExecArgv(): string[] {
  if (process.execArgv.some((arg) => /(^|[\\/])tsx([\\/]|$)/.test(arg))) return process.execArgv;
  return [...process.execArgv, '--import', import.meta.resolve('tsx')];
}

function runScript(script: string, scriptArgs: string[]): Promise<{ code: number; seconds: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...childExecArgv(), join(HERE, script), ...scriptArgs], { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code: code ?? (signal ? 1 : 0), seconds: (performance.now() - started) / 1000 }));
  });
}

const summary: SummaryRow[] = [];
const timings: { name: string; seconds: number; status: string }[] = [];
const started = performance.now();
for (const bench of BENCHES) {
  if ((only && !only.has(bench.name)) || skip.has(bench.name)) continue;
  if (!existsSync(join(HERE, bench.script))) {
    if (!bench.optional) throw new Error(`benchmark script ${bench.script} is missing`);
    console.log(`\n=== ${bench.name}: pending (${bench.script} not written yet) ===`);
    summary.push({ benchmark: bench.name, measurement: bench.title, result: 'pending', ratio: '—', target: '—', status: 'not run' });
    timings.push({ name: bench.name, seconds: 0, status: 'pending' });
    continue;
  }
  const extra = options.get(`args.${bench.name}`)?.split(/\s+/).filter(Boolean) ?? bench.defaultArgs ?? [];
  console.log(`\n=== ${bench.name}: ${bench.title} ===`);
  const { code, seconds } = noRun ? { code: 0, seconds: 0 } : await runScript(bench.script, [...shared, ...extra]);
  timings.push({ name: bench.name, seconds, status: code === 0 ? 'ok' : `exit ${code}` });
  if (code !== 0) {
    summary.push({ benchmark: bench.name, measurement: bench.title, result: `failed (exit ${code})`, ratio: '—', target: '—', status: 'failed' });
    continue;
  }
  const json = JSON.parse(readFileSync(join(RESULTS_DIR, `${bench.name}.json`), 'utf8')) as Json;
  if (bench.summarize) summary.push(...bench.summarize(json));
  else
    for (const row of rowsOf(json, 'summary')) {
      summary.push({ benchmark: bench.name, measurement: fmt(row['measurement']), result: fmt(row['result']), ratio: fmt(row['ratio'] ?? '—'), target: fmt(row['target'] ?? '—'), status: fmt(row['status'] ?? '—') });
    }
}

// ---- the table ------------------------------------------------------------------------------------
const machine = machineInfo();
const escape = (text: string) => text.replace(/\|/g, '\\|');
const lines = [
  `Measured ${new Date().toISOString().slice(0, 10)} on ${machine['cpuCount']} × ${machine['cpuModel']}, ${machine['memoryGB']} GB, Node ${machine['node']} (\`npm run bench\`; JSON in \`scripts/bench/results/\`). Ratios are measured side by side in one run.`,
  '',
  '| Benchmark | Measurement | Result | Ratio | Target | Status |',
  '|---|---|---|---|---|---|',
  ...summary.map((r) => `| ${[r.benchmark, r.measurement, r.result, r.ratio, r.target, r.status].map(escape).join(' | ')} |`),
  '',
  noRun ? 'Table rebuilt from the stored JSON (`--no-run`); each file records its own date and machine load.' : `Run time: ${timings.map((t) => `${t.name} ${t.seconds.toFixed(0)} s${t.status === 'ok' ? '' : ` (${t.status})`}`).join(', ')}; total ${((performance.now() - started) / 1000).toFixed(0)} s.`,
];
const markdown = lines.join('\n') + '\n';
writeFileSync(join(RESULTS_DIR, 'summary.md'), markdown);
console.log(`\n${markdown}`);
console.log(`wrote ${join(RESULTS_DIR, 'summary.md')}`);
if (timings.some((t) => t.status !== 'ok' && t.status !== 'pending')) process.exitCode = 1;
