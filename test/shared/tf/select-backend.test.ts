import * as tf from '@tensorflow/tfjs';
import { afterEach, describe, expect, it } from 'vitest';
import { selectBackend } from '../../../shared/tf/select-backend.ts';

describe('selectBackend', () => {
  const saved = process.env['FEDTL_BACKEND'];
  afterEach(async () => {
    if (saved === undefined) delete process.env['FEDTL_BACKEND'];
    else process.env['FEDTL_BACKEND'] = saved;
    await selectBackend({ log: false, prefer: (saved as 'wasm' | 'cpu' | undefined) ?? 'wasm' });
  });

  it('picks the best backend that loads and says why better ones were skipped', async () => {
    delete process.env['FEDTL_BACKEND'];
    const choice = await selectBackend({ log: false, prefer: undefined });
    expect(['tensorflow', 'wasm', 'cpu']).toContain(choice.name);
    expect(tf.getBackend()).toBe(choice.name);
    if (choice.name !== 'tensorflow') {
      // tfjs-node is optional and not installable here: its absence is recorded with a reason.
      expect(choice.skipped[0]?.name).toBe('tensorflow');
      expect(choice.skipped[0]?.reason.length).toBeGreaterThan(0);
    }
  });

  it('switches to a requested backend and computes the same numbers on it', async () => {
    const a = [[1, 2], [3, 4]];
    await selectBackend({ log: false, prefer: 'cpu' });
    expect(tf.getBackend()).toBe('cpu');
    const onCpu = tf.tidy(() => tf.matMul(a, a).arraySync());
    await selectBackend({ log: false, prefer: 'wasm' });
    expect(tf.getBackend()).toBe('wasm');
    const onWasm = tf.tidy(() => tf.matMul(a, a).arraySync());
    expect(onWasm).toEqual(onCpu);
  });

  it('refuses an unknown FEDTL_BACKEND and a backend that cannot load, with a clear error', async () => {
    process.env['FEDTL_BACKEND'] = 'gpu-please';
    await expect(selectBackend({ log: false, prefer: undefined })).rejects.toThrow(/FEDTL_BACKEND="gpu-please" is not a backend/);
    delete process.env['FEDTL_BACKEND'];
    const native = await selectBackend({ log: false, prefer: 'tensorflow' }).catch((error: Error) => error);
    // Either tfjs-node is installed (then it loads) or the error names the backend.
    if (native instanceof Error) expect(native.message).toMatch(/backend "tensorflow" was requested but could not load/);
    else expect(native.name).toBe('tensorflow');
  });
});
