/**
 * Strategy comparison on the main job's split: for each strategy and seed, runs
 *   node bin/fedtl.js simulate --preset <preset> --mode virtual --strategy <s> --seed <n> --no-baselines
 * exactly as a user would, reads its report.json, and records the final accuracy and the
 * round-to-round swing (mean |acc_r − acc_{r−1}| over the last 10 rounds). Writes
 * scripts/bench/results/strategy-comparison.json and prints a Markdown table.
 *
 * Run: `npx tsx scripts/bench/strategy-comparison.ts [preset] [strategies,comma] [seeds,comma]`
 * (default imdb-glove; fedavg,fedavgm,fedprox,fedadam,fedyogi; 1,2,3).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const preset = process.argv[2] ?? 'imdb-glove';
const strategies = (process.argv[3] ?? 'fedavg,fedavgm,fedprox,fedadam,fedyogi').split(',');
const seeds = (process.argv[4] ?? '1,2,3').split(',').map(Number);
const SWING_ROUNDS = 10;

interface Row {
  strategy: string;
  seed: number;
  command: string;
  finalAccuracy: number;
  swing: number;
  seconds: number;
}

const rows: Row[] = [];
const scratch = await mkdtemp(path.join(os.tmpdir(), 'fedtl-strategy-comparison-'));
try {
  for (const strategy of strategies) {
    for (const seed of seeds) {
      const out = path.join(scratch, `${strategy}-${seed}`);
      const args = ['bin/fedtl.js', 'simulate', '--preset', preset, '--mode', 'virtual', '--strategy', strategy, '--seed', String(seed), '--no-baselines', '--out', out];
      const started = Date.now();
      const child = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', env: { ...process.env, FEDTL_LOG: 'warn' } });
      if (child.status !== 0) throw new Error(`${args.join(' ')} exited ${child.status}:\n${child.stderr}`);
      const report = JSON.parse(await readFile(path.join(out, 'report.json'), 'utf8')) as { rounds: Array<{ accuracy: number }>; finalAccuracy: number };
      const accuracies = report.rounds.map((r) => r.accuracy);
      const tail = accuracies.slice(-SWING_ROUNDS - 1);
      let swing = 0;
      for (let i = 1; i < tail.length; i++) swing += Math.abs(tail[i]! - tail[i - 1]!);
      swing /= Math.max(1, tail.length - 1);
      const row = { strategy, seed, command: `node ${args.slice(0, -2).join(' ')}`, finalAccuracy: report.finalAccuracy, swing, seconds: (Date.now() - started) / 1000 };
      rows.push(row);
      process.stdout.write(`${strategy} seed ${seed}: final ${(100 * row.finalAccuracy).toFixed(1)} %, swing ${(100 * swing).toFixed(2)} points (${row.seconds.toFixed(0)} s)\n`);
    }
  }
} finally {
  await rm(scratch, { recursive: true, force: true });
}

const summary = strategies.map((strategy) => {
  const mine = rows.filter((r) => r.strategy === strategy);
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  return { strategy, meanFinal: mean(mine.map((r) => r.finalAccuracy)), finals: mine.map((r) => r.finalAccuracy), meanSwing: mean(mine.map((r) => r.swing)) };
});
await mkdir(path.join(root, 'scripts', 'bench', 'results'), { recursive: true });
await writeFile(path.join(root, 'scripts', 'bench', 'results', 'strategy-comparison.json'), JSON.stringify({ preset, seeds, swingRounds: SWING_ROUNDS, createdAt: new Date().toISOString(), rows, summary }, null, 1));
process.stdout.write(`\n| strategy | final accuracy, mean (seeds ${seeds.join(', ')}) | per seed | swing, mean |\n|---|---|---|---|\n`);
for (const s of summary) {
  process.stdout.write(`| ${s.strategy} | ${(100 * s.meanFinal).toFixed(1)} % | ${s.finals.map((f) => (100 * f).toFixed(1)).join(' / ')} | ${(100 * s.meanSwing).toFixed(2)} points |\n`);
}
