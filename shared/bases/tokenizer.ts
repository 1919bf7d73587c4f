/**
 * Word tokenizer for the GloVe base: text → fixed-length token id sequences.
 *
 * It mirrors what the vocabulary can hold. The GloVe 6B vectors are lowercase, and the wink
 * package keeps no contraction pieces (`n't`, `'s`), so contractions are expanded to whole words
 * (`don't` → `do not`) rather than split into fragments that would all be out of vocabulary —
 * keeping the negation matters for sentiment.
 */
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';

/** Token id of padding; its embedding row is zero. */
export const PAD_ID = 0;
/** Token id of out-of-vocabulary words; its embedding row is zero. */
export const OOV_ID = 1;
export const PAD_TOKEN = '<pad>';
export const OOV_TOKEN = '<oov>';

/** Tokens the vocabulary can hold: runs of letters and digits (what {@link tokenize} emits). */
export const VOCABULARY_TOKEN = /^[\p{L}\p{N}]+$/u;

/** Name and version of the tokenizer rules below; an export records it with the rules themselves. */
export const TOKENIZER_NAME = 'fedtl-words';
export const TOKENIZER_VERSION = 1;

// The rules as data (ECMAScript regular expressions), used by `tokenize` and written verbatim into
// an export's preprocessing description, so the two cannot drift apart.
/** HTML tags such as `<br />`, replaced by a space. */
export const TAG_PATTERN = '<[^>]*>';
/** HTML entities (after lowercasing); the known ones map through {@link ENTITIES}, others become a space. */
export const ENTITY_PATTERN = '&[a-z#0-9]+;';
/** Curly apostrophes and the modifier letter apostrophe, normalised to `'`. */
export const APOSTROPHE_PATTERN = '[\u2018\u2019\u02bc]';
/** A word: letters/digits, possibly with inner apostrophes (don't, o'neill). */
export const WORD_PATTERN = "[\\p{L}\\p{N}]+(?:'[\\p{L}\\p{N}]+)*";
export const ENTITIES: Readonly<Record<string, string>> = { '&amp;': '&', '&quot;': '"', '&#39;': "'", '&apos;': "'", '&lt;': '<', '&gt;': '>', '&nbsp;': ' ' };
/** Stems of `n't` contractions that are not the word itself (`won't` → `will not`). */
export const NEGATION_STEMS: Readonly<Record<string, string>> = { can: 'can', ca: 'can', wo: 'will', sha: 'shall', ai: 'is' };
/** Contraction suffixes and the word each becomes; `null` drops it (`'s` is possessive, "is" or "has"). */
export const SUFFIXES: Readonly<Record<string, string | null>> = { re: 'are', ve: 'have', ll: 'will', m: 'am', d: 'would', s: null };

const TAG = new RegExp(TAG_PATTERN, 'g');
const ENTITY = new RegExp(ENTITY_PATTERN, 'g');
const APOSTROPHE = new RegExp(APOSTROPHE_PATTERN, 'g');
const WORD = new RegExp(WORD_PATTERN, 'gu');

function expand(word: string): string[] {
  if (!word.includes("'")) return [word];
  if (word.endsWith("n't") && word.length > 3) {
    const stem = word.slice(0, -3);
    return [Object.hasOwn(NEGATION_STEMS, stem) ? NEGATION_STEMS[stem]! : stem, 'not'];
  }
  const cut = word.lastIndexOf("'");
  const suffix = word.slice(cut + 1);
  if (Object.hasOwn(SUFFIXES, suffix) && word.indexOf("'") === cut) {
    // 's is possessive or "is"/"has": ambiguous, and both carry little meaning, so it is dropped.
    const replacement = SUFFIXES[suffix];
    return replacement ? [word.slice(0, cut), replacement] : [word.slice(0, cut)];
  }
  // Names like o'neill: the pieces are more likely in the vocabulary than the whole.
  return word.split("'").filter((piece) => piece !== '');
}

/**
 * Splits text into lowercase word tokens: HTML tags such as `<br />` and common entities are
 * removed, words are runs of letters/digits, contractions are expanded.
 *
 * @example tokenize("I didn't like it.<br /><br />Boring!") // ['i', 'did', 'not', 'like', 'it', 'boring']
 */
export function tokenize(text: string): string[] {
  const cleaned = text
    .toLowerCase()
    .replace(TAG, ' ')
    .replace(ENTITY, (entity) => ENTITIES[entity] ?? ' ')
    .replace(APOSTROPHE, "'");
  const tokens: string[] = [];
  for (const match of cleaned.matchAll(WORD)) tokens.push(...expand(match[0]));
  return tokens;
}

/** Options of {@link Tokenizer}. */
export interface TokenizerOptions {
  /** Token ids per example; shorter texts are padded with {@link PAD_ID}, longer ones truncated (the start is kept). @default 256 */
  sequenceLength?: number;
}

/**
 * Maps texts to padded id sequences over a fixed vocabulary (index = id, 0 = padding, 1 = OOV).
 *
 * @example
 * const tokenizer = new Tokenizer(base.input.vocabulary, { sequenceLength: base.input.sequenceLength });
 * const ids = tokenizer.encodeBatch(['a fine film', 'dull']); // int32 [2, 256]
 */
export class Tokenizer {
  readonly sequenceLength: number;
  readonly vocabularySize: number;
  private readonly ids: Map<string, number>;

  constructor(vocabulary: readonly string[], options: TokenizerOptions = {}) {
    this.sequenceLength = options.sequenceLength ?? 256;
    if (!Number.isInteger(this.sequenceLength) || this.sequenceLength <= 0) {
      throw new FedtlError('BAD_CONFIG', `sequenceLength must be a positive integer, got ${this.sequenceLength}`);
    }
    if (vocabulary.length < 2 || vocabulary[PAD_ID] !== PAD_TOKEN || vocabulary[OOV_ID] !== OOV_TOKEN) {
      throw new FedtlError('BAD_CONFIG', `vocabulary must start with "${PAD_TOKEN}" (id 0) and "${OOV_TOKEN}" (id 1)`);
    }
    this.vocabularySize = vocabulary.length;
    this.ids = new Map();
    // Reserved ids are never produced from text, even if a text contains "<pad>" literally.
    for (let id = 2; id < vocabulary.length; id++) this.ids.set(vocabulary[id]!, id);
  }

  /** Id of one token, {@link OOV_ID} when unknown. */
  idOf(token: string): number {
    return this.ids.get(token) ?? OOV_ID;
  }

  /** One text → `sequenceLength` ids. */
  encode(text: string): Int32Array {
    const out = new Int32Array(this.sequenceLength); // zero-filled = PAD_ID
    const tokens = tokenize(text);
    const n = Math.min(tokens.length, this.sequenceLength);
    for (let i = 0; i < n; i++) out[i] = this.idOf(tokens[i]!);
    return out;
  }

  /** Texts → an int32 tensor `[texts.length, sequenceLength]`, owned by the caller. */
  encodeBatch(texts: readonly string[]): tf.Tensor2D {
    const flat = new Int32Array(texts.length * this.sequenceLength);
    texts.forEach((text, row) => flat.set(this.encode(text), row * this.sequenceLength));
    return tf.tensor2d(flat, [texts.length, this.sequenceLength], 'int32');
  }
}
