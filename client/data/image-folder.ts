/**
 * Image-folder loader: `root/<class name>/<image>.png|jpg|jpeg` → 8-bit image examples, decoded
 * and resized once to the size and channels the base expects.
 *
 * This is the shape a hospital's export usually takes (one folder per diagnosis). Decoding and
 * resizing happen once at load, with sharp (libvips), so training epochs never touch the codec.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import sharp from 'sharp';
import { IMAGE_DECODE } from '../../shared/model/preprocessing.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import { createLogger } from '../../shared/core/log.ts';
import { createDataset, type LabeledDataset } from './dataset.ts';

const log = createLogger('data:image-folder');

/** File extensions decoded as images (lower-case). Anything else is skipped with a warning. */
export const IMAGE_EXTENSIONS: readonly string[] = ['.png', '.jpg', '.jpeg'];

/** How an image whose aspect ratio differs from square is fitted. */
export type ImageFit = 'cover' | 'fill' | 'contain';

export interface ImageFolderOptions {
  /** Folder holding one subfolder per class. */
  path: string;
  /** Output height and width in pixels (the base's `ImageInputSpec.size`). */
  size: number;
  /** Output channels: 1 (grayscale) or 3 (RGB) (the base's `ImageInputSpec.channels`). */
  channels: 1 | 3;
  /**
   * `cover` scales then center-crops (keeps proportions, the usual ImageNet preprocessing),
   * `fill` stretches, `contain` letterboxes on black. @default 'cover'
   */
  fit?: ImageFit;
  /**
   * Fixed, ordered class list shared by the federation. A hospital missing a class folder is
   * then fine (non-IID data is normal); a folder not in the list is an error.
   * @default the subfolder names, sorted by code point
   */
  classNames?: readonly string[];
  /** Images decoded at once; sharp also parallelises inside each decode. @default 4 */
  concurrency?: number;
  /** Dataset name. @default the folder path */
  name?: string;
}

interface ImageFile {
  path: string;
  label: number;
}

async function listDirectory(path: string, what: string): Promise<import('node:fs').Dirent[]> {
  try {
    return await readdir(path, { withFileTypes: true });
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    const problem = code === 'ENOENT' ? 'does not exist' : code === 'ENOTDIR' ? 'is not a folder' : `cannot be read (${(cause as Error).message})`;
    throw new FedtlError('BAD_DATA', `${what} ${path} ${problem}; point --data at a folder holding one subfolder per class.`, { cause });
  }
}

function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Decodes one image file to raw 8-bit pixels of exactly `size`×`size`×`channels`. Exported so
 * prediction on new image files (`client/predict.ts`) decodes exactly as training data was loaded.
 */
