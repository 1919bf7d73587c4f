/**
 * The exact description of how raw inputs become a model's input, written into an export's
 * `fedtl-model.json` under `preprocessing`, so someone outside fedtl (stock TensorFlow.js, Python,
 * anything) can feed the model exactly as it was trained — a tokenizer that differs in one rule
 * (HTML tags, contractions) silently flips predictions.
 *
 * Every rule here is data taken from the code that applies it (`shared/bases/tokenizer.ts`,
 * {@link IMAGE_DECODE} used by the image loader), never a second copy in prose.
 */
import {
  APOSTROPHE_PATTERN,
  ENTITIES,
  ENTITY_PATTERN,
  NEGATION_STEMS,
  OOV_ID,
  OOV_TOKEN,
  PAD_ID,
  PAD_TOKEN,
  SUFFIXES,
  TAG_PATTERN,
  TOKENIZER_NAME,
  TOKENIZER_VERSION,
  WORD_PATTERN,
} from '../bases/tokenizer.ts';
import type { BaseInputSpec } from './frozen-base.ts';

/** Version of the description format itself. */
export const PREPROCESSING_VERSION = 1;

/**
 * How images are decoded and resized (sharp/libvips), as applied by the image loader and by
 * `predict`. `fit` may be overridden per call; the export records what training used.
 */
export const IMAGE_DECODE = {
  library: 'sharp (libvips)',
  formats: ['png', 'jpeg'],
  /** libvips' default resampling kernel in sharp's `resize`. */
  kernel: 'lanczos3',
  position: 'centre',
  background: [0, 0, 0],
} as const;

/** One step of the text tokenizer, in order. Patterns are ECMAScript regular expressions. */
export type TokenizerStep =
  | { step: 'lowercase'; how: string }
  | { step: 'replace'; pattern: string; flags: string; replacement: string; why: string }
  | { step: 'entities'; pattern: string; flags: string; map: Record<string, string>; otherwise: string }
  | { step: 'words'; pattern: string; flags: string; how: string }
  | { step: 'contractions'; appliesTo: string; rules: string[]; negationSuffix: string; negationWord: string; negationStems: Record<string, string>; suffixes: Record<string, string | null> };

export interface TextPreprocessing {
  kind: 'text';
  tokenizer: { name: string; version: number; regexFlavor: string; steps: TokenizerStep[] };
  /** Token → id: a JSON array of strings in `vocabularyFile`, index = id. */
  vocabularyFile: string;
  padId: number;
  padToken: string;
  oovId: number;
  oovToken: string;
  lookup: string;
  sequenceLength: number;
  truncation: string;
  padding: string;
  dtype: 'int32';
}

export interface ImagePreprocessing {
  kind: 'image';
  size: number;
  channels: number;
  decode: {
    library: string;
    formats: readonly string[];
    steps: { step: string; how: string; [detail: string]: unknown }[];
  };
  normalisation: { from: [number, number]; to: [number, number]; formula: string };
  layout: 'NHWC';
  dtype: 'float32';
}

export interface TensorPreprocessing {
  kind: 'tensor';
  size: number;
  /** Names of the `size` values in model order (CSV header names), when the training data had names. */
  columns?: string[];
  /** How a CSV file maps to rows: columns matched by header name, the label column ignored. */
  csv: string;
  dtype: 'float32';
}

export type PreprocessingDescription = { version: number } & (TextPreprocessing | ImagePreprocessing | TensorPreprocessing);

/** What the description needs besides the base's input spec. */
export interface DescribeOptions {
  /** File of the vocabulary in the export (text). */
  vocabularyFile: string;
  /** How images were fitted to the square input. @default 'cover' */
  fit?: 'cover' | 'fill' | 'contain';
  /** Feature column names in model order (CSV data). @default not recorded */
  columns?: readonly string[];
}

