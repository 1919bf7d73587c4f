/**
 * The from-scratch baselines: tf-idf rows against hand-computed values, the choice of the
 * strongest baseline, and negative transfer said with its gap, in the report and the CLI summary.
 */
import { describe, expect, it } from 'vitest';
import { createDataset } from '../../../client/data/dataset.ts';
import { renderReportHtml, type RoundRecord, type SimulationReport } from '../../../scripts/simulation/report-html.ts';
import { summaryLines, type SimulationResult } from '../../../scripts/simulation/run-simulation.ts';
import { negativeTransfer, scratchHead, scratchRows, strongestScratch, type ScratchBaseline } from '../../../scripts/simulation/scratch-baselines.ts';
import { resolveConfig } from '../../../scripts/simulation/presets.ts';
import { FASHION_CNN_CONV } from '../../../scripts/bases/fashion-split-cnn.ts';
import { buildHead } from '../../../shared/model/head.ts';
import { bagOfWords } from '../../../scripts/simulation/simulation-data.ts';
import { createIdentityBase } from '../../../shared/bases/identity.ts';
import { partition, summarizePartition } from '../../../shared/math/partition.ts';

const texts = (name: string, list: string[]) =>
  createDataset({ name, examples: { kind: 'text', texts: list }, labels: Int32Array.from(list, (_, i) => i % 2), classNames: ['neg', 'pos'] });

function rowsOf(dataset: ReturnType<typeof texts>): number[][] {
  if (dataset.examples.kind !== 'tensor') throw new Error('expected rows');
  const { rows, rowSize } = dataset.examples;
  return Array.from({ length: dataset.size }, (_, r) => Array.from(rows.subarray(r * rowSize, (r + 1) * rowSize)));
}

const rounds = (accuracy: number): RoundRecord[] => [{ round: 1, accuracy, loss: 1 - accuracy, participants: 2, dropped: 0, bytesUp: 10, bytesDown: 10, seconds: 0.1 }];
const run = (features: ScratchBaseline['features'], accuracy: number): ScratchBaseline => ({ features, description: features, accuracy, rounds: rounds(accuracy) });

describe('bagOfWords', () => {
  // Vocabulary by training frequency: good (3), bad (2), film (1). Two training texts.
  const train = texts('train', ['good good film', 'bad bad good']);
  const test = texts('test', ['good unseen', 'film']);

  it('counts: L2-normalised word counts over the training vocabulary', () => {
    const [trainRows, testRows] = bagOfWords(train, [test]);
    const [a, b] = rowsOf(trainRows!);
    // [good, bad, film] = [2, 0, 1] / √5 and [1, 2, 0] / √5.
    expect(a).toEqual([2, 0, 1].map((v) => Math.fround(v / Math.sqrt(5))));
    expect(b).toEqual([1, 2, 0].map((v) => Math.fround(v / Math.sqrt(5))));
    // An unseen test word is ignored: "good unseen" is [1, 0, 0].
    expect(rowsOf(testRows!)[0]).toEqual([1, 0, 0]);
  });

  it('tf-idf: (1 + ln tf) · (ln((1 + n) / (1 + df)) + 1), idf from the training texts only, L2-normalised', () => {
    const [trainRows, testRows] = bagOfWords(train, [test], { weighting: 'tf-idf' });
    const idf = (df: number) => Math.log(3 / (1 + df)) + 1;
    const normalise = (row: number[]) => {
      const norm = Math.hypot(...row);
      return row.map((v) => v / norm);
    };
    const expectedA = normalise([(1 + Math.log(2)) * idf(2), 0, idf(1)]);
    const expectedB = normalise([idf(2), (1 + Math.log(2)) * idf(1), 0]);
    rowsOf(trainRows!)[0]!.forEach((v, i) => expect(v).toBeCloseTo(expectedA[i]!, 6));
    rowsOf(trainRows!)[1]!.forEach((v, i) => expect(v).toBeCloseTo(expectedB[i]!, 6));
    // "film" alone is the unit vector on film whatever its idf.
    expect(rowsOf(testRows!)[1]).toEqual([0, 0, 1]);
  });

  it('refuses image data with a message naming the data set', () => {
    const images = createDataset({ name: 'digits', examples: { kind: 'image', pixels: new Uint8Array(4), width: 2, height: 2, channels: 1 }, labels: Int32Array.of(0), classNames: ['a', 'b'] });
    expect(() => bagOfWords(images, [])).toThrow(/digits holds image examples/);
    expect(() => scratchRows('tf-idf', images, images, createIdentityBase(4), 1)).toThrow(/needs text data/);
    expect(() => scratchRows('pixels', train, test, createIdentityBase(4), 1)).toThrow(/needs image data/);
  });
});

