/**
 * The coordinator's dashboard in a real headless browser: Debian's Chromium driven by
 * playwright-core (never a browser playwright downloads) follows a live federation of three real
 * clients and must update round by round; `/metrics` serves the same counters to Prometheus, and
 * nothing is served without the token. Writes the screenshot the README shows (docs/dashboard.png).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Federation } from '../support/federation.ts';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'dashboard.png');
const ROUNDS = 4;

let browser: BrowserContext;
let profile = '';
let federation: Federation;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/install-browser.sh (apt-get install chromium)`);
  profile = await mkdtemp(path.join(os.tmpdir(), 'fedtl-chromium-'));
  // A fresh profile directory per run (playwright passes it as --user-data-dir).
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1100, height: 1000 },
    // The page's CSP forbids eval; the test's string predicates need it (the page itself never evals).
    bypassCSP: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  federation = await Federation.start({ clients: 3, rounds: ROUNDS, dashboard: { token: 'browser-test-token', intervalMs: 200 } });
});

afterAll(async () => {
  await browser?.close();
  await federation?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

describe('the live dashboard', () => {
  it('follows a federation of three clients round by round, read-only, behind its token', async () => {
    // Prepare: the page is open before any client joins.
    const page = await browser.newPage();
    const url = federation.coordinator.dashboardUrl!;
    expect(url).toContain('/dashboard?token=browser-test-token');
    await page.goto(url);
    await page.waitForFunction("document.getElementById('status').textContent === 'live'");
    expect(await page.textContent('#phase')).toBe('waiting for clients');

    // Execute: three clients join and the run goes through its rounds.
    for (let i = 0; i < 3; i++) federation.startClient(i);
    const run = federation.coordinator.run();
    await page.waitForFunction(`document.querySelectorAll('#history tbody tr').length === ${ROUNDS}`, undefined, { timeout: 240_000 });
    await run;
    await page.waitForFunction("document.getElementById('phase').textContent === 'finished'");

    // Assert: every round reached the page as its own update, in order, with its numbers.
    const seen = (await page.evaluate('window.fedtlDashboard.seen')) as number[];
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    const rows = (await page.evaluate("Array.from(document.querySelectorAll('#history tbody tr'), (tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent))")) as string[][];
    expect(rows.map((r) => r[0])).toEqual(['1', '2', '3', '4']);
    for (const row of rows) {
      expect(row[1]).toBe('3'); // selected
      expect(row[2]).toBe('3'); // accepted
      expect(row[6]).toMatch(/^\d+\.\d %$/); // federated evaluation accuracy
    }
    const history = federation.coordinator.loop.history;
    expect(rows[3]![6]).toBe(`${(100 * history[3]!.evalAccuracy!).toFixed(1)} %`);
    expect(await page.evaluate("document.querySelectorAll('#clientTable tbody tr').length")).toBe(3);
    expect(await page.textContent('#round')).toBe('4');
    expect(await page.textContent('#epsilon')).toBe('n/a');
    // No secrets on the page: public client ids only, never a key.
    const html = await page.content();
    expect(html).not.toMatch(/fedtl1:|signingKey|boxKey/);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // /metrics serves the same counters; nothing is served without the token.
    const metrics = await page.request.get(`${federation.coordinator.url}/metrics`, { headers: { authorization: 'Bearer browser-test-token' } });
    const text = await metrics.text();
    expect(text).toMatch(/^fedtl_rounds_completed 4$/m);
    expect(text).toMatch(/^fedtl_rounds_planned 4$/m);
    expect(text).toMatch(/^fedtl_privacy_epsilon nan$/im); // prom-client writes NaN as Nan
    expect(text).toMatch(/^fedtl_bytes_up_total \d+$/m);
    expect((await page.request.get(`${federation.coordinator.url}/metrics`)).status()).toBe(401);
    expect((await page.request.get(`${federation.coordinator.url}/dashboard?token=wrong`)).status()).toBe(401);
    const stranger = await browser.newPage();
    await stranger.goto(`${federation.coordinator.url}/dashboard?token=wrong`);
    expect(await stranger.textContent('body')).toMatch(/needs the token/);
  });
});
