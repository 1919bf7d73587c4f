/**
 * Data loaders registered by name, looked up by the CLI's `--data-type`.
 *
 * Registration refuses duplicates so a plugin cannot silently replace a built-in loader.
 */
import { FedtlError } from '../../shared/core/errors.ts';
import type { LabeledDataset } from './dataset.ts';
import type { DigitFormat } from './mnist.ts';

/** Names of the built-in loaders. */
export const BUILTIN_DATA_TYPES = ['image-folder', 'csv', 'jsonl', 'imdb', 'mnist', 'fashion-mnist'] as const;
export type BuiltinDataType = (typeof BUILTIN_DATA_TYPES)[number];

export type DataSplit = 'train' | 'test' | 'all';

/** Everything the CLI may pass to a loader; each loader reads the fields it understands. */
export interface LoadRequest {
  /** File or folder to read; required by loaders whose `needsPath` is true. */
  path?: string;
  /**
   * Which side of the data. Sets with an official split (MNIST) or a built-in one
   * (Fashion-MNIST) provide it natively; for the others `train`/`test` is a stratified
   * `splitTrainTest` with `testFraction` and `seed`.
   * @default 'train' for mnist and fashion-mnist, 'all' for the others
   */
  split?: DataSplit;
  /** Held-out fraction when the split is ours to make. @default 0.2 (1/7 for fashion-mnist) */
  testFraction?: number;
  /** Keep a seeded random sample of this many examples. @default all */
  limit?: number;
  /** Seed of every shuffle, sample and split. @default 0 */
  seed?: number;
  /** Size and channels images are decoded to (the base's image input); required by image-folder. */
  image?: { size: number; channels: number };
  /** Form of MNIST-like digits. @default 'image' */
  format?: DigitFormat;
  /** Label column of a CSV file. @default 'label' */
  labelColumn?: string;
  /** The federation's ordered class list, so every client maps labels identically. @default found in the data */
  classNames?: readonly string[];
  /** Feature columns of a CSV file, in model order; the file's columns are matched by header name. @default every non-label column, in header order */
  columns?: readonly string[];
}

export interface DataLoader {
  /** Registry key, e.g. `mnist`. */
  readonly name: string;
  /** One line for `--help`. */
  readonly description: string;
  /** Whether `load` needs `request.path`. */
  readonly needsPath: boolean;
  load(request: LoadRequest): Promise<LabeledDataset>;
}

export class LoaderRegistry {
  readonly #loaders = new Map<string, DataLoader>();

  /** Adds a loader; a name already taken is a `BAD_CONFIG` error. */
  register(loader: DataLoader): void {
    if (this.#loaders.has(loader.name)) {
      throw new FedtlError('BAD_CONFIG', `A data loader named '${loader.name}' is already registered; choose another name.`);
    }
    this.#loaders.set(loader.name, loader);
  }

  /** The loader called `name`; an unknown name is a `BAD_CONFIG` error listing the known ones. */
  get(name: string): DataLoader {
    const loader = this.#loaders.get(name);
    if (!loader) {
      throw new FedtlError('BAD_CONFIG', `Unknown data type '${name}'; choose one of: ${this.names().join(', ')}.`);
    }
    return loader;
  }

  has(name: string): boolean {
    return this.#loaders.has(name);
  }

  /** Registered names in registration order. */
  names(): string[] {
    return [...this.#loaders.keys()];
  }
}
