import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { partition, summarizePartition, Random } from '../../../shared/math/index.ts';
import {
  describePartitionSettings,
  formatBytes,
  formatDuration,
  HEAT_STRIP_CAPTION,
  renderReportHtml,
  roundReaching,
  type RoundRecord,
  type SimulationReport,
} from '../../../scripts/simulation/report-html.ts';
import { formatCount, formatPercent, formatPoints } from '../../../scripts/simulation/report-format.ts';
import { clientViews, finalEvaluation } from '../../../scripts/simulation/report-tables.ts';
import { escapeXml } from '../../../scripts/simulation/svg-chart.ts';

/** A realistic report: 30 rounds of a saturating accuracy curve over a Dirichlet partition. */
function sampleReport(overrides: Partial<SimulationReport> = {}): SimulationReport {
  const rng = new Random(3);
  const labels = rng.shuffle(Int32Array.from({ length: 3000 }, (_, i) => i % 10));
  const summary = summarizePartition(partition(labels, { scheme: 'dirichlet', numClients: 60, seed: 3, alpha: 0.5 }), labels, 10);
  const curve = (start: number, end: number): RoundRecord[] =>
    Array.from({ length: 30 }, (_, i) => {
      const accuracy = end - (end - start) * Math.exp(-(i + 1) / 6);
      const dropped = i % 4 === 0 ? 2 : 0;
      return {
        round: i + 1,
        // Evaluate every round except round 5, to exercise gaps.
        accuracy: i === 4 ? null : accuracy,
        loss: i === 4 ? null : 2 * (1 - accuracy),
        participants: 10 - dropped,
        dropped,
        bytesUp: (10 - dropped) * 120_000,
        bytesDown: 10 * 120_000,
        seconds: 0.8,
      };
    });
  const rounds = curve(0.5, 0.9);
  return {
    title: 'Test <report> & "friends"',
    createdAt: '2025-01-01T00:00:00Z',
    config: { preset: 'mnist', partition: 'dirichlet', alpha: 0.5, nested: { a: [1, 2] }, url: 'https://example.com/x' },
    seed: 3,
    backend: 'cpu',
    partition: summary,
    rounds,
    baselines: {
      centralized: { accuracy: 0.93, loss: 0.2 },
      localOnly: { mean: 0.6, std: 0.05, min: 0.5, max: 0.7 },
      scratch: { rounds: curve(0.1, 0.7) },
    },
    wallSeconds: 125,
    finalAccuracy: rounds.at(-1)!.accuracy,
    peakRssMb: 512,
    notes: ['<script>alert(1)</script>'],
    ...overrides,
  };
}

