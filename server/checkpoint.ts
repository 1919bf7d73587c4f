/**
 * Coordinator checkpoints: the global head, the round it completed, the metrics history and the
 * strategy's server-side state,
 * written atomically after every round so a restarted coordinator resumes where it stopped.
 *
 * Two files: `head-<round>.bin` (raw float32) is written first, then `checkpoint.json`, which names
 * it and carries its SHA-256, replaces the previous one by rename. A crash at any point leaves
 * either the old complete checkpoint or the new complete one; a torn or edited file fails the hash
 * check and is refused with a clear error instead of being trained on.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, writeFile, open } from 'node:fs/promises';
import path from 'node:path';
import { FedtlError } from '../shared/core/errors.ts';
import { parseHeadSpec, type HeadSpec } from '../shared/model/head.ts';
import { bytesToFloat32, float32ToBytes, manifestsEqual, parseManifest, type WeightManifest } from '../shared/weights/flat-weights.ts';
import type { RoundRecord } from './round-record.ts';

export const CHECKPOINT_FILE = 'checkpoint.json';

export interface Checkpoint {
  /** Rounds completed; the next round to run is `round + 1`. */
  round: number;
  runId: string;
  baseHash: string;
  headSpec: HeadSpec;
  manifest: WeightManifest;
  weights: Float32Array;
  history: RoundRecord[];
  /**
   * The strategy that wrote it and its server-side state in JSON form (shared/strategy/strategy-state.ts):
   * FedAvgM's velocity, the server optimizers' moments. Absent in checkpoints of older versions.
   */
  strategy?: { name: string; state: unknown; params?: Readonly<Record<string, number>> };
  /**
   * The running sum of server-side iterate averaging in JSON form (its `from`, `count` and float64
   * `sum`; parsed by the round loop); absent when the run does not average. `weights` stay the
   * last round's global model, which clients resume training from.
   */
  averaging?: unknown;
}

/** Temporary name a file is written under before it is renamed into place. */
export function temporaryName(file: string): string {
  return `${file}.${process.pid}.tmp`;
}

/**
 * temp file + fsync + rename + fsync of the directory: after a crash (even SIGKILL or power loss
 * mid-write) `file` is either its old complete content or the new one. A failed write removes its
 * temporary file and leaves `file` untouched.
 */
async function writeFileDurably(file: string, data: Uint8Array | string): Promise<void> {
  const temporary = temporaryName(file);
  try {
    const handle = await open(temporary, 'w', 0o600);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true }).catch(() => undefined);
    throw error;
  }
  // The rename itself is durable only once the directory entry is on disk.
  const directory = await open(path.dirname(file), 'r');
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

/**
 * Writes round `checkpoint.round` atomically. On any file-system error (ENOSPC, EACCES, …) it
 * throws `STORAGE` naming the directory and the cause; the previous checkpoint stays in force.
 */
export async function saveCheckpoint(directory: string, checkpoint: Checkpoint): Promise<void> {
  try {
    await writeCheckpoint(directory, checkpoint);
  } catch (error) {
    const cause = error as NodeJS.ErrnoException;
    throw new FedtlError(
      'STORAGE',
      `cannot write the checkpoint of round ${checkpoint.round} to ${directory}: ${cause.code ?? 'error'} (${cause.message}). ` +
        'The previous checkpoint there is kept; free space or fix the directory, then restart the coordinator to resume from it.',
      { cause },
    );
  }
}

async function writeCheckpoint(directory: string, checkpoint: Checkpoint): Promise<void> {
  await mkdir(directory, { recursive: true });
  const weightsFile = `head-${checkpoint.round}.bin`;
  const weightBytes = float32ToBytes(checkpoint.weights);
  await writeFileDurably(path.join(directory, weightsFile), weightBytes);
  const meta = {
    format: 'fedtl-checkpoint/v1',
    round: checkpoint.round,
    runId: checkpoint.runId,
    baseHash: checkpoint.baseHash,
    headSpec: checkpoint.headSpec,
    manifest: checkpoint.manifest,
    weightsFile,
    weightsSha256: createHash('sha256').update(weightBytes).digest('hex'),
    history: checkpoint.history,
    ...(checkpoint.strategy ? { strategy: checkpoint.strategy } : {}),
    ...(checkpoint.averaging !== undefined ? { averaging: checkpoint.averaging } : {}),
  };
  await writeFileDurably(path.join(directory, CHECKPOINT_FILE), JSON.stringify(meta, null, 1));
  // Older weight files are no longer referenced, and temporary files of writers that were killed
  // mid-write never will be; remove both so a long or often-restarted run does not fill the disk.
  for (const name of await readdir(directory)) {
    const stale = (/^head-\d+\.bin$/.test(name) && name !== weightsFile) || /^(head-\d+\.bin|checkpoint\.json)\.\d+\.tmp$/.test(name);
    if (stale) await rm(path.join(directory, name), { force: true, recursive: true });
  }
}

