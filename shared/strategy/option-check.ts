import { FedtlError } from '../core/errors.ts';

/**
 * A strategy option with its default applied, or BAD_CONFIG naming it: `expected` completes
 * "<name> must be …" (e.g. `'in [0, 1)'`).
 */
export function checkedOption(value: number | undefined, fallback: number, name: string, valid: (v: number) => boolean, expected: string): number {
  const result = value ?? fallback;
  if (!valid(result)) throw new FedtlError('BAD_CONFIG', `${name} must be ${expected}, got ${result}`);
  return result;
}

export const isPositive = (v: number): boolean => v > 0 && Number.isFinite(v);
export const isNonNegative = (v: number): boolean => v >= 0 && Number.isFinite(v);
export const isUnitInterval = (v: number): boolean => v >= 0 && v < 1;
