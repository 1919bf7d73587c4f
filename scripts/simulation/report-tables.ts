/**
 * The report's tables as plain data, built by pure functions from a run's results: the final
 * model's confusion matrix and per-class scores, the per-client view (what federation did for
 * each client), and the comparison of every model with its confidence interval. They are stored
 * in report.json as they are, and rendered by report-sections.ts.
 */
import type { PartitionSummary } from '../../shared/math/index.ts';
import type { LocalOnlyClient } from './baselines.ts';
import { classMetrics, confusionMatrix, labelMixAccuracy, meanInterval, wilsonInterval, type ClassMetrics, type ConfusionMatrix, type Interval } from './report-metrics.ts';

/** The final federated model on the test set. */
export interface FinalEvaluation {
  /** Test examples scored. */
  examples: number;
  /** Rows: true class; columns: predicted class. */
  confusion: ConfusionMatrix;
  metrics: ClassMetrics;
}

/** Scores a model's predicted classes against the test labels. */
export function finalEvaluation(labels: ArrayLike<number>, predicted: ArrayLike<number>, numClasses: number): FinalEvaluation {
  const confusion = confusionMatrix(labels, predicted, numClasses);
  return { examples: labels.length, confusion, metrics: classMetrics(confusion) };
}

/**
 * What federation did for one client. Accuracies are on the client's own label mix: the model's
 * per-class recalls on the shared test set weighted by the client's label counts
 * ({@link labelMixAccuracy}), the same yardstick for the federated and the local-only model.
 */
export interface ClientView {
  /** Index in the partition: the numbering of the partition section, the heat strip and the logs. */
  client: number;
  /** Examples the partition dealt it. */
  examples: number;
  /** The final federated model on this client's label mix. */
  federated: number | null;
  /** The client's own local-only model on its label mix; null when it was not in the local-only sample. */
  localOnly: number | null;
  /** The local-only model on the whole test set (the global label mix). */
  localOnlyTest: number | null;
  /** `federated − localOnly`: positive when federation helped this client. */
  gain: number | null;
}

/**
 * One view per client of the partition, in partition order.
 *
 * @param federatedRecall per-class recall of the final federated model; null when it was not scored
 * @param localOnly the local-only baseline's clients (a sample when there are many)
 */
export function clientViews(partition: PartitionSummary, federatedRecall: readonly (number | null)[] | null, localOnly: readonly LocalOnlyClient[] = []): ClientView[] {
  const local = new Map(localOnly.map((c) => [c.client, c]));
  return partition.sizes.map((examples, client) => {
    const counts = partition.labelCounts[client] ?? [];
    const federated = federatedRecall ? labelMixAccuracy(federatedRecall, counts) : null;
    const own = local.get(client);
    const localMix = own ? labelMixAccuracy(own.recall, counts) : null;
    return {
      client,
      examples,
      federated,
      localOnly: localMix,
      localOnlyTest: own ? own.accuracy : null,
      gain: federated !== null && localMix !== null ? federated - localMix : null,
    };
  });
}

/** How federation did against training alone, over the clients that have both numbers. */
export interface GainSummary {
  /** Clients with a local-only model. */
  compared: number;
  /** Of those, how many the federated model served better (gain > 0). */
  helped: number;
  /** Mean gain over the compared clients, as a fraction; null when none were compared. */
  meanGain: number | null;
}

/** Counts the clients federation helped and their mean gain. */
export function gainSummary(views: readonly ClientView[]): GainSummary {
  const gains = views.map((v) => v.gain).filter((g): g is number => g !== null && Number.isFinite(g));
  return {
    compared: gains.length,
    helped: gains.filter((g) => g > 0).length,
    meanGain: gains.length > 0 ? gains.reduce((a, b) => a + b, 0) / gains.length : null,
  };
}

/** How a row's interval was computed. */
export type IntervalMethod = 'wilson' | 'student-t';

