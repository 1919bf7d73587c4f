/**
 * The trainable set, declared: which parts of a transfer model train in which round.
 *
 * A coordinator's config names groups — the head, the top N layers or blocks of the base, or base
 * layers by name pattern — each with a learning-rate multiplier, in stages over rounds. Stages may
 * only widen the set: the classic recipe is a linear probe first (head only), then gradual
 * unfreezing of the base from the top down at a smaller learning rate for the pretrained layers
 * (Howard & Ruder 2018, "Universal Language Model Fine-tuning for Text Classification",
 * https://arxiv.org/abs/1801.06146; Kumar et al. 2022, "Fine-Tuning can Distort Pretrained
 * Features…", https://arxiv.org/abs/2202.10054, for probing before fine-tuning).
 *
 * This file parses the untrusted spec and resolves it against a base's layers; everything wrong
 * is a `BAD_CONFIG` that names the stage and group, so a coordinator stops at start (exit 2)
 * instead of in round 7.
 */
import type * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';

export const TRAIN_UNITS = ['layers', 'blocks'] as const;
/** `layers`: base layers that hold weights; `blocks`: such layers grouped by {@link blockKey}. */
export type TrainUnit = (typeof TRAIN_UNITS)[number];

/** One group of what trains in a stage. */
export type TrainGroupSpec =
  | { select: 'head'; lrMultiplier?: number }
  | { select: 'top'; count: number; unit?: TrainUnit; lrMultiplier?: number }
  | { select: 'pattern'; pattern: string; lrMultiplier?: number };

export interface TrainableStageSpec {
  /** First round (1-based) of this stage; the first stage starts at round 1. */
  fromRound: number;
  /** The head always trains; a `head` group only sets its multiplier. */
  groups: TrainGroupSpec[];
}

/**
 * What trains, by stage. `stages` in increasing `fromRound`, each a superset of the one before.
 * @default {@link FEATURE_EXTRACTION}: the head alone, every round
 */
export interface TrainableSetSpec {
  stages: TrainableStageSpec[];
}

/** Feature extraction: the head alone, from round 1. */
export const FEATURE_EXTRACTION: TrainableSetSpec = { stages: [{ fromRound: 1, groups: [{ select: 'head' }] }] };

/** A base layer that trains in a stage. */
export interface TrainableLayer {
  name: string;
  lrMultiplier: number;
}

/** One resolved stage: concrete layer names, ready to build a model from. */
export interface TrainableStage {
  /** Position in the schedule, from 0. */
  index: number;
  fromRound: number;
  headLrMultiplier: number;
  /** Base layers that train, in the base's topological order. Empty for a linear probe. */
  layers: TrainableLayer[];
}

export interface TrainableSchedule {
  stages: TrainableStage[];
}

/** Learning-rate multiplier of a group. @default 1 */
export const DEFAULT_LR_MULTIPLIER = 1;

/** Largest schedule accepted from a config or a peer. */
const MAX_STAGES = 64;
const MAX_GROUPS = 64;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseMultiplier(value: unknown, where: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new FedtlError('BAD_CONFIG', `${where}.lrMultiplier must be a finite number > 0, got ${JSON.stringify(value) ?? String(value)}`);
  }
  return value;
}

function parseGroup(value: unknown, where: string): TrainGroupSpec {
  if (!isRecord(value)) throw new FedtlError('BAD_CONFIG', `${where} must be an object like {"select":"top","count":2,"lrMultiplier":0.1}`);
  const lrMultiplier = parseMultiplier(value['lrMultiplier'], where);
  const withMultiplier = lrMultiplier === undefined ? {} : { lrMultiplier };
  switch (value['select']) {
    case 'head':
      return { select: 'head', ...withMultiplier };
    case 'top': {
      const count = value['count'];
      const unit = value['unit'] ?? 'layers';
      if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 1) throw new FedtlError('BAD_CONFIG', `${where}.count must be a positive integer, got ${JSON.stringify(count)}`);
      if (typeof unit !== 'string' || !(TRAIN_UNITS as readonly string[]).includes(unit)) throw new FedtlError('BAD_CONFIG', `${where}.unit must be one of ${TRAIN_UNITS.join(', ')}`);
      return { select: 'top', count, unit: unit as TrainUnit, ...withMultiplier };
    }
    case 'pattern': {
      const pattern = value['pattern'];
      if (typeof pattern !== 'string' || pattern === '' || pattern.length > 500) throw new FedtlError('BAD_CONFIG', `${where}.pattern must be a non-empty regular expression`);
      try {
        new RegExp(pattern);
      } catch (cause) {
        throw new FedtlError('BAD_CONFIG', `${where}.pattern ${JSON.stringify(pattern)} is not a valid regular expression: ${(cause as Error).message}`, { cause });
      }
      return { select: 'pattern', pattern, ...withMultiplier };
    }
    default:
      throw new FedtlError('BAD_CONFIG', `${where}.select must be "head", "top" or "pattern", got ${JSON.stringify(value['select'])}`);
  }
}