/** The tokenizer rules of `shared/bases/tokenizer.ts` as data. */
export function describeTokenizer(): TextPreprocessing['tokenizer'] {
  return {
    name: TOKENIZER_NAME,
    version: TOKENIZER_VERSION,
    regexFlavor: 'ECMAScript 2018 (JavaScript RegExp; flag u = Unicode property escapes)',
    steps: [
      { step: 'lowercase', how: 'String.prototype.toLowerCase() of the whole text (Unicode default case mapping, no locale)' },
      { step: 'replace', pattern: TAG_PATTERN, flags: 'g', replacement: ' ', why: 'HTML tags such as <br /> (IMDB reviews hold many)' },
      { step: 'entities', pattern: ENTITY_PATTERN, flags: 'g', map: { ...ENTITIES }, otherwise: ' ' },
      { step: 'replace', pattern: APOSTROPHE_PATTERN, flags: 'g', replacement: "'", why: "curly apostrophes become '" },
      { step: 'words', pattern: WORD_PATTERN, flags: 'gu', how: 'every match, in order, is one word' },
      {
        step: 'contractions',
        appliesTo: "each word that contains an apostrophe (words without one are tokens as they are)",
        rules: [
          "1. If the word ends with negationSuffix and is longer than it: stem = the word without the suffix; emit negationStems[stem] when stem is a key of negationStems, else stem; then emit negationWord.",
          '2. Else, if the word has exactly one apostrophe and the text after it is a key of suffixes: emit the text before the apostrophe, then suffixes[key] unless that is null.',
          '3. Else: split the word at every apostrophe and emit the non-empty pieces.',
        ],
        negationSuffix: "n't",
        negationWord: 'not',
        negationStems: { ...NEGATION_STEMS },
        suffixes: { ...SUFFIXES },
      },
    ],
  };
}

/**
 * The exact preprocessing of a base's input, for an export's sidecar.
 *
 * @example describePreprocessing(base.input, { vocabularyFile: 'vocabulary.json' }).kind // 'text'
 */
export function describePreprocessing(input: BaseInputSpec, options: DescribeOptions): PreprocessingDescription {
  switch (input.kind) {
    case 'text':
      return {
        version: PREPROCESSING_VERSION,
        kind: 'text',
        tokenizer: describeTokenizer(),
        vocabularyFile: options.vocabularyFile,
        padId: PAD_ID,
        padToken: PAD_TOKEN,
        oovId: OOV_ID,
        oovToken: OOV_TOKEN,
        lookup: `token id = index of the token in the vocabulary array, searching from id 2 on (ids ${PAD_ID} and ${OOV_ID} are never produced from text); a token not in it gets oovId`,
        sequenceLength: input.sequenceLength,
        truncation: 'keep the first sequenceLength tokens',
        padding: 'fill the remaining positions with padId (after the tokens)',
        dtype: 'int32',
      };
    case 'image': {
      const fit = options.fit ?? 'cover';
      const [low, high] = input.range;
      const fitText = { cover: 'scale so the shorter side is size, then crop the centre', fill: 'stretch to size×size', contain: 'scale so the longer side is size, pad with black' }[fit];
      return {
        version: PREPROCESSING_VERSION,
        kind: 'image',
        size: input.size,
        channels: input.channels,
        decode: {
          library: IMAGE_DECODE.library,
          formats: IMAGE_DECODE.formats,
          steps: [
            { step: 'rotate', how: 'apply the EXIF orientation (sharp rotate())' },
            { step: 'flatten', how: 'composite any transparency onto black', background: [...IMAGE_DECODE.background] },
            { step: 'resize', how: `${fitText} (sharp resize(size, size, { fit: '${fit}' }))`, width: input.size, height: input.size, fit, position: IMAGE_DECODE.position, kernel: IMAGE_DECODE.kernel },
            input.channels === 1
              ? { step: 'colour', how: 'convert to one grayscale channel (sharp grayscale(), libvips b-w)' }
              : { step: 'colour', how: 'convert to sRGB, 3 channels in R, G, B order (sharp toColourspace("srgb"))' },
            { step: 'raw', how: '8-bit values 0..255, row-major, channels last' },
          ],
        },
        normalisation: { from: [0, 255], to: [low, high], formula: `x = ${low} + v / 255 * (${high} - ${low})` },
        layout: 'NHWC',
        dtype: 'float32',
      };
    }
    case 'tensor':
      return {
        version: PREPROCESSING_VERSION,
        kind: 'tensor',
        size: input.size,
        ...(options.columns ? { columns: [...options.columns] } : {}),
        csv: options.columns
          ? 'a CSV file with a header row: take the columns named in `columns`, in that order (match by header name, ignore the label column); values are plain decimal numbers as float32'
          : 'one row of `size` plain decimal numbers as float32, in the order the training data had them (the training data had no column names)',
        dtype: 'float32',
      };
  }
}
