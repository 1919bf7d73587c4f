/**
 * Server-side strategy state (FedAvgM's velocity, FedAdam's moments, a wrapper's counters) and
 * its JSON form for checkpoints. Arrays are stored as the raw bytes of their float64 values
 * (base64), so a restored state is bit-identical to the saved one: a resumed run must end with
 * the same head as an uninterrupted one, to the last bit.
 */
import { FedtlError } from '../core/errors.ts';

export type StateValue = number | string | boolean | null | Float64Array | StrategyState;
export interface StrategyState {
  [key: string]: StateValue;
}

/** The JSON-safe form of a state (numbers are written with full precision by JSON; NaN/±∞ are tagged). */
export function encodeState(state: StrategyState | null): unknown {
  if (state === null) return null;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(state)) out[key] = encodeValue(value);
  return out;
}

function encodeValue(value: StateValue): unknown {
  if (value instanceof Float64Array) return { $f64: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
  if (typeof value === 'number' && !Number.isFinite(value)) return { $num: String(value) };
  if (value !== null && typeof value === 'object') return encodeState(value);
  return value;
}

/** Parses what {@link encodeState} wrote; throws `CORRUPT_FILE` naming the bad key. */
export function decodeState(value: unknown, where = 'strategy state'): StrategyState | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'object' || Array.isArray(value)) throw new FedtlError('CORRUPT_FILE', `${where}: expected an object`);
  const out: StrategyState = {};
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) out[key] = decodeValue(item, `${where}.${key}`);
  return out;
}

function decodeValue(value: unknown, where: string): StateValue {
  if (value === null || typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value !== 'object' || Array.isArray(value)) throw new FedtlError('CORRUPT_FILE', `${where}: unexpected ${Array.isArray(value) ? 'list' : typeof value}`);
  const fields = value as Record<string, unknown>;
  if (typeof fields['$f64'] === 'string') {
    const bytes = Buffer.from(fields['$f64'], 'base64');
    if (bytes.byteLength % 8 !== 0) throw new FedtlError('CORRUPT_FILE', `${where}: ${bytes.byteLength} bytes is not a whole number of float64 values`);
    const copy = new Float64Array(bytes.byteLength / 8);
    new Uint8Array(copy.buffer).set(bytes);
    return copy;
  }
  if (typeof fields['$num'] === 'string') return Number(fields['$num']);
  const nested = decodeState(value, where);
  return nested ?? {};
}

/** Reads a float64 array field of a state, checking its length; `null` when the field is null or absent. */
export function stateArray(state: StrategyState, key: string, length: number, owner: string): Float64Array | null {
  const value = state[key];
  if (value === null || value === undefined) return null;
  if (!(value instanceof Float64Array)) throw new FedtlError('CORRUPT_FILE', `${owner} state: ${key} is not an array`);
  if (length >= 0 && value.length !== length) throw new FedtlError('CORRUPT_FILE', `${owner} state: ${key} has ${value.length} values, expected ${length}`);
  return Float64Array.from(value);
}

/** Reads a finite number field of a state. */
export function stateNumber(state: StrategyState, key: string, owner: string): number {
  const value = state[key];
  if (typeof value !== 'number') throw new FedtlError('CORRUPT_FILE', `${owner} state: ${key} is not a number`);
  return value;
}

/** Reads a nested state (a wrapper's inner strategy). */
export function stateChild(state: StrategyState, key: string): StrategyState | null {
  const value = state[key];
  if (value === null || value === undefined) return null;
  if (typeof value !== 'object' || value instanceof Float64Array) throw new FedtlError('CORRUPT_FILE', `strategy state: ${key} is not a nested state`);
  return value;
}