/**
 * Parses an untrusted trainable-set spec (config file, checkpoint). Checks everything that does
 * not need the base: shapes, multipliers, increasing `fromRound`, the first stage at round 1, and
 * no stage past `rounds` when given.
 */
export function parseTrainableSet(value: unknown, options: { rounds?: number; source?: string } = {}): TrainableSetSpec {
  const source = options.source ?? 'trainable';
  if (value === undefined) return FEATURE_EXTRACTION;
  if (!isRecord(value) || !Array.isArray(value['stages'])) throw new FedtlError('BAD_CONFIG', `${source} must be an object like {"stages":[{"fromRound":1,"groups":[{"select":"head"}]}]}`);
  const stagesValue = value['stages'] as unknown[];
  if (stagesValue.length === 0 || stagesValue.length > MAX_STAGES) throw new FedtlError('BAD_CONFIG', `${source}.stages must list 1 to ${MAX_STAGES} stages`);
  let previous = 0;
  const stages = stagesValue.map((raw, s): TrainableStageSpec => {
    const where = `${source}.stages[${s}]`;
    if (!isRecord(raw)) throw new FedtlError('BAD_CONFIG', `${where} must be an object with fromRound and groups`);
    const fromRound = raw['fromRound'];
    if (typeof fromRound !== 'number' || !Number.isSafeInteger(fromRound) || fromRound < 1) throw new FedtlError('BAD_CONFIG', `${where}.fromRound must be a positive integer`);
    if (s === 0 && fromRound !== 1) throw new FedtlError('BAD_CONFIG', `${where}.fromRound is ${fromRound}; the first stage must start at round 1 (say what trains from the start)`);
    if (s > 0 && fromRound <= previous) throw new FedtlError('BAD_CONFIG', `${where}.fromRound ${fromRound} must be after the previous stage's ${previous}`);
    if (options.rounds !== undefined && fromRound > options.rounds) {
      throw new FedtlError('BAD_CONFIG', `${where} starts at round ${fromRound}, past the last round (${options.rounds}); it would never run — drop it or raise rounds`);
    }
    previous = fromRound;
    const groups = raw['groups'];
    if (!Array.isArray(groups) || groups.length === 0 || groups.length > MAX_GROUPS) throw new FedtlError('BAD_CONFIG', `${where}.groups must list 1 to ${MAX_GROUPS} groups`);
    return { fromRound, groups: groups.map((g, i) => parseGroup(g, `${where}.groups[${i}]`)) };
  });
  return { stages };
}

/** Base layers that hold weights, in topological order. */
export function weightedLayerNames(model: tf.LayersModel): string[] {
  return model.layers.filter((layer) => layer.weights.length > 0).map((layer) => layer.name);
}

/**
 * Block of a layer for `unit: 'blocks'`: MobileNet-style `block_<n>_…` names group by their
 * `block_<n>` prefix; `<name>_bn` joins `<name>`; any other layer is a block of its own.
 */
export function blockKey(layerName: string): string {
  const block = /^(.*?block_?\d+)(?:_|$)/i.exec(layerName);
  if (block) return block[1]!;
  return layerName.replace(/_(bn|BN|batchnorm)$/, '');
}

function selectTop(names: readonly string[], count: number, unit: TrainUnit, where: string): string[] {
  if (unit === 'layers') {
    if (count > names.length) throw new FedtlError('BAD_CONFIG', `${where} asks for the top ${count} layers but the base has ${names.length} layers with weights`);
    return names.slice(names.length - count);
  }
  const blocks: string[] = [];
  for (const name of names) {
    const key = blockKey(name);
    if (blocks[blocks.length - 1] !== key) blocks.push(key);
  }
  if (count > blocks.length) throw new FedtlError('BAD_CONFIG', `${where} asks for the top ${count} blocks but the base has ${blocks.length} (${blocks.slice(-5).join(', ')} at the top)`);
  const wanted = new Set(blocks.slice(blocks.length - count));
  return names.filter((name) => wanted.has(blockKey(name)));
}

/**
 * Resolves a spec against a base model: concrete layer names per stage.
 *
 * @param baseModel the base's LayersModel; `null` for bases without one (identity, GraphModel),
 *   which can only train the head
 * @throws FedtlError `BAD_CONFIG` when a pattern matches no layer with weights, a `top` group
 *   asks for more than the base has, or a stage drops a layer an earlier stage trained
 */