export type ModelRole = 'federated' | 'centralized' | 'local-only' | 'from-scratch';

/** One model in the comparison table. */
export interface ModelComparisonRow {
  model: string;
  role: ModelRole;
  /** Test accuracy (for local-only: the mean over clients). */
  accuracy: number | null;
  loss: number | null;
  /** 95 % interval, clipped to [0, 1]; null when it cannot be computed. */
  interval: Interval | null;
  method: IntervalMethod | null;
  /** What the interval is over: test examples (Wilson) or clients (Student t). */
  n: number | null;
}

/** What {@link compareModels} reads; a subset of the report. */
export interface ComparisonInput {
  federatedLabel: string;
  finalAccuracy: number | null;
  finalLoss: number | null;
  /** Test examples every model is scored on. */
  testExamples: number | null;
  /** The pooled-data model; `label` names it when it is not plain head training (fine-tuning). */
  centralized?: { accuracy: number; loss: number; label?: string };
  /** A fine-tuning run's second centralized model: the head alone on the frozen base. */
  centralizedFeatureExtraction?: { accuracy: number; loss: number; label?: string };
  localOnly?: { mean: number; std: number; clients?: number; perClient?: readonly LocalOnlyClient[] };
  scratch?: readonly { features?: string; accuracy: number | null; loss: number | null }[];
}

function clip(interval: Interval | null): Interval | null {
  return interval ? { low: Math.max(0, interval.low), high: Math.min(1, interval.high) } : null;
}

/**
 * Every model of the run, each with a 95 % interval:
 *
 * - a single model scored on `n` test examples gets the Wilson score interval of its accuracy
 *   (the test set is a sample; the interval says how far the accuracy could move on another one);
 * - the local-only baseline is a mean over clients, so it gets a Student t interval over the
 *   clients' accuracies: there the spread between clients dominates.
 */
export function compareModels(input: ComparisonInput): ModelComparisonRow[] {
  const n = input.testExamples !== null && input.testExamples > 0 ? input.testExamples : null;
  const wilson = (accuracy: number | null): Pick<ModelComparisonRow, 'interval' | 'method' | 'n'> => {
    if (accuracy === null || !Number.isFinite(accuracy) || n === null) return { interval: null, method: null, n };
    // Accuracies are (correct / n): rounding recovers the count of correct predictions.
    return { interval: wilsonInterval(Math.min(n, Math.max(0, Math.round(accuracy * n))), n), method: 'wilson', n };
  };
  const rows: ModelComparisonRow[] = [{ model: input.federatedLabel, role: 'federated', accuracy: input.finalAccuracy, loss: input.finalLoss, ...wilson(input.finalAccuracy) }];
  if (input.centralized) rows.push({ model: input.centralized.label ?? 'centralized (pooled data)', role: 'centralized', accuracy: input.centralized.accuracy, loss: input.centralized.loss, ...wilson(input.centralized.accuracy) });
  const extraction = input.centralizedFeatureExtraction;
  if (extraction) rows.push({ model: extraction.label ?? 'centralized feature extraction', role: 'centralized', accuracy: extraction.accuracy, loss: extraction.loss, ...wilson(extraction.accuracy) });
  if (input.localOnly) {
    const { perClient } = input.localOnly;
    const spread = perClient && perClient.length > 0 ? meanInterval(perClient.map((c) => c.accuracy)) : null;
    rows.push({
      model: 'local-only (mean over clients)',
      role: 'local-only',
      accuracy: input.localOnly.mean,
      loss: null,
      interval: clip(spread?.interval ?? null),
      method: spread?.interval ? 'student-t' : null,
      n: spread?.count ?? input.localOnly.clients ?? null,
    });
  }
  for (const run of input.scratch ?? []) {
    rows.push({ model: `federated from scratch (${run.features ?? 'no base'})`, role: 'from-scratch', accuracy: run.accuracy, loss: run.loss, ...wilson(run.accuracy) });
  }
  return rows;
}