describe('renderReportHtml', () => {
  it('is a self-contained document: no scripts, no external resources', () => {
    const html = renderReportHtml(sampleReport({ config: { preset: 'mnist' } }));
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).not.toMatch(/<script|<link|<img|<iframe|@import|url\(/i);
    expect(html).toContain('<svg');
    expect(html).toContain('<style>');
  });

  it('escapes user text, including values that look like URLs or markup', () => {
    const html = renderReportHtml(sampleReport());
    expect(html).toContain('Test &lt;report&gt; &amp; &quot;friends&quot;');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).not.toContain('<script>');
    // A config value that happens to be a URL is shown as text, never referenced as a resource.
    expect(html).not.toMatch(/(src|href)=["']?https?:/i);
  });

  it('shows headline numbers, baselines, config and every chart', () => {
    const html = renderReportHtml(sampleReport());
    for (const text of ['Final accuracy', 'Centralized', 'Local-only mean', 'From scratch', '2 min 05 s', '537 MB']) {
      expect(html).toContain(text);
    }
    for (const heading of ['Accuracy', 'Loss', 'Participation', 'Communication', 'Data partition', 'Configuration', 'Rounds']) {
      expect(html).toContain(`<h2>${heading}</h2>`);
    }
    // Accuracy and loss: federated + scratch; traffic: up + down.
    expect(html.split('<polyline').length - 1).toBe(6);
    expect(html).toContain('centralized 93.0\u00a0%');
    expect(html).toContain('local-only mean ± std 60.0\u00a0%');
    expect(html).toContain('{&quot;a&quot;:[1,2]}');
    // The heat strip shows the first 50 of 60 clients.
    expect(html).toContain('first 50 of 60');
  });

  it('renders a minimal report with no baselines and no rounds', () => {
    const html = renderReportHtml(sampleReport({ rounds: [], baselines: {}, finalAccuracy: null, notes: [] }));
    expect(html).toContain('no data');
    expect(html).not.toContain('From scratch');
    expect(html).not.toContain('<h2>Rounds</h2>');
  });

  it('writes a sample report that can be opened by hand', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedtl-report-'));
    try {
      const file = join(dir, 'report.html');
      await writeFile(file, renderReportHtml(sampleReport()));
      const text = await readFile(file, 'utf8');
      expect(text.length).toBeGreaterThan(10_000);
      expect(text.trimEnd().endsWith('</html>')).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** The sample report with what a real run adds: class names, a scored final model, per-client results, a target. */
function fullReport(overrides: Partial<SimulationReport> = {}): SimulationReport {
  const base = sampleReport();
  const labelNames = ['T-shirt', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
  // 1,000 test examples, 100 per class; class c is right except for c·5 examples taken for class c + 1.
  const labels: number[] = [];
  const predicted: number[] = [];
  for (let c = 0; c < 10; c++) {
    for (let i = 0; i < 100; i++) {
      labels.push(c);
      predicted.push(i < c * 5 ? (c + 1) % 10 : c);
    }
  }
  const evaluation = finalEvaluation(labels, predicted, 10);
  const perClient = [0, 1, 2].map((client) => ({ client, examples: base.partition.sizes[client]!, accuracy: 0.5 + client * 0.1, recall: Array.from({ length: 10 }, (_, c) => (c < 5 ? 0.9 : 0.2)) }));
  return {
    ...base,
    labelNames,
    testExamples: 1000,
    targetAccuracy: 0.85,
    evaluation,
    baselines: { ...base.baselines, localOnly: { mean: 0.6, std: 0.0816, min: 0.5, max: 0.7, clients: 3, perClient } },
    clients: clientViews(base.partition, evaluation.metrics.recall, perClient),
    ...overrides,
  };
}

describe('renderReportHtml, the tables and markers', () => {
  it('compares every model in one table with 95 % intervals and says how each was computed', () => {
    const html = renderReportHtml(fullReport());
    const section = html.slice(html.indexOf('<section id="comparison">'), html.indexOf('</section>', html.indexOf('<section id="comparison">')));
    for (const model of ['federated (pretrained base)', 'centralized (pooled data)', 'local-only (mean over clients)', 'federated from scratch (no base)']) expect(section).toContain(model);
    // Centralized 93 % on 1,000 examples: Wilson [91.2 %, 94.4 %]; local-only 0.5, 0.6, 0.7: t [35.2 %, 84.8 %].
    expect(section).toContain('91.2\u00a0% – 94.4\u00a0%');
    expect(section).toContain('Wilson, n = 1,000 test examples');
    expect(section).toContain('35.2\u00a0% – 84.8\u00a0%');
    expect(section).toContain('Student t over 3 clients');
  });

  it('shows the confusion matrix with class names and per-class precision, recall and F1', () => {
    const html = renderReportHtml(fullReport());
    const section = html.slice(html.indexOf('<section id="confusion">'), html.indexOf('</section>', html.indexOf('<section id="confusion">')));
    expect(section).toContain('<th class="num">Ankle boot</th>');
    expect(section).toContain('true \\ predicted');
    // Class 9 (Ankle boot): 45 of 100 taken for class 0 (T-shirt), so recall 55.0 %; 40 of Bag taken for it, so
    // precision 55 / 95 = 57.9 %, F1 2 · 0.579 · 0.55 / 1.129 = 56.4 %. Class 0 got the 45: precision 100 / 145 = 69.0 %.
    // (Numbers and their unit are joined by a no-break space, U+00A0.)
    expect(section).toContain('true Ankle boot, predicted T-shirt: 45 (45.0\u00a0% of Ankle boot)');
    expect(section).toMatch(/<td>Ankle boot<\/td><td class="num">100<\/td><td class="num">57\.9\u00a0%<\/td><td class="num">55\.0\u00a0%<\/td><td class="num">56\.4\u00a0%<\/td>/);
    expect(section).toMatch(/<td>T-shirt<\/td><td class="num">100<\/td><td class="num">69\.0\u00a0%<\/td><td class="num">100\.0\u00a0%<\/td>/);
    expect(section).toContain('macro average');
    // 1,000 − (0 + 5 + … + 45) = 775 right.
    expect(section).toContain('Accuracy 77.5\u00a0%');
  });

  it('shows each client\'s local-only and federated accuracy on its own label mix, numbered as in the partition', () => {
    const report = fullReport();
    const html = renderReportHtml(report);
    const section = html.slice(html.indexOf('<section id="clients">'), html.indexOf('</section>', html.indexOf('<section id="clients">')));
    const view = report.clients![1]!;
    expect(view.localOnly).not.toBeNull();
    const row = `<tr><td class="num">1</td><td class="num">${formatCount(view.examples)}</td>`;
    expect(section).toContain(row);
    const rowText = section.slice(section.indexOf(row), section.indexOf('</tr>', section.indexOf(row)));
    expect(rowText).toContain(formatPercent(view.localOnly));
    expect(rowText).toContain(formatPercent(view.federated));
    expect(rowText).toContain(formatPoints(view.gain));
    expect(rowText).toContain('60.0\u00a0%');
    expect(section).toMatch(/Federation beat training alone for \d of 3 clients compared/);
    // 60 clients: the three compared first, then the others, up to the table's limit; all 60 rows fit.
    expect(section.split('<tr>').length - 2).toBe(60);
  });

  it('lists seed and backend once in the configuration, even when the config holds them too', () => {
    const html = renderReportHtml(sampleReport({ config: { seed: 3, backend: 'cpu', preset: 'x' } }));
    expect(html.split('<th>seed</th>').length - 1).toBe(1);
    expect(html.split('<th>backend</th>').length - 1).toBe(1);
  });

  it('escapes class names in every new table', () => {
    const hostile = Array.from({ length: 10 }, (_, c) => `<b class="x${c}">&`);
    const html = renderReportHtml(fullReport({ labelNames: hostile }));
    expect(html).not.toContain('<b class="x');
    expect(html).toContain('&lt;b class=&quot;x9&quot;&gt;&amp;');
  });

  it('marks the best round and the target on the accuracy chart', () => {
    const report = fullReport();
    const html = renderReportHtml(report);
    const section = html.slice(html.indexOf('<h2>Accuracy</h2>'), html.indexOf('</section>', html.indexOf('<h2>Accuracy</h2>')));
    const reached = roundReaching(report.rounds, 0.85)!;
    // The sample curve rises every round, so its best round is the last.
    expect(section).toContain('best 89.7\u00a0%, round 30');
    expect(section).toContain(`target reached, round ${reached.round}`);
    expect(section).toContain('target 85.0\u00a0%');
    expect(section).toContain(`Target 85.0\u00a0% first reached at round ${reached.round}.`);
    expect(section.split('stroke-dasharray="2 3"').length - 1).toBe(2);
    const missed = renderReportHtml(fullReport({ targetAccuracy: 0.99 }));
    expect(missed).toContain('Target 99.0\u00a0% not reached in 30 rounds.');
    expect(renderReportHtml(fullReport({ targetAccuracy: null }))).not.toContain('target reached');
  });

  it('gives the label heat strip a colour scale and its full caption, never clipped', () => {
    for (const clients of [3, 60]) {
      const rng = new Random(5);
      const labels = rng.shuffle(Int32Array.from({ length: 600 }, (_, i) => i % 10));
      const partition = summarizePartition(partition_(labels, clients), labels, 10);
      const html = renderReportHtml(sampleReport({ partition }));
      // The caption is HTML text (it wraps), in full.
      expect(html).toContain(`<figcaption>${escapeXml(HEAT_STRIP_CAPTION)}</figcaption>`);
      const svg = html.slice(html.indexOf('<svg', html.indexOf('<figcaption>')), html.indexOf('</svg>', html.indexOf('<figcaption>')));
      expect(svg).toContain('class="heat-scale"');
      for (const tick of ['0 %', '5 %', '25 %', '50 %', '100 %']) expect(svg).toContain(`>${tick}</text>`);
      // Everything drawn lies inside the SVG's width: no text or cell beyond the right edge.
      const width = Number(/viewBox="0 0 (\d+)/.exec(svg)![1]);
      const xs = [...svg.matchAll(/<(?:rect|text)[^>]* x="([\d.]+)"[^>]*?(?: width="([\d.]+)")?/g)].map((m) => Number(m[1]) + Number(m[2] ?? 0));
      expect(Math.max(...xs)).toBeLessThanOrEqual(width);
      expect(width).toBeGreaterThanOrEqual(420);
    }
  });

  it('prints percent with one decimal, counts with thousands separators and bytes in one unit', () => {
    const html = renderReportHtml(fullReport());
    expect(html).not.toMatch(/\d\.\d\d[ \u00a0]%/);
    // No count of four digits or more without its separator.
    expect(html).not.toMatch(/[^\d,.#]\d{4,} (examples|test examples|rounds|clients)/);
    expect(html).toContain('<th>examples</th><td>3,000</td>');
    expect(html).not.toContain('MiB');
  });
});

function partition_(labels: Int32Array, clients: number) {
  return partition(labels, { scheme: 'dirichlet', numClients: clients, seed: 5, alpha: 0.5 });
}

describe('describePartitionSettings', () => {
  it('shows the scheme in words with only the parameters it uses', () => {
    expect(describePartitionSettings({ scheme: 'dirichlet', alpha: 0.5, beta: 0.5, shardsPerClient: 2 })).toBe('Dirichlet label skew, α = 0.5 (smaller α: more skewed)');
    expect(describePartitionSettings({ scheme: 'shards', alpha: 0.5, beta: 0.5, shardsPerClient: 2 })).toBe('label shards, 2 per client (as in McMahan et al. 2017)');
    expect(describePartitionSettings({ scheme: 'quantity', beta: 0.3 })).toMatch(/β = 0\.3/);
    expect(describePartitionSettings({ scheme: 'iid', alpha: 9 })).not.toMatch(/α/);
    expect(describePartitionSettings({ scheme: 'other', x: 1 })).toBe('{"scheme":"other","x":1}');
  });

  it('replaces the raw JSON in the report', () => {
    const html = renderReportHtml(sampleReport({ config: { partition: { scheme: 'dirichlet', alpha: 0.5, beta: 0.5, shardsPerClient: 2 } } }));
    expect(html).toContain('Dirichlet label skew, α = 0.5');
    expect(html).not.toContain('shardsPerClient');
  });
});

describe('formatters', () => {
  it('formats bytes in decimal units and durations readably', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1_500)).toBe('1.50 kB');
    expect(formatBytes(205_000_000)).toBe('205 MB');
    expect(formatDuration(4.2)).toBe('4.20 s');
    expect(formatDuration(125)).toBe('2 min 05 s');
    expect(formatDuration(3720)).toBe('1 h 02 min');
  });
});
