/**
 * Per-row averaging of embedding tables: each row of a trained embedding table becomes the
 * example-weighted mean of the deltas of the clients that sent that row, instead of the mean over
 * every client of the round.
 *
 * Why: a client's delta touches only the rows of the words its texts use (shared/weights/
 * sparse-rows.ts). Plain FedAvg divides each row's sum by every client's examples, so a word used
 * by 2 of 20 clients moves a tenth of what those two clients agreed on, and rare words barely
 * train. Averaging a row over the clients that used it is FedAvg's example weighting (McMahan et
 * al. 2017, https://arxiv.org/abs/1602.05629) applied row by row, over the clients that have a
 * say on that row. Measured on imdb-glove's fine-tuning (README, "Fine-tuning the presets,
 * measured"): 80.8 % against plain FedAvg's 81.0 %, so it is off by default and in every preset.
 *
 * Which rows a client "sent": the rows of a row-sparse upload, or the rows of a dense delta with a
 * non-zero value (Adam and SGD leave a row without gradient exactly unchanged, so the two agree).
 * The coordinator therefore learns, per row, which clients used it: in the clear that is what a
 * row-sparse upload already shows; under secure aggregation the per-row counts would have to be
 * summed securely as well, which fedtl does not do, so row averaging is refused there (and under
 * differential privacy, whose noise is calibrated to one denominator for every coordinate).
 * SECURITY.md says so.
 *
 * The result is exact for FedAvg and FedProx (the strategies that take `rowAveraging`): their
 * next model is `global + η · Σ n_k Δ_k / N`, and a row's sum is the same whoever else took part,
 * so rescaling a row's step by `N / N_row` gives `global + η · Σ n_k Δ_k / N_row`.
 */
import { FedtlError } from '../core/errors.ts';
import type { WeightManifest } from '../weights/flat-weights.ts';
import { embeddingEntryNames, type SparseDelta } from '../weights/sparse-rows.ts';
import type { Aggregation, ClientUpdate, SparseClientUpdate, Strategy } from './strategy.ts';

/** An embedding table's place in the flat model: `rows × cols` values from `offset`. */
export interface RowTable {
  readonly offset: number;
  readonly rows: number;
  readonly cols: number;
}

/** The embedding tables of `manifest` (entries `<layer>/embeddings` of rank 2). */
export function rowTablesOf(manifest: WeightManifest): RowTable[] {
  const names = embeddingEntryNames(manifest);
  return manifest.entries.filter((e) => names.has(e.name)).map((e) => ({ offset: e.offset, rows: e.shape[0]!, cols: e.shape[1]! }));
}

const REFUSED = {
  'secure aggregation': 'it needs the rows each client sent, and secure aggregation hides every client\'s delta; the per-row counts would have to be summed securely too (SECURITY.md)',
  'differential privacy': 'DP-FedAvg\'s noise is calibrated to one denominator for every coordinate, and a row averaged over fewer clients has a larger sensitivity',
} as const;

/** BAD_CONFIG when `inner` averages rows: `layer` cannot be combined with it (see the module doc). */
export function refuseRowAveraging(inner: Strategy, layer: keyof typeof REFUSED): void {
  if (inner.rowAveraging) throw new FedtlError('BAD_CONFIG', `rowAveraging (--row-averaging 1) cannot be combined with ${layer}: ${REFUSED[layer]}; run with --row-averaging 0`);
}

/**
 * `inner` (a FedAvg-style weighted mean over the whole model) with each row of `tables` averaged
 * over the updates that sent it. It needs every update, so it has no `addPartial`; it takes
 * row-sparse updates where `inner` does.
 */
export function rowAveraged(inner: Aggregation, global: Float32Array, tables: readonly RowTable[]): Aggregation {
  // Examples behind each row, table after table.
  const starts: number[] = [];
  let total = 0;
  for (const t of tables) {
    starts.push(total);
    total += t.rows;
  }
  const rowExamples = new Float64Array(total);
  let examples = 0;
  const countDense = (delta: Float32Array, weight: number) => {
    tables.forEach((t, ti) => {
      for (let r = 0; r < t.rows; r++) {
        const from = t.offset + r * t.cols;
        for (let c = 0; c < t.cols; c++) {
          if (delta[from + c] !== 0) {
            rowExamples[starts[ti]! + r]! += weight;
            break;
          }
        }
      }
    });
  };
  const countSparse = (delta: SparseDelta, weight: number) => {
    const { runs } = delta;
    let last = -1;
    for (let k = 0; k < runs.length; k += 3) {
      const at = runs[k]!, count = runs[k + 2]!;
      tables.forEach((t, ti) => {
        const end = t.offset + t.rows * t.cols;
        if (at + count <= t.offset || at >= end) return;
        const first = Math.floor((Math.max(at, t.offset) - t.offset) / t.cols);
        const stop = Math.floor((Math.min(at + count, end) - 1 - t.offset) / t.cols);
        for (let r = first; r <= stop; r++) {
          const row = starts[ti]! + r;
          // Runs are in increasing order, so a row split over two runs is met twice in a row.
          if (row === last) continue;
          rowExamples[row]! += weight;
          last = row;
        }
      });
    }
  };
  return {
    add: (update: ClientUpdate) => {
      inner.add(update);
      countDense(update.delta, update.exampleCount);
      examples += update.exampleCount;
    },
    ...(inner.addSparse
      ? {
          addSparse: (update: SparseClientUpdate) => {
            inner.addSparse!(update);
            countSparse(update.delta, update.exampleCount);
            examples += update.exampleCount;
          },
        }
      : {}),
    get count() {
      return inner.count;
    },
    get exampleCount() {
      return inner.exampleCount;
    },
    finish: () => {
      const next = inner.finish();
      tables.forEach((t, ti) => {
        for (let r = 0; r < t.rows; r++) {
          const n = rowExamples[starts[ti]! + r]!;
          if (n <= 0 || n >= examples) continue;
          const scale = examples / n;
          const from = t.offset + r * t.cols;
          for (let i = from; i < from + t.cols; i++) next[i] = global[i]! + (next[i]! - global[i]!) * scale;
        }
      });
      return next;
    },
  };
}
