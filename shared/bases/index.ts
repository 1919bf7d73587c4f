/**
 * Public API of the frozen bases: build, cache, open.
 *
 * @example
 * const base = await openBase('mobilenet-v2-96');
 * const features = base.embed(images); // [n, 1280]
 * base.dispose();
 */
export { prepareBase, openBase, verifyBaseDir, defaultCacheDir, type PrepareBaseOptions, type OpenBaseOptions } from './prepare-base.ts';
export { registerBase, resolveBase, listBases, type BaseDefinition, type BaseRecipe, type BaseVariantOptions } from './registry.ts';
export { createIdentityBase, identityBaseHash, type IdentityBaseOptions } from './identity.ts';
export { Tokenizer, tokenize, PAD_ID, OOV_ID, PAD_TOKEN, OOV_TOKEN, type TokenizerOptions } from './tokenizer.ts';
export { buildGloveBase, readGloveVectors, createGloveModel, GLOVE_BASE_NAME, type GloveBaseOptions, type GloveVectors, type ReadGloveOptions } from './glove.ts';
export {
  buildMobilenetBase,
  convertNsfwjsMobilenet,
  mobilenetBaseName,
  isMobilenetSize,
  MOBILENET_BASE_NAME,
  MOBILENET_SIZES,
  MOBILENET_EMBEDDING_SIZE,
  type MobilenetBaseOptions,
  type MobilenetSize,
} from './mobilenet.ts';
export {
  loadBase,
  fileLoadHandler,
  fileSaveHandler,
  readSidecar,
  writeSidecar,
  parseSidecar,
  type BaseSidecar,
  type LoadBaseOptions,
  type LoadedBase,
  type LayersCut,
  type GraphCut,
} from '../model/base-loader.ts';
export { hashModelDir, hashModelArtifacts } from '../model/model-hash.ts';