export function resolveTrainableSet(spec: TrainableSetSpec, baseModel: tf.LayersModel | null, source = 'trainable'): TrainableSchedule {
  const names = baseModel ? weightedLayerNames(baseModel) : [];
  const order = new Map(names.map((name, i) => [name, i]));
  let previous: TrainableStage | null = null;
  const stages = spec.stages.map((stageSpec, s): TrainableStage => {
    const multipliers = new Map<string, number>();
    let headLrMultiplier = DEFAULT_LR_MULTIPLIER;
    stageSpec.groups.forEach((group, g) => {
      const where = `${source}.stages[${s}].groups[${g}]`;
      const multiplier = group.lrMultiplier ?? DEFAULT_LR_MULTIPLIER;
      if (group.select === 'head') {
        headLrMultiplier = multiplier;
        return;
      }
      if (!baseModel) throw new FedtlError('BAD_CONFIG', `${where}: this base has no layers that can train (identity or GraphModel base); only the head trains`);
      let selected: string[];
      if (group.select === 'top') {
        selected = selectTop(names, group.count, group.unit ?? 'layers', where);
      } else {
        const regex = new RegExp(group.pattern);
        selected = names.filter((name) => regex.test(name));
        if (selected.length === 0) {
          throw new FedtlError('BAD_CONFIG', `${where}: pattern ${JSON.stringify(group.pattern)} matches no layer with weights; layers are ${names.length > 12 ? `${names.slice(0, 4).join(', ')}, …, ${names.slice(-6).join(', ')}` : names.join(', ')}`);
        }
      }
      // The first group that names a layer sets its multiplier.
      for (const name of selected) if (!multipliers.has(name)) multipliers.set(name, multiplier);
    });
    const layers = [...multipliers.entries()].sort((a, b) => order.get(a[0])! - order.get(b[0])!).map(([name, lrMultiplier]) => ({ name, lrMultiplier }));
    if (previous) {
      const now = new Set(layers.map((l) => l.name));
      const dropped = previous.layers.find((l) => !now.has(l.name));
      if (dropped) {
        throw new FedtlError('BAD_CONFIG', `${source}.stages[${s}] (from round ${stageSpec.fromRound}) no longer trains "${dropped.name}", which stage ${s - 1} trains; a schedule may only widen the trainable set`);
      }
    }
    const stage: TrainableStage = { index: s, fromRound: stageSpec.fromRound, headLrMultiplier, layers };
    previous = stage;
    return stage;
  });
  return { stages };
}

/** The stage that runs in `round` (1-based). */
export function stageForRound(schedule: TrainableSchedule, round: number): TrainableStage {
  let current = schedule.stages[0];
  if (!current) throw new FedtlError('BAD_CONFIG', 'a trainable schedule needs at least one stage');
  for (const stage of schedule.stages) if (stage.fromRound <= round) current = stage;
  return current;
}

/** Parses and resolves in one step, as a coordinator does at start. */
export function trainableScheduleFromConfig(value: unknown, baseModel: tf.LayersModel | null, rounds: number, source = 'trainable'): TrainableSchedule {
  return resolveTrainableSet(parseTrainableSet(value, { rounds, source }), baseModel, source);
}

/** Largest number of layers a stage may name in a message from a peer. */
const MAX_STAGE_LAYERS = 4096;

/** Parses a resolved stage from an untrusted message (a fit or evaluate request). */
export function parseTrainableStage(value: unknown, what = 'trainable'): TrainableStage {
  const fail = (why: string): never => {
    throw new FedtlError('BAD_MESSAGE', `${what}: ${why}`);
  };
  if (!isRecord(value)) return fail('expected an object with index, fromRound, headLrMultiplier and layers');
  const { index, fromRound, headLrMultiplier, layers } = { index: value['index'], fromRound: value['fromRound'], headLrMultiplier: value['headLrMultiplier'], layers: value['layers'] };
  if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0 || index >= MAX_STAGES) return fail(`index must be an integer in [0, ${MAX_STAGES})`);
  if (typeof fromRound !== 'number' || !Number.isSafeInteger(fromRound) || fromRound < 1) return fail('fromRound must be a positive integer');
  const positive = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;
  if (!positive(headLrMultiplier)) return fail('headLrMultiplier must be a finite number > 0');
  if (!Array.isArray(layers) || layers.length > MAX_STAGE_LAYERS) return fail(`layers must be a list of at most ${MAX_STAGE_LAYERS} layers`);
  const parsed = layers.map((layer: unknown, i): TrainableLayer => {
    if (!isRecord(layer) || typeof layer['name'] !== 'string' || layer['name'] === '' || layer['name'].length > 200 || !positive(layer['lrMultiplier'])) {
      return fail(`layers[${i}] must be { name, lrMultiplier > 0 }`);
    }
    return { name: layer['name'], lrMultiplier: layer['lrMultiplier'] };
  });
  return { index, fromRound, headLrMultiplier, layers: parsed };
}

/** Canonical text of a stage, covered by a round message's signature. */
export function trainableStageText(stage: TrainableStage): string {
  return JSON.stringify({ index: stage.index, fromRound: stage.fromRound, headLrMultiplier: stage.headLrMultiplier, layers: stage.layers.map((l) => ({ name: l.name, lrMultiplier: l.lrMultiplier })) });
}
