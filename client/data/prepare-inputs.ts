/**
 * Turns a batch of a dataset's raw examples into the flat input a frozen base expects.
 *
 * Output is plain typed arrays plus a shape, with no tensor library involved, so this runs (and
 * is tested) anywhere; the caller wraps it with `tf.tensor(data, shape)` inside its own scope.
 * Text stays as strings: tokenization belongs to the text base (`shared/bases/tokenizer.ts`).
 */
import { FedtlError } from '../../shared/core/errors.ts';
import type { BaseInputSpec, ImageInputSpec } from '../../shared/model/frozen-base.ts';
import type { ImageExamples, LabeledDataset, RawExamples } from './dataset.ts';

export type PreparedInputs =
  | { kind: 'text'; texts: string[] }
  /** Pixels scaled into the base's range, shape `[n, size, size, channels]`. */
  | { kind: 'image'; data: Float32Array; shape: [number, number, number, number] }
  /** Rows, shape `[n, rowSize]`. */
  | { kind: 'tensor'; data: Float32Array; shape: [number, number] };

export interface PrepareInputsOptions {
  /** Examples to prepare, in order. Overrides `start`/`end`. @default start..end */
  indices?: ArrayLike<number>;
  /** First example of a contiguous batch. @default 0 */
  start?: number;
  /** One past the last example of a contiguous batch. @default dataset.size */
  end?: number;
}

/**
 * Sampling plan of a 1-D bilinear resize with half-pixel centres: output pixel `o` samples the
 * input at `(o + 0.5) · in/out − 0.5`, clamped to the edges. This is the convention of
 * `tf.image.resizeBilinear(…, halfPixelCenters=true)`, OpenCV and PIL when upscaling, and maps
 * a size onto itself exactly. (Downscaling by large factors aliases; loaders resize photographs
 * with sharp instead, this path serves 28×28 digits going up.)
 */
export interface LinearPlan {
  lo: Int32Array;
  hi: Int32Array;
  /** Weight of `hi`; `lo` gets `1 − weight`. */
  weight: Float32Array;
}

export function linearPlan(inSize: number, outSize: number): LinearPlan {
  const lo = new Int32Array(outSize);
  const hi = new Int32Array(outSize);
  const weight = new Float32Array(outSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const source = Math.min(Math.max((o + 0.5) * scale - 0.5, 0), inSize - 1);
    const low = Math.floor(source);
    lo[o] = low;
    hi[o] = Math.min(low + 1, inSize - 1);
    weight[o] = source - low;
  }
  return { lo, hi, weight };
}

/**
 * Resizes 8-bit images `[n, h, w, c]` (given by `indices`) to `[n, size, size, spec.channels]`
 * and maps each value v ∈ [0, 255] to `low + v/255 · (high − low)`. One input channel is
 * repeated to fill several; three channels become one by Rec. 601 luma (as
 * `tf.image.rgbToGrayscale`).
 */
export function prepareImageBatch(images: ImageExamples, spec: ImageInputSpec, indices: ArrayLike<number>): Float32Array {
  const { width, height, channels: inChannels } = images;
  const { size, channels: outChannels } = spec;
  const [low, high] = spec.range;
  if (!(inChannels === outChannels || inChannels === 1 || (inChannels === 3 && outChannels === 1))) {
    throw new FedtlError('BAD_SHAPE', `Cannot turn ${inChannels}-channel images into the ${outChannels} channels the base expects; reload the images with ${outChannels} channels.`);
  }
  const rows = linearPlan(height, size);
  const cols = linearPlan(width, size);
  const scale = (high - low) / 255;
  const step = width * height * inChannels;
  const out = new Float32Array(indices.length * size * size * outChannels);
  const values = new Float32Array(inChannels);
  let o = 0;
  for (let n = 0; n < indices.length; n++) {
    const base = (indices[n] as number) * step;
    for (let y = 0; y < size; y++) {
      const y0 = base + (rows.lo[y] as number) * width * inChannels;
      const y1 = base + (rows.hi[y] as number) * width * inChannels;
      const wy = rows.weight[y] as number;
      for (let x = 0; x < size; x++) {
        const x0 = (cols.lo[x] as number) * inChannels;
        const x1 = (cols.hi[x] as number) * inChannels;
        const wx = cols.weight[x] as number;
        for (let c = 0; c < inChannels; c++) {
          const p = images.pixels;
          const top = (p[y0 + x0 + c] as number) * (1 - wx) + (p[y0 + x1 + c] as number) * wx;
          const bottom = (p[y1 + x0 + c] as number) * (1 - wx) + (p[y1 + x1 + c] as number) * wx;
          values[c] = top * (1 - wy) + bottom * wy;
        }
        if (inChannels === outChannels) {
          for (let c = 0; c < outChannels; c++) out[o++] = low + (values[c] as number) * scale;
        } else if (inChannels === 1) {
          const v = low + (values[0] as number) * scale;
          for (let c = 0; c < outChannels; c++) out[o++] = v;
        } else {
          out[o++] = low + (0.299 * (values[0] as number) + 0.587 * (values[1] as number) + 0.114 * (values[2] as number)) * scale;
        }
      }
    }
  }
  return out;
}

