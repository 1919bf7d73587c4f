/**
 * The training rows of a simulation regrouped so that each client's rows are contiguous.
 *
 * A partition gives each client a list of row indices; copying those rows out (`selectRows`) every
 * time a client is selected costs a fresh feature matrix per client per round. Reordering the
 * matrix once, client by client, turns every client's data into a zero-copy view
 * (`values.subarray`), and a client is then two offsets: 4 bytes each in one Int32Array, however
 * many clients there are.
 */
import { FedtlError } from '../../shared/core/errors.ts';
import type { FeatureMatrix } from '../../shared/model/feature-matrix.ts';
import type { LabeledFeatures } from '../../client/local-trainer.ts';
import { clientSeed } from '../../client/client-round.ts';
import { validationSplit } from '../../client/data/split.ts';

/**
 * The rows each simulated client trains on: its whole part, or, with a validation fraction, the
 * training side of the split a socket or process client makes of the same rows with the same seed
 * (`validationSplit`), so the three modes train on the same data. Virtual clients do not evaluate;
 * their held-out rows are simply left out.
 */
export function trainingParts(parts: readonly Int32Array[], labels: Int32Array, classCount: number, validationFraction: number, seed: number): Int32Array[] {
  return parts.map((part, i) => {
    const split = validationSplit(Int32Array.from(part, (row) => labels[row]!), classCount, validationFraction, clientSeed(seed, i));
    return split ? Int32Array.from(split.train, (k) => part[k]!) : part;
  });
}

/** Training rows grouped by client: client `i` owns rows `offsets[i] … offsets[i + 1] − 1`. */
export interface ClientShards {
  readonly count: number;
  readonly features: FeatureMatrix;
  readonly labels: Int32Array;
  /** `count + 1` row offsets, ascending, `offsets[0] = 0`, `offsets[count] = features.rows`. */
  readonly offsets: Int32Array;
}

/** The row order that groups `parts` client by client, and each client's first row in it. */
export interface ClientOrder {
  /** `order[k]` is the original index of row `k` of the grouped matrix. */
  readonly order: Int32Array;
  readonly offsets: Int32Array;
}

/** Concatenates the clients' index lists (client 0's rows first, each list in its own order). */
export function clientOrder(parts: readonly Int32Array[]): ClientOrder {
  const offsets = new Int32Array(parts.length + 1);
  for (let i = 0; i < parts.length; i++) offsets[i + 1] = offsets[i]! + parts[i]!.length;
  const order = new Int32Array(offsets[parts.length]!);
  for (let i = 0; i < parts.length; i++) order.set(parts[i]!, offsets[i]!);
  return { order, offsets };
}

/**
 * Copies `features` and `labels` into client order, once. Rows that no client owns are left out.
 *
 * @throws FedtlError `BAD_SHAPE` when the labels do not match the matrix, `BAD_DATA` when an
 *   index is outside it.
 */
export function groupByClient(layout: ClientOrder, features: FeatureMatrix, labels: Int32Array): ClientShards {
  if (labels.length !== features.rows) throw new FedtlError('BAD_SHAPE', `${features.rows} feature rows but ${labels.length} labels`);
  const { order, offsets } = layout;
  const { cols } = features;
  // Shared memory, so training worker threads read the rows without a copy each (training-pool.ts).
  const values = new Float32Array(new SharedArrayBuffer(order.length * cols * 4));
  const grouped = new Int32Array(new SharedArrayBuffer(order.length * 4));
  for (let k = 0; k < order.length; k++) {
    const row = order[k]!;
    if (!(row >= 0 && row < features.rows)) throw new FedtlError('BAD_DATA', `client row index ${row} is outside the ${features.rows} training rows`);
    values.set(features.values.subarray(row * cols, (row + 1) * cols), k * cols);
    grouped[k] = labels[row]!;
  }
  const sharedOffsets = new Int32Array(new SharedArrayBuffer(offsets.byteLength));
  sharedOffsets.set(offsets);
  return { count: offsets.length - 1, features: { values, rows: order.length, cols }, labels: grouped, offsets: sharedOffsets };
}

/** Number of training rows of client `index`. */
export function clientSize(shards: ClientShards, index: number): number {
  return shards.offsets[index + 1]! - shards.offsets[index]!;
}

/** Client `index`'s rows and labels as views into the grouped matrix (no copy). */
export function clientRows(shards: ClientShards, index: number): LabeledFeatures {
  if (!Number.isSafeInteger(index) || index < 0 || index >= shards.count) throw new FedtlError('BAD_CONFIG', `client index ${index} is outside [0, ${shards.count})`);
  const start = shards.offsets[index]!;
  const end = shards.offsets[index + 1]!;
  const { cols } = shards.features;
  return {
    features: { values: shards.features.values.subarray(start * cols, end * cols), rows: end - start, cols },
    labels: shards.labels.subarray(start, end),
  };
}