export async function decodeImage(file: string, size: number, channels: 1 | 3, fit: ImageFit): Promise<Buffer> {
  try {
    // Reading the bytes ourselves keeps libvips' cache (keyed by file name) from serving a
    // stale decode if a file changes between two loads in one process.
    const bytes = await readFile(file);
    // failOn 'warning' refuses truncated files instead of returning half-grey images.
    let pipeline = sharp(bytes, { failOn: 'warning' })
      .rotate() // honour EXIF orientation: phone photos are often stored sideways
      .flatten({ background: { r: 0, g: 0, b: 0 } }) // transparency → black, so alpha never leaks into colour
      .resize(size, size, { fit, kernel: IMAGE_DECODE.kernel, position: IMAGE_DECODE.position, background: { r: 0, g: 0, b: 0 } });
    pipeline = channels === 1 ? pipeline.grayscale() : pipeline.toColourspace('srgb');
    const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
    if (info.width !== size || info.height !== size || info.channels !== channels) {
      throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}, expected ${size}x${size}x${channels}`);
    }
    return data;
  } catch (cause) {
    throw new FedtlError(
      'BAD_DATA',
      `Cannot decode image ${file}: ${(cause as Error).message}. The file is corrupt or not really a PNG/JPEG; replace or remove it.`,
      { cause },
    );
  }
}

/**
 * Loads a folder of class subfolders. Files inside a class folder are taken in code-point order
 * so the result (and its fingerprint) does not depend on the file system or locale.
 *
 * @example
 * const ds = await loadImageFolder({ path: '/data/xrays', size: 224, channels: 3 });
 * ds.classNames; // ['normal', 'pneumonia']
 */
export async function loadImageFolder(options: ImageFolderOptions): Promise<LabeledDataset> {
  const { path, size, channels } = options;
  const fit = options.fit ?? 'cover';
  const concurrency = options.concurrency ?? 4;
  if (!Number.isInteger(size) || size < 1) throw new FedtlError('BAD_CONFIG', `image size must be a positive integer, got ${size}.`);
  if (channels !== 1 && channels !== 3) throw new FedtlError('BAD_CONFIG', `image channels must be 1 or 3, got ${String(channels)}.`);
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new FedtlError('BAD_CONFIG', `concurrency must be a positive integer, got ${concurrency}.`);

  const entries = await listDirectory(path, 'Image folder');
  const folders = entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name).sort(byCodePoint);
  const strayFiles = entries.filter((e) => e.isFile() && !e.name.startsWith('.')).map((e) => e.name);
  if (strayFiles.length > 0) {
    log.warn(`${path}: skipping ${strayFiles.length} file(s) outside class subfolders (${strayFiles.slice(0, 3).join(', ')}${strayFiles.length > 3 ? ', …' : ''})`);
  }
  if (folders.length === 0) {
    throw new FedtlError('BAD_DATA', `Image folder ${path} has no class subfolders; put each class's images in ${path}/<class name>/.`);
  }
  let classNames: string[];
  if (options.classNames) {
    classNames = [...options.classNames];
    const unknown = folders.filter((f) => !classNames.includes(f));
    if (unknown.length > 0) {
      throw new FedtlError('BAD_DATA', `Image folder ${path} has subfolder(s) [${unknown.join(', ')}] that are not among the classes [${classNames.join(', ')}]; rename or remove them, or fix classNames.`);
    }
    const missing = classNames.filter((c) => !folders.includes(c));
    if (missing.length > 0) log.info(`${path}: no examples of class(es) ${missing.join(', ')}`);
  } else {
    classNames = folders;
  }

  const files: ImageFile[] = [];
  for (const folder of folders) {
    const folderPath = join(path, folder);
    const children = (await listDirectory(folderPath, 'Class folder')).filter((e) => !e.name.startsWith('.'));
    const images: string[] = [];
    const skipped: string[] = [];
    for (const child of children) {
      const childPath = join(folderPath, child.name);
      // Dirent type is 'unknown' on some file systems and symlinks need following: stat when unsure.
      const isFile = child.isFile() || (child.isSymbolicLink() && (await stat(childPath)).isFile());
      if (isFile && IMAGE_EXTENSIONS.includes(extname(child.name).toLowerCase())) images.push(child.name);
      else skipped.push(child.name);
    }
    if (skipped.length > 0) {
      log.warn(`${folderPath}: skipping ${skipped.length} non-image entr${skipped.length === 1 ? 'y' : 'ies'} (${skipped.slice(0, 3).join(', ')}${skipped.length > 3 ? ', …' : ''}); only ${IMAGE_EXTENSIONS.join(' ')} are read`);
    }
    if (images.length === 0) {
      throw new FedtlError('BAD_DATA', `Class folder ${folderPath} holds no images (${IMAGE_EXTENSIONS.join(', ')}); add images or remove the folder.`);
    }
    const label = classNames.indexOf(folder);
    for (const name of images.sort(byCodePoint)) files.push({ path: join(folderPath, name), label });
  }

  const step = size * size * channels;
  const pixels = new Uint8Array(files.length * step);
  const labels = new Int32Array(files.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const i = next++;
      const file = files[i] as ImageFile;
      pixels.set(await decodeImage(file.path, size, channels, fit), i * step);
      labels[i] = file.label;
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, worker));
  log.debug(`decoded ${files.length} images from ${path} to ${size}x${size}x${channels} in ${Date.now() - started} ms`);
  return createDataset({
    name: options.name ?? path,
    examples: { kind: 'image', pixels, width: size, height: size, channels },
    labels,
    classNames,
  });
}
