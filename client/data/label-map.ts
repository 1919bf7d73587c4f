/**
 * Turns the raw labels a file holds (strings or integers) into class indices.
 *
 * Without a fixed class list, classes are the distinct labels sorted (numerically when every
 * label is an integer, by code point otherwise), so the mapping depends only on the label set,
 * never on row order or locale. In a federation every hospital must map labels identically;
 * when a hospital may lack some classes, pass the federation's `classNames` so indices agree.
 */
import { FedtlError } from '../../shared/core/errors.ts';

export type RawLabel = string | number;

export interface LabelIndex {
  classNames: string[];
  labels: Int32Array;
}

export interface BuildLabelIndexOptions {
  /**
   * The complete, ordered class list; label `i` means `classNames[i]`. Labels are matched by
   * their string form (`3` matches `'3'`). @default the sorted distinct labels found
   */
  classNames?: readonly string[] | undefined;
  /** Names the source in errors, e.g. the file path. */
  source: string;
  /** Describes where raw label `i` came from, for errors (e.g. `file:12`). */
  locate: (index: number) => string;
}

function compareCodePoints(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Sorted distinct class names of `rawLabels`. Integers sort numerically so `['2', '10']` keeps
 * `2` first; a mix of numbers and strings is refused because it nearly always means a broken column.
 */
export function buildLabelIndex(rawLabels: readonly RawLabel[], options: BuildLabelIndexOptions): LabelIndex {
  const { source, locate } = options;
  let classNames: string[];
  if (options.classNames) {
    classNames = [...options.classNames];
    if (new Set(classNames).size !== classNames.length) {
      throw new FedtlError('BAD_CONFIG', `classNames for ${source} contain duplicates: [${classNames.join(', ')}].`);
    }
  } else {
    const firstType = typeof rawLabels[0];
    for (let i = 0; i < rawLabels.length; i++) {
      if (typeof rawLabels[i] !== firstType) {
        throw new FedtlError(
          'BAD_DATA',
          `${locate(i)}: label ${JSON.stringify(rawLabels[i])} is a ${typeof rawLabels[i]} but earlier labels are ${firstType}s; use one label type in ${source}.`,
        );
      }
    }
    const distinct = [...new Set(rawLabels.map(String))];
    const allIntegers = distinct.every((label) => /^-?\d+$/.test(label));
    distinct.sort(allIntegers ? (a, b) => Number(a) - Number(b) : compareCodePoints);
    classNames = distinct;
  }
  const indexOf = new Map(classNames.map((name, i) => [name, i] as const));
  const labels = new Int32Array(rawLabels.length);
  for (let i = 0; i < rawLabels.length; i++) {
    const index = indexOf.get(String(rawLabels[i]));
    if (index === undefined) {
      throw new FedtlError(
        'BAD_DATA',
        `${locate(i)}: label ${JSON.stringify(rawLabels[i])} is not one of the configured classes [${classNames.join(', ')}]; fix the label in ${source} or the classNames option.`,
      );
    }
    labels[i] = index;
  }
  return { classNames, labels };
}
