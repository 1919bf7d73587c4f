import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { createIdentityBase, identityBaseHash } from '../../../shared/bases/identity.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';

beforeAll(async () => {
  await selectBackend({ log: false });
});

describe('identity base', () => {
  it('returns a new float32 tensor equal to the input', async () => {
    const base = createIdentityBase(3);
    expect(base.name).toBe('identity-3');
    expect(base.embeddingSize).toBe(3);
    expect(base.model).toBeNull();
    const x = tf.tensor2d([[1, 2, 3], [4, 5, 6]], [2, 3], 'int32');
    const e = base.embed(x);
    expect(e).not.toBe(x);
    expect(e.dtype).toBe('float32');
    expect(Array.from(await e.data())).toEqual([1, 2, 3, 4, 5, 6]);
    tf.dispose([x, e]);
    expect(tf.memory().numTensors).toBe(0);
  });

  it('derives its hash from name and size', () => {
    expect(createIdentityBase(3).hash).toBe(identityBaseHash('identity-3', 3));
    expect(createIdentityBase(3).hash).not.toBe(createIdentityBase(4).hash);
    expect(createIdentityBase(3, { name: 'iris' }).hash).not.toBe(createIdentityBase(3).hash);
  });

  it('rejects bad sizes and shapes', () => {
    expect(() => createIdentityBase(0)).toThrow(expect.objectContaining({ code: 'BAD_CONFIG' }));
    const base = createIdentityBase(3);
    const x = tf.zeros([2, 4]);
    expect(() => base.embed(x)).toThrow(expect.objectContaining({ code: 'BAD_SHAPE' }));
    x.dispose();
  });
});
