/**
 * The client side of drift correction (shared/strategy/drift-correction.ts), shared by the head's
 * trainer and the stage trainer: a gradient request answers with the client's full-batch gradient
 * c_i; a corrected fit recomputes c_i at the same weights and trains with λ·(c − c_i) added to every
 * step's gradient; anything else trains as before.
 */
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../shared/core/errors.ts';
import { meanGradient } from '../shared/model/head-training.ts';
import { driftInstruction } from '../shared/strategy/drift-correction.ts';
import type { FitConfig } from '../shared/strategy/strategy.ts';
import type { LabeledFeatures, LocalFitResult } from './local-trainer.ts';

export interface DriftWork {
  /** The model as loaded with the round's weights. */
  model: tf.LayersModel;
  rows: LabeledFeatures;
  config: FitConfig;
  /** The verified control vector c of a corrected fit (client-round.ts checks it against its signed digest). */
  control: Float32Array | undefined;
  /** A buffer on the round's manifest as tensors keyed by `LayerVariable.name`. */
  tensorsOf: (data: Float32Array) => Map<string, tf.Tensor>;
  /** Values keyed by `LayerVariable.name` as a buffer on the round's manifest. */
  flatten: (byName: ReadonlyMap<string, Float32Array>) => Float32Array;
  logitAdjustment?: number;
  /** Trains, with the correction when there is one (`trainHead`'s `gradientCorrection`). */
  train: (gradientCorrection?: ReadonlyMap<string, tf.Tensor>) => Promise<LocalFitResult>;
}

/** A fit request's work under drift correction: its gradient, a corrected fit, or a plain one. */
export async function fitWithDrift(work: DriftWork): Promise<LocalFitResult> {
  const drift = driftInstruction(work.config);
  if (drift === null) {
    if (work.control) throw new FedtlError('BAD_MESSAGE', 'the fit request carries a control vector its config does not name');
    return work.train();
  }
  const options = work.logitAdjustment !== undefined ? { logitAdjustment: work.logitAdjustment } : {};
  const own = await meanGradient(work.model, work.rows.features, work.rows.labels, options);
  if (drift.kind === 'gradient') {
    return { delta: work.flatten(own.gradients), exampleCount: own.examples, metrics: { loss: own.loss, accuracy: own.accuracy } };
  }
  if (!work.control) throw new FedtlError('BAD_MESSAGE', 'a drift-corrected fit request carries no control vector');
  const control = work.tensorsOf(work.control);
  const names = [...control.keys()];
  let tensors: tf.Tensor[];
  try {
    // An array, not the map: tidy keeps only the tensors of a returned array or object.
    tensors = tf.tidy(() =>
      names.map((name) => {
        const c = control.get(name)!;
        const mine = own.gradients.get(name);
        if (!mine) throw new FedtlError('INTERNAL', `no gradient of ${name}`);
        return tf.mul(tf.sub(c, tf.tensor(mine, c.shape, 'float32')), drift.weight);
      }),
    );
  } finally {
    tf.dispose([...control.values()]);
  }
  const correction = new Map(names.map((name, i) => [name, tensors[i]!]));
  try {
    return await work.train(correction);
  } finally {
    tf.dispose([...correction.values()]);
  }
}