function describeExamples(examples: RawExamples): string {
  switch (examples.kind) {
    case 'text':
      return 'text examples';
    case 'image':
      return `image examples (${examples.height}x${examples.width}x${examples.channels})`;
    case 'tensor':
      return `tensor examples (rows of ${examples.rowSize})`;
  }
}

function resolveIndices(dataset: LabeledDataset, options: PrepareInputsOptions): ArrayLike<number> {
  if (options.indices) {
    for (let i = 0; i < options.indices.length; i++) {
      const index = options.indices[i] as number;
      if (!Number.isInteger(index) || index < 0 || index >= dataset.size) {
        throw new FedtlError('BAD_DATA', `prepareInputs on '${dataset.name}': index ${index} is outside 0..${dataset.size - 1}.`);
      }
    }
    return options.indices;
  }
  const start = options.start ?? 0;
  const end = options.end ?? dataset.size;
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > dataset.size || start > end) {
    throw new FedtlError('BAD_DATA', `prepareInputs on '${dataset.name}': batch ${start}..${end} is not within 0..${dataset.size}.`);
  }
  const range = new Uint32Array(end - start);
  for (let i = 0; i < range.length; i++) range[i] = start + i;
  return range;
}

/**
 * Prepares a batch of `dataset` for a base with input `spec`.
 *
 * | examples | spec     | result |
 * |----------|----------|--------|
 * | image    | image    | resized, channel-matched, scaled into `spec.range` |
 * | image    | tensor   | flattened pixels / 255 (needs h·w·c = `spec.size`, e.g. 784 for the identity base) |
 * | tensor   | tensor   | the rows (needs rowSize = `spec.size`) |
 * | text     | text     | the strings, for the base's tokenizer |
 *
 * @example
 * const batch = prepareInputs(mnistTest, mobilenet.input, { start: 0, end: 32 });
 * const x = tf.tensor4d(batch.data, batch.shape); // after narrowing batch.kind === 'image'
 */
export function prepareInputs(dataset: LabeledDataset, spec: BaseInputSpec, options: PrepareInputsOptions = {}): PreparedInputs {
  const indices = resolveIndices(dataset, options);
  const examples = dataset.examples;
  const mismatch = (): never => {
    throw new FedtlError(
      'BAD_DATA',
      `Dataset '${dataset.name}' holds ${describeExamples(examples)} but the base expects ${spec.kind} input` +
        (spec.kind === 'tensor' ? ` rows of ${spec.size}` : '') +
        '; choose a base that matches the data (--base) or load the data in the other format.',
    );
  };
  switch (spec.kind) {
    case 'text': {
      if (examples.kind !== 'text') return mismatch();
      return { kind: 'text', texts: Array.from(indices, (i) => examples.texts[i] as string) };
    }
    case 'image': {
      if (examples.kind !== 'image') return mismatch();
      const data = prepareImageBatch(examples, spec, indices);
      return { kind: 'image', data, shape: [indices.length, spec.size, spec.size, spec.channels] };
    }
    case 'tensor': {
      if (examples.kind === 'text') return mismatch();
      const rowSize = examples.kind === 'tensor' ? examples.rowSize : examples.width * examples.height * examples.channels;
      if (rowSize !== spec.size) return mismatch();
      const data = new Float32Array(indices.length * rowSize);
      for (let n = 0; n < indices.length; n++) {
        const from = (indices[n] as number) * rowSize;
        if (examples.kind === 'tensor') data.set(examples.rows.subarray(from, from + rowSize), n * rowSize);
        else for (let k = 0; k < rowSize; k++) data[n * rowSize + k] = (examples.pixels[from + k] as number) / 255;
      }
      return { kind: 'tensor', data, shape: [indices.length, rowSize] };
    }
  }
}
