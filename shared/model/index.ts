/** Public API of `shared/model`: frozen bases, the trainable head, training on cached features, export. */
export type { FrozenBase, BaseInputSpec, BaseInputKind, TextInputSpec, ImageInputSpec, TensorInputSpec } from './frozen-base.ts';
export { buildHead, parseHeadSpec, getHeadWeights, setHeadWeights, headManifest, DEFAULT_HEAD_SPEC, HEAD_ACTIVATIONS } from './head.ts';
export type { HeadSpec, HeadActivation, BuildHeadOptions } from './head.ts';
export { trainHead, evaluateHead, predictHead, OPTIMIZERS } from './head-training.ts';
export type { TrainOptions, TrainResult, EvalResult, OptimizerName } from './head-training.ts';
export type { FeatureMatrix } from './feature-matrix.ts';
export { selectRows } from './feature-matrix.ts';
export { FeatureCache, extractFeatures } from './feature-cache.ts';
export type { BatchSource, ExtractOptions, FeatureCacheOptions } from './feature-cache.ts';
export { loadBase, fileLoadHandler, fileSaveHandler } from './base-loader.ts';
export type { LoadBaseOptions, LoadedBase } from './base-loader.ts';
export { hashModelDir, hashModelArtifacts } from './model-hash.ts';
export { exportTransferModel, composeTransferModel, readExportSidecar } from './export.ts';
export type { ExportOptions, ExportResult, ExportSidecar } from './export.ts';
