import { describe, expect, it } from 'vitest';
import { DownloadProgress } from '../../client/download-progress.ts';

/** Every line a download of `total` bytes in `chunk`-byte pieces prints. */
function lines(total: number, chunk: number): string[] {
  const progress = new DownloadProgress();
  const out: string[] = [];
  for (let done = chunk; done < total + chunk; done += chunk) {
    const line = progress.update(Math.min(done, total), total);
    if (line) out.push(line);
  }
  return out;
}

describe('DownloadProgress', () => {
  it('prints one line per tenth with small chunks', () => {
    const out = lines(10_000_000, 100_000);
    expect(out).toHaveLength(10);
    expect(out[0]).toBe('base download 10% (1.0 of 10.0 MB)');
    expect(out.at(-1)).toBe('base download 100% (10.0 of 10.0 MB)');
  });

  it('with chunks larger than a tenth, states the true share instead of skipping tenths', () => {
    // 3 chunks of 1 MB: tenths 3, 6 and 10 are crossed; the lines say 33 %, 66 %, 100 %.
    expect(lines(3_000_000, 1_000_000)).toEqual(['base download 33% (1.0 of 3.0 MB)', 'base download 66% (2.0 of 3.0 MB)', 'base download 100% (3.0 of 3.0 MB)']);
  });

  it('a base already in the cache prints 100 % once, an empty one too', () => {
    const cached = new DownloadProgress();
    expect(cached.update(5_000_000, 5_000_000)).toBe('base download 100% (5.0 of 5.0 MB)');
    expect(cached.update(5_000_000, 5_000_000)).toBeNull();
    expect(new DownloadProgress('x').update(0, 0)).toBe('x 100% (0.0 of 0.0 MB)');
  });
});
