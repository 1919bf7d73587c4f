import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { OOV_ID, PAD_ID, Tokenizer, tokenize } from '../../../shared/bases/tokenizer.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';

beforeAll(async () => {
  await selectBackend({ log: false });
});

describe('tokenize', () => {
  it('lowercases, strips HTML and entities, splits on non-letters', () => {
    expect(tokenize('A <b>Great</b> film!<br /><br />Loved it &amp; more... 10/10')).toEqual(['a', 'great', 'film', 'loved', 'it', 'more', '10', '10']);
  });

  it('expands contractions into whole words', () => {
    expect(tokenize("I didn't like it, it's dull and we're bored. Can't / won't")).toEqual([
      'i', 'did', 'not', 'like', 'it', 'it', 'dull', 'and', 'we', 'are', 'bored', 'can', 'not', 'will', 'not',
    ]);
    expect(tokenize('don\u2019t')).toEqual(['do', 'not']);
    expect(tokenize("o'neill 'quoted'")).toEqual(['o', 'neill', 'quoted']);
  });

  it('keeps letters outside ASCII', () => {
    expect(tokenize('Café naïve')).toEqual(['café', 'naïve']);
  });
});

describe('Tokenizer', () => {
  const vocabulary = ['<pad>', '<oov>', 'the', 'film', 'good'];

  it('maps to ids, unknown words to OOV, pads with 0 and truncates', () => {
    const tokenizer = new Tokenizer(vocabulary, { sequenceLength: 4 });
    expect(Array.from(tokenizer.encode('The good film'))).toEqual([2, 4, 3, PAD_ID]);
    expect(Array.from(tokenizer.encode('the zebra film the good'))).toEqual([2, OOV_ID, 3, 2]);
    // Reserved tokens look like HTML tags and are stripped, so text can never produce them.
    expect(Array.from(tokenizer.encode('<pad> <oov>'))).toEqual([PAD_ID, PAD_ID, PAD_ID, PAD_ID]);
  });

  it('encodes a batch as an int32 tensor', async () => {
    const tokenizer = new Tokenizer(vocabulary, { sequenceLength: 3 });
    const batch = tokenizer.encodeBatch(['good', 'the film']);
    expect(batch.dtype).toBe('int32');
    expect(batch.shape).toEqual([2, 3]);
    expect(Array.from(await batch.data())).toEqual([4, 0, 0, 2, 3, 0]);
    batch.dispose();
    expect(tf.memory().numTensors).toBe(0);
  });

  it('refuses a vocabulary without the reserved ids', () => {
    expect(() => new Tokenizer(['the', 'film'])).toThrow(expect.objectContaining({ code: 'BAD_CONFIG' }));
  });
});
