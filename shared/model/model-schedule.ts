/**
 * The coordinator's side of fine-tuning: the whole model is the global state (what the round loop
 * aggregates into, checkpoints and exports), and each round's stage decides which slice of it
 * travels. Requests carry the stage's slice; a client's delta covers exactly that slice and is
 * widened back to the whole model (zeros elsewhere) before aggregation, so strategies, server
 * momentum and checkpoints see one buffer of constant size however the trainable set widens.
 */
import type { WeightManifest } from '../weights/flat-weights.ts';
import type { SparseDelta } from '../weights/sparse-rows.ts';
import { gatherWeights, selectManifest, stageWeightNames } from './fine-tune-model.ts';
import type { FrozenBase } from './frozen-base.ts';
import type { HeadSpec } from './head.ts';
import { stageForRound, type TrainableSchedule, type TrainableStage } from './trainable-set.ts';

export class ModelSchedule {
  readonly schedule: TrainableSchedule;
  /** Manifest of the whole model. */
  readonly manifest: WeightManifest;
  readonly #stageManifests: WeightManifest[];
  /** Per stage: for each stage entry, its offset in the whole model. */
  readonly #offsets: Int32Array[];

  constructor(base: FrozenBase, headSpec: HeadSpec, schedule: TrainableSchedule, manifest: WeightManifest) {
    this.schedule = schedule;
    this.manifest = manifest;
    this.#stageManifests = schedule.stages.map((stage) => selectManifest(manifest, stageWeightNames(base, headSpec, stage)));
    const byName = new Map(manifest.entries.map((e) => [e.name, e.offset]));
    this.#offsets = this.#stageManifests.map((m) => Int32Array.from(m.entries, (e) => byName.get(e.name)!));
  }

  stageFor(round: number): TrainableStage {
    return stageForRound(this.schedule, round);
  }

  /** The manifest of what `stage` trains: what its requests carry and its deltas cover. */
  manifestOf(stage: TrainableStage): WeightManifest {
    return this.#stageManifests[stage.index]!;
  }

  /** The slice of the whole model that `stage` trains. */
  gather(model: Float32Array, stage: TrainableStage): Float32Array {
    return gatherWeights({ manifest: this.manifest, data: model }, this.manifestOf(stage));
  }

  /** A stage delta widened to the whole model, zero outside the stage. */
  expand(delta: Float32Array, stage: TrainableStage): Float32Array {
    const part = this.manifestOf(stage);
    const offsets = this.#offsets[stage.index]!;
    const out = new Float32Array(this.manifest.parameterCount);
    part.entries.forEach((entry, i) => out.set(delta.subarray(entry.offset, entry.offset + entry.length), offsets[i]!));
    return out;
  }

  /**
   * {@link expand} for a row-sparse stage delta: the same runs moved to the whole model's offsets,
   * values shared, so a sparse update stays sparse up to the aggregation.
   */
  expandSparse(delta: SparseDelta, stage: TrainableStage): SparseDelta {
    const part = this.manifestOf(stage);
    const offsets = this.#offsets[stage.index]!;
    const runs = Uint32Array.from(delta.runs);
    // Runs never straddle entries (each is inside one row or one dense entry), and both are in increasing order.
    let e = 0;
    for (let k = 0; k < runs.length; k += 3) {
      while (runs[k]! >= part.entries[e]!.offset + part.entries[e]!.length) e++;
      runs[k] = offsets[e]! + (runs[k]! - part.entries[e]!.offset);
    }
    return { length: this.manifest.parameterCount, values: delta.values, runs };
  }
}
