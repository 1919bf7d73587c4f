/**
 * Public API of the client's data loaders.
 *
 * `registerLoader`/`getLoader` work on one process-wide registry that starts with the built-in
 * loaders; tests wanting isolation construct their own `LoaderRegistry`.
 */
import { BUILTIN_LOADERS } from './builtin-loaders.ts';
import { LoaderRegistry, type DataLoader } from './registry.ts';

export type { RawExamples, TextExamples, ImageExamples, TensorExamples, ExampleKind, LabeledDataset, CreateDatasetOptions, SubsetOptions } from './dataset.ts';
export { createDataset, subset, classCounts, countExamples, fingerprintContent } from './dataset.ts';
export type { SplitOptions, TrainTestIndices, SelectIndicesOptions } from './split.ts';
export { splitTrainTest, splitIndices, selectIndices } from './split.ts';
export type { PreparedInputs, PrepareInputsOptions } from './prepare-inputs.ts';
export { prepareInputs } from './prepare-inputs.ts';
export type { ImageFolderOptions, ImageFit } from './image-folder.ts';
export { loadImageFolder, IMAGE_EXTENSIONS } from './image-folder.ts';
export type { CsvLoaderOptions } from './csv.ts';
export { loadCsv } from './csv.ts';
export type { JsonlLoaderOptions } from './jsonl.ts';
export { loadJsonl } from './jsonl.ts';
export type { ImdbOptions } from './imdb.ts';
export { loadImdb, IMDB_CLASS_NAMES } from './imdb.ts';
export type { MnistOptions, MnistSplit, DigitFormat } from './mnist.ts';
export { loadMnist, MNIST_CLASS_NAMES } from './mnist.ts';
export type { FashionMnistOptions, FashionMnistSplit } from './fashion-mnist.ts';
export { loadFashionMnist, loadFashionMnistSplits, FASHION_MNIST_CLASS_NAMES } from './fashion-mnist.ts';
export type { DataLoader, LoadRequest, DataSplit, BuiltinDataType } from './registry.ts';
export { LoaderRegistry, BUILTIN_DATA_TYPES } from './registry.ts';

/** Creates a registry holding the built-in loaders. */
export function createDefaultRegistry(): LoaderRegistry {
  const registry = new LoaderRegistry();
  for (const loader of BUILTIN_LOADERS) registry.register(loader);
  return registry;
}

const defaultRegistry = createDefaultRegistry();

/** Adds a loader to the process-wide registry; a taken name is a `BAD_CONFIG` error. */
export function registerLoader(loader: DataLoader): void {
  defaultRegistry.register(loader);
}

/** The loader for `--data-type <name>`; unknown names are a `BAD_CONFIG` error listing the known ones. */
export function getLoader(name: string): DataLoader {
  return defaultRegistry.get(name);
}

/** Names accepted by `--data-type`. */
export function loaderNames(): string[] {
  return defaultRegistry.names();
}
