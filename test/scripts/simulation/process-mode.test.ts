/**
 * SLOW, END TO END (~15 s): `--mode process` with three real `fedtl client` child processes on
 * loopback, two rounds on a few hundred MNIST digits behind the identity base (CSV data files).
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Logger } from '../../../shared/core/log.ts';
import { createDataset } from '../../../client/data/dataset.ts';
import { loadCsv } from '../../../client/data/csv.ts';
import { loadJsonl } from '../../../client/data/jsonl.ts';
import { fileClassNames, toCsv, toJsonl } from '../../../scripts/simulation/process-clients.ts';
import { resolveConfig } from '../../../scripts/simulation/presets.ts';
import { runSimulation } from '../../../scripts/simulation/run-simulation.ts';

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe('client data files', () => {
  it('class names survive a comma-separated list and a folder name, in order', () => {
    expect(fileClassNames(['T-shirt/top', 'Trouser'])).toEqual(['T-shirt-top', 'Trouser']);
    expect(fileClassNames(['a,b', 'c'])).toEqual(['a-b', 'c']);
    expect(fileClassNames(['a/b', 'a-b'])).toEqual(['class-0', 'class-1']); // would collide
  });

  it('CSV and JSONL round-trip through the client loaders with the federation’s class order', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedtl-files-'));
    dirs.push(dir);
    const rows = createDataset({ name: 'rows', examples: { kind: 'tensor', rows: Float32Array.from([0.1, 1 / 3, 0, 255]), rowSize: 2 }, labels: Int32Array.from([1, 0]), classNames: ['b', 'a'] });
    const csv = join(dir, 'rows.csv');
    await writeFile(csv, toCsv(rows));
    const loadedRows = await loadCsv({ path: csv, classNames: ['b', 'a'] });
    expect(loadedRows.examples.kind === 'tensor' && Array.from(loadedRows.examples.rows)).toEqual(Array.from(Float32Array.from([0.1, 1 / 3, 0, 255])));
    expect(Array.from(loadedRows.labels)).toEqual([1, 0]);

    const texts = createDataset({ name: 'texts', examples: { kind: 'text', texts: ['good "film"', 'bad,\nfilm'] }, labels: Int32Array.from([1, 0]), classNames: ['negative', 'positive'] });
    const jsonl = join(dir, 'texts.jsonl');
    await writeFile(jsonl, toJsonl(texts));
    const loadedTexts = await loadJsonl({ path: jsonl, classNames: ['negative', 'positive'] });
    expect(loadedTexts.examples.kind === 'text' && loadedTexts.examples.texts).toEqual(['good "film"', 'bad,\nfilm']);
    expect(Array.from(loadedTexts.labels)).toEqual([1, 0]);
  });
});

describe('SLOW end to end: --mode process, 3 client processes, 2 rounds', () => {
  it('trains through separate fedtl client processes and cleans up after them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedtl-process-test-'));
    dirs.push(dir);
    // A private temporary root, so other test files running at the same time cannot add or
    // remove directories under it; restored below.
    const privateTmp = await mkdtemp(join(tmpdir(), 'fedtl-process-tmp-'));
    dirs.push(privateTmp);
    const savedTmp = process.env['TMPDIR'];
    process.env['TMPDIR'] = privateTmp;
    const config = resolveConfig('mnist-mlp', {
      mode: 'process',
      clients: 3,
      rounds: 2,
      fractionFit: 1,
      minClients: 3,
      trainExamples: 300,
      testExamples: 200,
      head: { hidden: [32], activation: 'relu', dropout: 0, classes: 10 },
      epochs: 2,
      batchSize: 16,
      baselines: { centralized: false, localOnly: false, scratch: false },
    });
    // Warnings would report a client process that exited non-zero, or a rejected update.
    const warnings: string[] = [];
    const logger: Logger = { debug() {}, info() {}, warn: (m) => warnings.push(m), error: (m) => warnings.push(m) };
    const { report } = await (async () => {
      try {
        return await runSimulation(config, { outDir: dir, logger });
      } finally {
        if (savedTmp === undefined) delete process.env['TMPDIR'];
        else process.env['TMPDIR'] = savedTmp;
      }
    })();
    expect(warnings).toEqual([]);
    expect(report.rounds).toHaveLength(2);
    for (const round of report.rounds) {
      expect(round.participants).toBe(3);
      expect(round.dropped).toBe(0);
      expect(round.bytesUp).toBeGreaterThan(0);
    }
    expect(report.finalAccuracy).toBeGreaterThan(0.15); // well above chance (0.1) after 2 rounds
    const json = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as { config: { mode: string } };
    expect(json.config.mode).toBe('process');
    // The clients' identities and data are gone.
    // (tsx keeps its compile cache there too; only fedtl's own directories must be gone.)
    expect((await readdir(privateTmp)).filter((name) => name.startsWith('fedtl-'))).toEqual([]);
  }, 60_000);
});