describe('strongest from-scratch baseline and negative transfer', () => {
  it('keeps the highest final accuracy, the first listed on a tie, none for an empty list', () => {
    expect(strongestScratch([run('bag-of-words', 0.8), run('tf-idf', 0.85), run('random-embedding', 0.85)])?.features).toBe('tf-idf');
    expect(strongestScratch([])).toBeUndefined();
    expect(strongestScratch([{ ...run('pixels', 0), accuracy: null }])).toBeUndefined();
  });

  it('says so, with the gap, only when the pretrained model trails the strongest baseline', () => {
    const negative = negativeTransfer(0.704, run('tf-idf', 0.856));
    expect(negative?.gap).toBeCloseTo(0.152, 10);
    expect(negative?.message).toContain('trails the same federation trained from scratch on tf-idf (85.6%) by 15.2 points');
    expect(negativeTransfer(0.9, run('pixels', 0.85))).toBeNull();
    expect(negativeTransfer(0.85, run('pixels', 0.85))).toBeNull();
    expect(negativeTransfer(null, run('pixels', 0.85))).toBeNull();
    expect(negativeTransfer(0.5, undefined)).toBeNull();
  });

  it('the report page and the CLI summary show every baseline and the warning', () => {
    const labels = Int32Array.from({ length: 40 }, (_, i) => i % 2);
    const strongest = run('tf-idf', 0.856);
    const report: SimulationReport = {
      title: 'fedtl simulation: imdb-glove',
      config: {},
      seed: 42,
      backend: 'wasm',
      partition: summarizePartition(partition(labels, { scheme: 'iid', numClients: 4, seed: 1 }), labels, 2),
      rounds: rounds(0.704),
      baselines: { centralized: { accuracy: 0.78, loss: 0.5 }, scratch: strongest, scratchOthers: [run('bag-of-words', 0.827), run('random-embedding', 0.633)] },
      wallSeconds: 10,
      finalAccuracy: 0.704,
      peakRssMb: 100,
      negativeTransfer: negativeTransfer(0.704, strongest),
    };
    const html = renderReportHtml(report);
    expect(html).toContain('Negative transfer.');
    expect(html).toContain('by 15.2 points');
    for (const name of ['From scratch: tf-idf', 'From scratch: bag-of-words', 'From scratch: random-embedding']) expect(html).toContain(name);
    const text = summaryLines({ report, reportJson: '', reportHtml: '' } as SimulationResult, 'out').join('\n');
    expect(text).toMatch(/federated from scratch, tf-idf\s+85\.6%\s+\(strongest\)/);
    expect(text).toMatch(/federated from scratch, bag-of-words\s+82\.7%/);
    expect(text).toMatch(/federated from scratch, random-embedding\s+63\.3%/);
    expect(text).toContain('WARNING negative transfer');
    expect(text).toContain('by 15.2 points');
    const positive = summaryLines({ report: { ...report, finalAccuracy: 0.9, negativeTransfer: null }, reportJson: '', reportHtml: '' } as SimulationResult, 'out').join('\n');
    expect(positive).not.toContain('WARNING');
    expect(renderReportHtml({ ...report, negativeTransfer: null })).not.toContain('Negative transfer.');
  });
});

describe('the main job\'s from-scratch CNN', () => {
  it('is the fine-tuned base\'s architecture with the same head, every layer trainable from random weights, in the same federation', () => {
    const config = resolveConfig('fashion-transfer');
    // The main job fine-tunes by default, with the preset's recipe.
    expect(config.trainable).toEqual(config.fineTune);
    expect(config.trainable?.stages.at(-1)?.groups).toContainEqual({ select: 'top', count: 1, unit: 'layers', lrMultiplier: 1 });
    const spec = scratchHead('cnn', config);
    expect(spec.conv).toEqual(FASHION_CNN_CONV);
    expect(spec.hidden).toEqual(config.head.hidden);
    const head = buildHead(28 * 28, spec);
    try {
      // Both convolutions (kernel and bias each) and the dense layers all train.
      const names = head.trainableWeights.map((w) => w.originalName);
      expect(names.filter((n) => /conv_\d+\/kernel/.test(n))).toHaveLength(FASHION_CNN_CONV.layers.length);
      expect(head.trainableWeights).toHaveLength(2 * (FASHION_CNN_CONV.layers.length + config.head.hidden.length + 1));
    } finally {
      head.dispose();
    }
  });
});
