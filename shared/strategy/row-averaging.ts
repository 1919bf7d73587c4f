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
 * Only FedAvg and FedProx take `rowAveraging` (every other strategy refuses it at construction):
 * their next model is `global + η · Σ n_k Δ_k / N`, and a row's float64 sum Σ n_k Δ_k is the same
 * whoever else took part, so the row's next value is `global + η · Σ n_k Δ_k / N_row`, computed
 * from that float64 sum and rounded to float32 once (`Aggregation.finishRows`). A row one client
 * sent thus moves by η times that client's delta up to that one rounding, however many clients
 * the round had. (Rescaling FedAvg's float32 step by N / N_row instead would multiply its
 * rounding error by N / N_row, and lose a step below half an ulp of the weight times N_row / N.)
 */
import { FedtlError } from '../core/errors.ts';
import type { WeightManifest } from '../weights/flat-weights.ts';
import { embeddingEntryNames, type SparseDelta } from '../weights/sparse-rows.ts';
import type { Aggregation, ClientUpdate, RowTable, SparseClientUpdate, Strategy } from './strategy.ts';

export type { RowTable } from './strategy.ts';

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
 * `inner` (FedAvg's weighted mean over the whole model, which has `finishRows`) with each row of
 * `tables` averaged over the updates that sent it. It needs every update, so it has no
 * `addPartial`; it takes row-sparse updates where `inner` does. BAD_CONFIG when `inner` is not a
 * weighted mean.
 */
export function rowAveraged(inner: Aggregation, tables: readonly RowTable[]): Aggregation {
  const finishRows = inner.finishRows?.bind(inner);
  if (!finishRows) throw new FedtlError('BAD_CONFIG', 'rowAveraging needs a strategy whose aggregation is FedAvg\'s weighted mean (fedavg or fedprox)');
  // Examples behind each row, table after table.
  const starts: number[] = [];
  let total = 0;
  for (const t of tables) {
    starts.push(total);
    total += t.rows;
  }
  const rowExamples = new Float64Array(total);
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
    },
    ...(inner.addSparse
      ? {
          addSparse: (update: SparseClientUpdate) => {
            inner.addSparse!(update);
            countSparse(update.delta, update.exampleCount);
          },
        }
      : {}),
    get count() {
      return inner.count;
    },
    get exampleCount() {
      return inner.exampleCount;
    },
    finish: () => finishRows(tables, rowExamples),
  };
}
