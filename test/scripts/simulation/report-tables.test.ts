import { describe, expect, it } from 'vitest';
import { summarizePartition } from '../../../shared/math/index.ts';
import { clientViews, compareModels, finalEvaluation, gainSummary } from '../../../scripts/simulation/report-tables.ts';

describe('finalEvaluation', () => {
  it('holds the confusion matrix, the per-class scores and the number of examples', () => {
    const evaluation = finalEvaluation([0, 0, 1, 1], [0, 1, 1, 1], 2);
    expect(evaluation.examples).toBe(4);
    expect(evaluation.confusion).toEqual([
      [1, 1],
      [0, 2],
    ]);
    expect(evaluation.metrics.accuracy).toBe(0.75);
    expect(evaluation.metrics.recall).toEqual([0.5, 1]);
    expect(evaluation.metrics.precision).toEqual([1, 2 / 3]);
  });
});

describe('clientViews', () => {
  // Prepare: rows 0–3 have labels 0, 0, 0, 2 (client 0); rows 4–5 have label 1 (client 1).
  const labels = Int32Array.from([0, 0, 0, 2, 1, 1]);
  const partition = summarizePartition([Int32Array.from([0, 1, 2, 3]), Int32Array.from([4, 5])], labels, 3);

  it('scores the federated and the local-only model on each client\'s own label mix, by hand', () => {
    const views = clientViews(partition, [1, 0.5, 0], [{ client: 1, examples: 2, accuracy: 0.3, recall: [0, 1, 0] }]);
    // Client 0 holds 3 × class 0 and 1 × class 2: (3 · 1 + 1 · 0) / 4 = 0.75. Client 1 holds only class 1.
    expect(views).toEqual([
      { client: 0, examples: 4, federated: 0.75, localOnly: null, localOnlyTest: null, gain: null },
      { client: 1, examples: 2, federated: 0.5, localOnly: 1, localOnlyTest: 0.3, gain: -0.5 },
    ]);
  });

  it('sums up the gains over the clients compared', () => {
    const view = (client: number, gain: number | null) => ({ client, examples: 1, federated: null, localOnly: null, localOnlyTest: null, gain });
    const summary = gainSummary([view(0, 0.1), view(1, -0.05), view(2, null), view(3, 0.25)]);
    expect([summary.compared, summary.helped]).toEqual([3, 2]);
    expect(summary.meanGain).toBeCloseTo(0.1, 12);
    expect(gainSummary([view(0, null)])).toEqual({ compared: 0, helped: 0, meanGain: null });
  });

  it('has no federated score when the final model was not scored', () => {
    expect(clientViews(partition, null).map((v) => v.federated)).toEqual([null, null]);
  });
});

describe('compareModels', () => {
  it('gives single models a Wilson interval on n test examples and local-only a t interval over clients', () => {
    const rows = compareModels({
      federatedLabel: 'federated',
      finalAccuracy: 0.8,
      finalLoss: 0.5,
      testExamples: 10,
      centralized: { accuracy: 0.93, loss: 0.2 },
      localOnly: {
        mean: 0.6,
        std: 0.08,
        perClient: [0.5, 0.6, 0.7].map((accuracy, client) => ({ client, examples: 10, accuracy, recall: [] })),
      },
      scratch: [{ features: 'pixels', accuracy: null, loss: null }],
    });
    expect(rows.map((r) => [r.model, r.role, r.method, r.n])).toEqual([
      ['federated', 'federated', 'wilson', 10],
      ['centralized (pooled data)', 'centralized', 'wilson', 10],
      ['local-only (mean over clients)', 'local-only', 'student-t', 3],
      ['federated from scratch (pixels)', 'from-scratch', null, 10],
    ]);
    // Wilson, 8 of 10: [0.4902, 0.9433]; t over 0.5, 0.6, 0.7: 0.6 ± 4.303 · 0.1 / √3.
    expect(rows[0]!.interval!.low).toBeCloseTo(0.490162, 5);
    expect(rows[0]!.interval!.high).toBeCloseTo(0.943318, 5);
    expect(rows[2]!.interval!.low).toBeCloseTo(0.351566, 5);
    expect(rows[2]!.interval!.high).toBeCloseTo(0.848434, 5);
    expect(rows[3]!.interval).toBeNull();
  });

  it('clips a t interval to [0, 1] and leaves intervals out without a test-set size', () => {
    const rows = compareModels({
      federatedLabel: 'federated',
      finalAccuracy: 0.93,
      finalLoss: null,
      testExamples: null,
      localOnly: { mean: 0.5, std: 0.4, perClient: [0.1, 0.9].map((accuracy, client) => ({ client, examples: 1, accuracy, recall: [] })) },
    });
    expect(rows[0]!.interval).toBeNull();
    expect(rows[1]!.interval).toEqual({ low: 0, high: 1 });
  });

  it('lists a fine-tuning run\'s two centralized models under their own names', () => {
    const rows = compareModels({
      federatedLabel: 'federated (pretrained base, fine-tuned)',
      finalAccuracy: 0.9,
      finalLoss: 0.3,
      testExamples: 100,
      centralized: { accuracy: 0.92, loss: 0.2, label: 'centralized fine-tuning' },
      centralizedFeatureExtraction: { accuracy: 0.85, loss: 0.4, label: 'centralized feature extraction' },
    });
    expect(rows.map((r) => [r.model, r.role, r.method])).toEqual([
      ['federated (pretrained base, fine-tuned)', 'federated', 'wilson'],
      ['centralized fine-tuning', 'centralized', 'wilson'],
      ['centralized feature extraction', 'centralized', 'wilson'],
    ]);
  });

  it('Wilson intervals on 1,000 test examples', () => {
    const [row] = compareModels({ federatedLabel: 'f', finalAccuracy: 0.93, finalLoss: null, testExamples: 1000 });
    // 930 of 1,000: [0.91249, 0.94422].
    expect(row!.interval!.low).toBeCloseTo(0.912485, 5);
    expect(row!.interval!.high).toBeCloseTo(0.944224, 5);
  });
});
