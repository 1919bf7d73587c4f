/**
 * The simulation report laid out by a real browser (Debian's Chromium through playwright-core):
 * the label heat strip's caption and colour scale are drawn in full, nothing in the heat strip
 * falls outside its SVG, and no section overflows sideways, on a desktop and a narrow window.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partition, Random, summarizePartition } from '../../shared/math/index.ts';
import { HEAT_STRIP_CAPTION, renderReportHtml, type RoundRecord } from '../../scripts/simulation/report-html.ts';
import { clientViews, finalEvaluation } from '../../scripts/simulation/report-tables.ts';

const CHROMIUM = '/usr/bin/chromium';

interface Box {
  left: number;
  right: number;
  top: number;
  bottom: number;
  width: number;
  height: number;
}

/** What the page reports about the heat strip and the sections. */
interface Layout {
  caption: Box;
  section: Box;
  svg: Box;
  scale: Box;
  scaleTicks: string[];
  widestRight: number;
  lowestBottom: number;
  overflowing: string[];
}

let browser: BrowserContext;
let dir = '';

/** A report of `clients` clients over 10 classes with every section filled. */
function reportHtml(clients: number): string {
  const labels = new Random(7).shuffle(Int32Array.from({ length: 2000 }, (_, i) => i % 10));
  const summary = summarizePartition(partition(labels, { scheme: 'dirichlet', numClients: clients, seed: 7, alpha: 0.3 }), labels, 10);
  const rounds: RoundRecord[] = Array.from({ length: 12 }, (_, i) => ({ round: i + 1, accuracy: 0.9 - 0.4 * Math.exp(-(i + 1) / 3), loss: 1 / (i + 2), participants: 5, dropped: i % 3 === 0 ? 1 : 0, bytesUp: 1_200_000, bytesDown: 1_500_000, seconds: 2.5 }));
  const testLabels = Array.from({ length: 1000 }, (_, i) => i % 10);
  const evaluation = finalEvaluation(testLabels, testLabels.map((c, i) => (i % 7 === 0 ? (c + 3) % 10 : c)), 10);
  const perClient = [0, 1, 2, 3].map((client) => ({ client, examples: summary.sizes[client]!, accuracy: 0.4 + 0.05 * client, recall: evaluation.metrics.recall.map((r) => (r ?? 0) * 0.6) }));
  return renderReportHtml({
    title: 'fedtl simulation: layout check',
    createdAt: '2026-11-27T00:00:00Z',
    config: { preset: 'layout', partition: { scheme: 'dirichlet', alpha: 0.3 } },
    seed: 7,
    backend: 'wasm',
    partition: summary,
    labelNames: ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'],
    rounds,
    baselines: { centralized: { accuracy: 0.92, loss: 0.25 }, localOnly: { mean: 0.475, std: 0.056, min: 0.4, max: 0.55, clients: 4, perClient } },
    wallSeconds: 95,
    finalAccuracy: rounds.at(-1)!.accuracy,
    peakRssMb: 400,
    testExamples: 1000,
    targetAccuracy: 0.85,
    evaluation,
    clients: clientViews(summary, evaluation.metrics.recall, perClient),
  });
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/install-browser.sh (apt-get install chromium)`);
  dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-report-browser-'));
  browser = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1100, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

afterAll(async () => {
  await browser?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('report.html in a browser', () => {
  for (const [clients, width] of [[5, 1100], [60, 1100], [60, 640]] as const) {
    it(`${clients} clients at ${width} px: the heat strip's caption and colour scale are whole, nothing overflows`, async () => {
      const file = path.join(dir, `report-${clients}.html`);
      await writeFile(file, reportHtml(clients));
      const page = await browser.newPage();
      await page.setViewportSize({ width, height: 1000 });
      await page.goto(`file://${file}`);

      // The caption is page text, wrapped by the browser, in full and inside its section.
      const caption = page.locator('figure figcaption');
      expect(await caption.innerText()).toBe(HEAT_STRIP_CAPTION);
      // A string, run in the page: the project compiles without the DOM library.
      const layout = (await page.evaluate(`(() => {
        const box = (el) => el.getBoundingClientRect();
        const figure = document.querySelector('figure');
        const section = figure.closest('section');
        const svg = figure.querySelector('svg');
        const svgBox = box(svg);
        // Every shape and label of the heat strip, in page pixels.
        const drawn = [...svg.querySelectorAll('rect, text, line')].map(box);
        const overflowing = [...document.querySelectorAll('section')].filter((s) => s.scrollWidth > s.clientWidth + 1).map((s) => s.querySelector('h2')?.textContent);
        return {
          caption: box(figure.querySelector('figcaption')).toJSON(),
          section: box(section).toJSON(),
          svg: svgBox.toJSON(),
          scale: box(svg.querySelector('.heat-scale')).toJSON(),
          scaleTicks: [...svg.querySelectorAll('.heat-scale text')].map((t) => t.textContent),
          widestRight: Math.max(...drawn.map((b) => b.right)),
          lowestBottom: Math.max(...drawn.map((b) => b.bottom)),
          overflowing,
        };
      })()`)) as Layout;
      expect(layout.caption.right).toBeLessThanOrEqual(layout.section.right);
      expect(layout.caption.height).toBeGreaterThan(0);
      expect(layout.scaleTicks).toEqual(['share', '0 %', '5 %', '25 %', '50 %', '100 %']);
      expect(layout.scale.width).toBeGreaterThan(0);
      // Nothing drawn outside the SVG's own box (that is what clipping would cut off).
      expect(layout.widestRight).toBeLessThanOrEqual(layout.svg.right + 0.5);
      expect(layout.lowestBottom).toBeLessThanOrEqual(layout.svg.bottom + 0.5);
      expect(layout.svg.right).toBeLessThanOrEqual(layout.section.right);
      // Sections never scroll sideways (wide tables scroll inside their own box).
      expect(layout.overflowing).toEqual([]);
      await page.close();
    });
  }
});
