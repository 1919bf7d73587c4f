import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadImageFolder } from '../../../client/data/image-folder.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedtl-images-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function solid(width: number, height: number, rgb: [number, number, number]): sharp.Sharp {
  return sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } });
}

/** Writes files under a fresh folder; values are file contents or sharp pipelines. */
async function makeFolder(name: string, files: Record<string, Buffer | string | sharp.Sharp>): Promise<string> {
  const root = join(dir, name);
  await mkdir(root, { recursive: true });
  for (const [relative, content] of Object.entries(files)) {
    const path = join(root, relative);
    await mkdir(join(path, '..'), { recursive: true });
    if (typeof content === 'string' || Buffer.isBuffer(content)) await writeFile(path, content);
    else await content.toFile(path);
  }
  return root;
}

async function captureWarnings<T>(run: () => Promise<T>): Promise<{ result: T; stderr: string }> {
  const lines: string[] = [];
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  try {
    return { result: await run(), stderr: lines.join('') };
  } finally {
    spy.mockRestore();
  }
}

describe('loadImageFolder', () => {
  it('decodes PNG and JPEG, sorts classes by code point, resizes and skips non-images with a warning', async () => {
    const root = await makeFolder('ok', {
      'b_red/one.png': solid(10, 8, [255, 0, 0]).png(),
      'b_red/two.PNG': solid(3, 3, [255, 0, 0]).png(),
      'b_red/notes.txt': 'not an image',
      'A_blue/only.jpg': solid(20, 20, [0, 0, 255]).jpeg({ quality: 100 }),
      'README.md': 'stray',
      '.hidden/x.png': solid(2, 2, [0, 0, 0]).png(),
    });
    const { result: ds, stderr } = await captureWarnings(() => loadImageFolder({ path: root, size: 4, channels: 3 }));
    expect(stderr).toMatch(/b_red: skipping 1 non-image entry \(notes\.txt\)/);
    expect(stderr).toMatch(/skipping 1 file\(s\) outside class subfolders \(README\.md\)/);
    expect(ds.classNames).toEqual(['A_blue', 'b_red']);
    expect(Array.from(ds.labels)).toEqual([0, 1, 1]);
    expect(ds.examples).toMatchObject({ kind: 'image', width: 4, height: 4, channels: 3 });
    if (ds.examples.kind !== 'image') throw new Error('expected images');
    const px = ds.examples.pixels;
    expect(px.length).toBe(3 * 4 * 4 * 3);
    // blue JPEG: every pixel close to (0, 0, 255); red PNGs: exactly (255, 0, 0)
    for (let p = 0; p < 16; p++) {
      expect(px[p * 3]!).toBeLessThan(5);
      expect(px[p * 3 + 2]!).toBeGreaterThan(250);
    }
    for (let p = 16; p < 48; p++) expect([px[p * 3], px[p * 3 + 1], px[p * 3 + 2]]).toEqual([255, 0, 0]);
  });

  it('produces one grayscale channel on request and fingerprints the decoded content', async () => {
    const root = await makeFolder('gray', { 'c/a.png': solid(6, 6, [200, 200, 200]).png() });
    const ds = await loadImageFolder({ path: root, size: 2, channels: 1 });
    expect(ds.examples.kind === 'image' && Array.from(ds.examples.pixels)).toEqual([200, 200, 200, 200]);
    const again = await loadImageFolder({ path: root, size: 2, channels: 1 });
    expect(again.fingerprint).toBe(ds.fingerprint);
    await solid(6, 6, [10, 10, 10]).png().toFile(join(root, 'c/a.png'));
    const changed = await loadImageFolder({ path: root, size: 2, channels: 1 });
    expect(changed.fingerprint).not.toBe(ds.fingerprint);
  });

  it('maps folders through a fixed federation class list, allowing missing classes', async () => {
    const root = await makeFolder('fixed', { 'pneumonia/a.png': solid(2, 2, [0, 0, 0]).png() });
    const ds = await loadImageFolder({ path: root, size: 2, channels: 1, classNames: ['normal', 'pneumonia'] });
    expect(ds.classNames).toEqual(['normal', 'pneumonia']);
    expect(Array.from(ds.labels)).toEqual([1]);
    await expect(loadImageFolder({ path: root, size: 2, channels: 1, classNames: ['normal'] })).rejects.toMatchObject({
      code: 'BAD_DATA',
      message: expect.stringMatching(/subfolder\(s\) \[pneumonia\] that are not among the classes/),
    });
  });

  it('refuses a missing folder and a file given as the folder', async () => {
    const missing = join(dir, 'does-not-exist');
    await expect(loadImageFolder({ path: missing, size: 2, channels: 3 })).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining(`${missing} does not exist`) });
    const root = await makeFolder('file-root', { 'x.txt': 'x' });
    const file = join(root, 'x.txt');
    await expect(loadImageFolder({ path: file, size: 2, channels: 3 })).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining(`${file} is not a folder`) });
  });

  it('refuses a folder without class subfolders', async () => {
    const root = await makeFolder('flat', { 'a.png': solid(2, 2, [0, 0, 0]).png() });
    const { result } = await captureWarnings(() => loadImageFolder({ path: root, size: 2, channels: 3 }).catch((e: unknown) => e));
    expect(result).toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining(`Image folder ${root} has no class subfolders`) });
  });

  it('refuses an empty class, naming its folder', async () => {
    const root = await makeFolder('empty-class', { 'a/x.png': solid(2, 2, [0, 0, 0]).png(), 'b/readme.txt': 'nothing here' });
    const { result } = await captureWarnings(() => loadImageFolder({ path: root, size: 2, channels: 3 }).catch((e: unknown) => e));
    expect(result).toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining(`Class folder ${join(root, 'b')} holds no images`) });
  });

  it('refuses a corrupt or truncated image, naming the file', async () => {
    const jpeg = await solid(64, 64, [10, 120, 30]).jpeg().toBuffer();
    const root = await makeFolder('corrupt', {
      'a/good.png': solid(2, 2, [0, 0, 0]).png(),
      'a/fake.png': Buffer.from('this is not a png at all'),
    });
    await expect(loadImageFolder({ path: root, size: 2, channels: 3 })).rejects.toMatchObject({
      code: 'BAD_DATA',
      message: expect.stringContaining(`Cannot decode image ${join(root, 'a/fake.png')}`),
    });
    const truncated = await makeFolder('truncated', { 'a/cut.jpg': jpeg.subarray(0, jpeg.length >> 1) });
    await expect(loadImageFolder({ path: truncated, size: 2, channels: 3 })).rejects.toMatchObject({
      code: 'BAD_DATA',
      message: expect.stringContaining(join(truncated, 'a/cut.jpg')),
    });
  });

  it('refuses bad size and channel options', async () => {
    const root = await makeFolder('opts', { 'a/x.png': solid(2, 2, [0, 0, 0]).png() });
    await expect(loadImageFolder({ path: root, size: 0, channels: 3 })).rejects.toMatchObject({ code: 'BAD_CONFIG' });
    // @ts-expect-error 2 channels are not supported: the test checks the runtime guard
    await expect(loadImageFolder({ path: root, size: 2, channels: 2 })).rejects.toMatchObject({ code: 'BAD_CONFIG' });
  });
});
