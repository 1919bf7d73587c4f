import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../scripts/simulation/presets.ts';
import { configAtSize, curveLines, parseCurveSizes, renderCurveHtml, type TransferCurve } from '../../../scripts/simulation/transfer-curve.ts';

describe('transfer curve', () => {
  it('parses sizes into increasing distinct integers and refuses anything else', () => {
    expect(parseCurveSizes('2000, 100,500,100')).toEqual([100, 500, 2000]);
    expect(() => parseCurveSizes('100,abc')).toThrow(/"abc" is not a positive integer/);
    expect(() => parseCurveSizes('0')).toThrow(/"0" is not a positive integer/);
    expect(() => parseCurveSizes(' , ')).toThrow(/at least one/);
  });

  it('gives every client at least 5 examples at small sizes and skips the local-only baseline', () => {
    const config = resolveConfig('imdb-glove');
    const small = configAtSize(config, 40);
    expect(small.clients).toBe(8);
    expect(small.minClients).toBe(8);
    expect(small.trainExamples).toBe(40);
    expect(small.baselines.localOnly).toBe(false);
    expect(configAtSize(config, 2000).clients).toBe(config.clients);
  });

  it('draws one chart with a line per method and prints a table', () => {
    const curve: TransferCurve = {
      preset: 'imdb-glove',
      seed: 42,
      points: [
        { trainExamples: 100, clients: 20, featureExtraction: 0.6, scratch: 0.55, scratchFeatures: 'tf-idf', centralized: 0.65, wallSeconds: 10 },
        { trainExamples: 500, clients: 20, featureExtraction: 0.68, scratch: 0.75, scratchFeatures: 'tf-idf', centralized: 0.72, wallSeconds: 20 },
      ],
    };
    const html = renderCurveHtml(curve);
    expect(html).toContain('<svg');
    expect(html).toContain('federated from scratch (tf-idf)');
    expect(html).toContain('<td>75.0% (tf-idf)</td>');
    const text = curveLines(curve, 'out').join('\n');
    expect(text).toMatch(/100\s+20\s+60\.0%\s+55\.0%\s+65\.0%/);
  });
});
