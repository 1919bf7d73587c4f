import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { partition, summarizePartition, Random } from '../../../shared/math/index.ts';
import {
  describePartitionSettings,
  formatBytes,
  formatDuration,
  renderReportHtml,
  type RoundRecord,
  type SimulationReport,
} from '../../../scripts/simulation/report-html.ts';

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
    for (const text of ['Final accuracy', 'Centralized', 'Local-only mean', 'From scratch', '2 min 05 s', '512 MiB']) {
      expect(html).toContain(text);
    }
    for (const heading of ['Accuracy', 'Loss', 'Participation', 'Communication', 'Data partition', 'Configuration', 'Rounds']) {
      expect(html).toContain(`<h2>${heading}</h2>`);
    }
    // Accuracy and loss: federated + scratch; traffic: up + down.
    expect(html.split('<polyline').length - 1).toBe(6);
    expect(html).toContain('centralized 0.93');
    expect(html).toContain('local-only mean ± std 0.6');
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