/** The last complete checkpoint in `directory`, `null` if there is none, or an error if it is corrupt. */
export async function loadCheckpoint(directory: string): Promise<Checkpoint | null> {
  const file = path.join(directory, CHECKPOINT_FILE);
  const corrupt = (why: string, cause?: unknown): never => {
    throw new FedtlError('CORRUPT_FILE', `checkpoint ${file} is unusable: ${why}. Move it away to start a new run, or restore it from a backup.`, { cause });
  };
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    return corrupt(`it cannot be read (${(error as Error).message})`, error);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return corrupt('it is not valid JSON (truncated?)');
  }
  // Valid JSON is not yet a checkpoint: `null`, a number or a list must not reach the field reads below.
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return corrupt('it is not a JSON object');
  const meta = parsed as Record<string, unknown>;
  if (meta['format'] !== 'fedtl-checkpoint/v1') corrupt('unknown format');
  const round = meta['round'];
  if (typeof round !== 'number' || !Number.isSafeInteger(round) || round < 0) return corrupt('bad round number');
  const weightsFile = meta['weightsFile'];
  if (typeof weightsFile !== 'string' || !/^head-\d+\.bin$/.test(weightsFile)) return corrupt('bad weights file name');
  let weightBytes: Buffer;
  try {
    weightBytes = await readFile(path.join(directory, weightsFile));
  } catch {
    return corrupt(`its weights file ${weightsFile} is missing`);
  }
  if (createHash('sha256').update(weightBytes).digest('hex') !== meta['weightsSha256']) corrupt(`${weightsFile} does not match its recorded SHA-256`);
  let manifest: WeightManifest;
  let headSpec: HeadSpec;
  let weights: Float32Array;
  try {
    manifest = parseManifest(meta['manifest'], `${file} manifest`);
    headSpec = parseHeadSpec(meta['headSpec'], `${file} headSpec`);
    weights = bytesToFloat32(new Uint8Array(weightBytes.buffer, weightBytes.byteOffset, weightBytes.byteLength).slice(), weightsFile);
  } catch (error) {
    return corrupt((error as Error).message, error);
  }
  if (weights.length !== manifest.parameterCount) corrupt('weights and manifest disagree in size');
  const history = meta['history'];
  if (!Array.isArray(history)) return corrupt('history is not a list');
  const runId = meta['runId'];
  const baseHash = meta['baseHash'];
  if (typeof runId !== 'string' || typeof baseHash !== 'string') return corrupt('runId or baseHash missing');
  const strategy = meta['strategy'];
  if (strategy !== undefined && (typeof strategy !== 'object' || strategy === null || typeof (strategy as Record<string, unknown>)['name'] !== 'string')) return corrupt('strategy is not { name, state }');
  const saved = strategy as { name: string; state?: unknown; params?: unknown } | undefined;
  const params = saved?.params;
  if (params !== undefined && !(typeof params === 'object' && params !== null && Object.values(params).every((v) => typeof v === 'number'))) return corrupt('strategy.params is not a map of numbers');
  const averaging = meta['averaging'];
  return {
    round,
    runId,
    baseHash,
    headSpec,
    manifest,
    weights,
    history: history as RoundRecord[],
    ...(saved ? { strategy: { name: saved.name, state: saved.state ?? null, ...(params !== undefined ? { params: params as Record<string, number> } : {}) } } : {}),
    ...(averaging !== undefined ? { averaging } : {}),
  };
}

/**
 * The last checkpoint in `directory` if it belongs to this run (same base, head and strategy),
 * `null` if there is none; a checkpoint of another run is refused with BAD_CONFIG saying what to do.
 */
export async function loadFittingCheckpoint(
  directory: string,
  run: { baseHash: string; headSpec: HeadSpec; manifest: WeightManifest; strategy: string; params?: Readonly<Record<string, number>> },
): Promise<Checkpoint | null> {
  const checkpoint = await loadCheckpoint(directory);
  if (!checkpoint) return null;
  const sameHead = JSON.stringify(checkpoint.headSpec) === JSON.stringify(run.headSpec) && manifestsEqual(checkpoint.manifest, run.manifest);
  if (checkpoint.baseHash !== run.baseHash || !sameHead) {
    throw new FedtlError(
      'BAD_CONFIG',
      `checkpoint in ${directory} belongs to another ${checkpoint.baseHash !== run.baseHash ? 'base' : 'head'}; use another output directory, or move the checkpoint away to start over`,
    );
  }
  if (checkpoint.strategy && checkpoint.strategy.name !== run.strategy) {
    throw new FedtlError('BAD_CONFIG', `checkpoint in ${directory} was written by strategy ${checkpoint.strategy.name}, this run uses ${run.strategy}; use the same strategy, or another output directory`);
  }
  const saved = checkpoint.strategy?.params;
  if (saved && run.params) {
    const changed = [...new Set([...Object.keys(saved), ...Object.keys(run.params)])].filter((key) => saved[key] !== run.params![key]);
    if (changed.length > 0) {
      const was = changed.map((key) => `${key} ${saved[key] ?? '(none)'}`).join(', ');
      const now = changed.map((key) => `${key} ${run.params![key] ?? '(none)'}`).join(', ');
      throw new FedtlError('BAD_CONFIG', `checkpoint in ${directory} was written by strategy ${run.strategy} with ${was}, this run has ${now}; resume with the same values, or use another output directory`);
    }
  }
  return checkpoint;
}
