/**
 * The two hot loops of opening and summing updates, over float32 deltas, in WebAssembly SIMD when
 * the arrays live in a {@link KernelMemory}, and in plain JavaScript otherwise, with the very same
 * float64 operations in the very same order, so both give bit-identical results:
 * - {@link sumOfSquares}: Σ x² in float64 (the update envelope's range, finiteness and L2 checks);
 * - {@link foldQuad}: `acc[i] += (wa·a[i] + wb·b[i]) + (wc·c[i] + wd·d[i])` (an ingest worker's
 *   weighted sum, four deltas per pass).
 *
 * ## Why
 * V8 compiles these loops to scalar code, and they were a large share of what an ingest worker
 * spends on an update, beside SHA-256 and ChaCha20, which are native. WebAssembly's 128-bit SIMD
 * does two float64 lanes per instruction. Both paths are timed side by side on 1M values by
 * `npm run bench:delta-kernels` (scripts/bench/delta-kernels.ts, results/delta-kernels.json;
 * figures in README Performance).
 *
 * ## Same numbers on both paths
 * The SIMD sum keeps four two-lane accumulators over groups of eight values (lane j of accumulator
 * k takes value 8i + 2k + j) and combines them as ((acc0 + acc1) + (acc2 + acc3)), then lane 0 +
 * lane 1; the JavaScript version keeps the same eight sums and combines them in the same order.
 * The fold is elementwise, the same expression per element. Squares and products of float32
 * values promoted to float64 are the same IEEE operations in both, so the results are equal bit
 * for bit (`test/shared/math/delta-kernels.test.ts`). Whether an array lives in a kernel memory
 * therefore never changes a number, only the time.
 *
 * The module is hand-assembled below (no toolchain at build or run time): about 200 bytes, checked
 * by `WebAssembly.Module` when first used. Where WebAssembly SIMD is missing, everything runs in
 * JavaScript.
 */

// ---- the module, assembled ---------------------------------------------------------------------

const I32 = 0x7f;
const F64 = 0x7c;
const V128 = 0x7b;
const op = {
  block: 0x02,
  loop: 0x03,
  br: 0x0c,
  brIf: 0x0d,
  end: 0x0b,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  i32Const: 0x41,
  i32GeU: 0x4f,
  i32Add: 0x6a,
  i32Shl: 0x74,
  f64Add: 0xa0,
} as const;
/** SIMD instructions: the 0xfd prefix and the instruction's LEB128 number. */
const simd = {
  load: [0xfd, 0x00],
  store: [0xfd, 0x0b],
  shuffle: [0xfd, 0x0d],
  f64x2Splat: [0xfd, 0x14],
  f64x2ExtractLane: [0xfd, 0x21],
  load64Zero: [0xfd, 0x5d],
  f64x2PromoteLowF32x4: [0xfd, 0x5f],
  f64x2Add: [0xfd, 0xf0, 0x01],
  f64x2Mul: [0xfd, 0xf2, 0x01],
} as const;

function uleb(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    out.push(byte);
  } while (value !== 0);
  return out;
}
const name = (s: string): number[] => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const get = (i: number): number[] => [op.localGet, i];
const set = (i: number): number[] => [op.localSet, i];
/** A memory access's alignment hint (log2 bytes) and offset. */
const memarg = (align: number, offset: number): number[] => [align, ...uleb(offset)];

/**
 * `sumsq(ptr, n) → f64`: Σ x² of the n float32 values at byte `ptr`, n a multiple of 8.
 * Locals: 0 ptr, 1 n, 2 end, 3–6 acc0–acc3, 7 four loaded values, 8 two promoted values.
 */
function sumsqBody(): number[] {
  // acc_k += p·p for the promoted pair p left on the stack.
  const square = (acc: number) => [...simd.f64x2PromoteLowF32x4, op.localTee, 8, ...get(8), ...simd.f64x2Mul, ...get(acc), ...simd.f64x2Add, ...set(acc)];
  const high = [...get(7), ...get(7), ...simd.shuffle, 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15];
  const code = [
    ...get(0), ...get(1), op.i32Const, 2, op.i32Shl, op.i32Add, ...set(2),
    op.block, 0x40, op.loop, 0x40,
    ...get(0), ...get(2), op.i32GeU, op.brIf, 1,
    ...get(0), ...simd.load, ...memarg(2, 0), ...set(7), ...get(7), ...square(3), ...high, ...square(4),
    ...get(0), ...simd.load, ...memarg(2, 16), ...set(7), ...get(7), ...square(5), ...high, ...square(6),
    ...get(0), op.i32Const, 32, op.i32Add, ...set(0),
    op.br, 0, op.end, op.end,
    ...get(3), ...get(4), ...simd.f64x2Add, ...get(5), ...get(6), ...simd.f64x2Add, ...simd.f64x2Add, op.localTee, 7,
    ...simd.f64x2ExtractLane, 0, ...get(7), ...simd.f64x2ExtractLane, 1, op.f64Add,
    op.end,
  ];
  return [...vec([[1, I32], [6, V128]]), ...code];
}

/**
 * `fold4(acc, a, b, c, d, n, wa, wb, wc, wd)`: `acc[i] += (wa·a[i] + wb·b[i]) + (wc·c[i] + wd·d[i])`
 * for n (even) float64 `acc` values and float32 `a`–`d` at those byte addresses. Locals: 0 acc,
 * 1–4 a–d, 5 n, 6–9 the weights, 10 end, 11–14 the weights splatted.
 */
function fold4Body(): number[] {
  const term = (ptr: number, weight: number) => [...get(ptr), ...simd.load64Zero, ...memarg(3, 0), ...simd.f64x2PromoteLowF32x4, ...get(weight), ...simd.f64x2Mul];
  const advance = (ptr: number, by: number) => [...get(ptr), op.i32Const, by, op.i32Add, ...set(ptr)];
  const code = [
    ...[6, 7, 8, 9].flatMap((w) => [...get(w), ...simd.f64x2Splat, ...set(w + 5)]),
    ...get(0), ...get(5), op.i32Const, 3, op.i32Shl, op.i32Add, ...set(10),
    op.block, 0x40, op.loop, 0x40,
    ...get(0), ...get(10), op.i32GeU, op.brIf, 1,
    ...get(0),
    ...get(0), ...simd.load, ...memarg(3, 0),
    ...term(1, 11), ...term(2, 12), ...simd.f64x2Add,
    ...term(3, 13), ...term(4, 14), ...simd.f64x2Add,
    ...simd.f64x2Add, ...simd.f64x2Add,
    ...simd.store, ...memarg(3, 0),
    ...advance(0, 16), ...advance(1, 8), ...advance(2, 8), ...advance(3, 8), ...advance(4, 8),
    op.br, 0, op.end, op.end,
    op.end,
  ];
  return [...vec([[1, I32], [4, V128]]), ...code];
}

function moduleBytes(): Uint8Array {
  const body = (code: number[]) => [...uleb(code.length), ...code];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([
      [0x60, ...vec([[I32], [I32]]), ...vec([[F64]])],
      [0x60, ...vec([[I32], [I32], [I32], [I32], [I32], [I32], [F64], [F64], [F64], [F64]]), 0x00],
    ])),
    ...section(3, vec([[0], [1]])),
    ...section(5, vec([[0x00, 1]])),
    ...section(7, vec([[...name('memory'), 0x02, 0], [...name('sumsq'), 0x00, 0], [...name('fold4'), 0x00, 1]])),
    ...section(10, vec([body(sumsqBody()), body(fold4Body())])),
  ]);
}

/**
 * The slice of the WebAssembly API used here, typed locally: the compiler's `lib` (ES2023, no DOM)
 * does not declare the `WebAssembly` global, which every engine fedtl runs on has.
 */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { readonly exports: unknown };
}
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
const wasmApi = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;

interface Exports {
  memory: WasmMemory;
  sumsq(ptr: number, n: number): number;
  fold4(acc: number, a: number, b: number, c: number, d: number, n: number, wa: number, wb: number, wc: number, wd: number): void;
}

let compiled: object | null | undefined;
function kernelModule(): object | null {
  if (compiled === undefined) {
    try {
      compiled = wasmApi === undefined ? null : new wasmApi.Module(moduleBytes());
    } catch {
      compiled = null; // no WebAssembly SIMD here: everything runs in JavaScript
    }
  }
  return compiled;
}

/** The live kernel memories, by their current buffer (a grown memory has a new one). */
const byBuffer = new WeakMap<ArrayBufferLike, Exports>();

const PAGE_BYTES = 65536;
/** Wasm32 addresses: stay well inside what every engine grants. */
const MAX_KERNEL_BYTES = 2 ** 31;

/**
 * A WebAssembly memory to place float32 deltas and float64 sums in, so that {@link sumOfSquares}
 * and {@link foldQuad} run on them in SIMD. One per thread that needs it (an ingest worker). Views
 * into it are valid until the next {@link KernelMemory.reserve} that grows it.
 */
export class KernelMemory {
  readonly #exports: Exports;

  private constructor(exports: Exports) {
    this.#exports = exports;
    byBuffer.set(exports.memory.buffer, exports);
  }

  /** A kernel memory, or `null` where WebAssembly SIMD is not available (then plain arrays do the same work). */
  static create(): KernelMemory | null {
    const module = kernelModule();
    if (module === null || wasmApi === undefined) return null;
    let instance: { readonly exports: unknown };
    try {
      instance = new wasmApi.Instance(module);
    } catch {
      // Its memory could not be set up (for example an address-space limit): plain arrays do the same work.
      return null;
    }
    return new KernelMemory(instance.exports as Exports);
  }

  /** The memory's bytes (its buffer changes when it grows). */
  get buffer(): ArrayBuffer {
    return this.#exports.memory.buffer;
  }

  /**
   * Makes the memory at least `bytes` long; false when that is more than a kernel memory holds or
   * the engine cannot grow it (then use plain arrays: the caller's own data is not at fault).
   * Growing invalidates every earlier view; a failed growth leaves the memory and its views as they were.
   */
  reserve(bytes: number): boolean {
    if (bytes > MAX_KERNEL_BYTES) return false;
    const memory = this.#exports.memory;
    const before = memory.buffer;
    const have = before.byteLength;
    if (bytes <= have) return true;
    try {
      memory.grow(Math.ceil((bytes - have) / PAGE_BYTES));
    } catch {
      // A RangeError when the pages cannot be committed: the old buffer is still live and registered.
      return false;
    }
    byBuffer.delete(before);
    byBuffer.set(memory.buffer, this.#exports);
    return true;
  }
}

/** The kernel whose memory every one of `views` lives in, if they all live in the same one. */
function kernelOf(first: ArrayBufferView, ...rest: ArrayBufferView[]): Exports | undefined {
  const kernel = byBuffer.get(first.buffer);
  return kernel !== undefined && rest.every((view) => view.buffer === first.buffer) ? kernel : undefined;
}

/**
 * True when all of `views` live in one {@link KernelMemory} as it is now, which is exactly when
 * {@link sumOfSquares} (one view) and {@link foldQuad} (its five arrays) run them in SIMD: both
 * decide by this same test. False for plain arrays and for views detached by a growth.
 */
export function inKernelMemory(first: ArrayBufferView, ...rest: ArrayBufferView[]): boolean {
  return kernelOf(first, ...rest) !== undefined;
}

/** Σ x² over the values at indices [from, to), with eight accumulators combined as the SIMD lanes are (see the module doc). */
function sumOfSquaresJs(values: Float32Array, from: number, to: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let s4 = 0;
  let s5 = 0;
  let s6 = 0;
  let s7 = 0;
  // The index is the last of the eight reads and is compared with the bound directly, a form V8
  // compiles without per-read bounds checks.
  let i = from + 7;
  for (; i < to; i += 8) {
    const a = values[i - 7]!;
    const b = values[i - 6]!;
    const c = values[i - 5]!;
    const d = values[i - 4]!;
    const e = values[i - 3]!;
    const f = values[i - 2]!;
    const g = values[i - 1]!;
    const h = values[i]!;
    s0 += a * a;
    s1 += b * b;
    s2 += c * c;
    s3 += d * d;
    s4 += e * e;
    s5 += f * f;
    s6 += g * g;
    s7 += h * h;
  }
  return (s0 + s2 + (s4 + s6)) + (s1 + s3 + (s5 + s7));
}

/**
 * Σ x² of `values` in float64: in SIMD when they live in a {@link KernelMemory}, else in
 * JavaScript, bit for bit the same. A float32 squared is exact in float64, so the result is a
 * rounded sum of exact, non-negative terms (the update envelope's range proof relies on that).
 */
export function sumOfSquares(values: Float32Array): number {
  const n = values.length;
  const bulk = n - (n % 8);
  const kernel = kernelOf(values);
  let sum = kernel !== undefined && bulk > 0 ? kernel.sumsq(values.byteOffset, bulk) : sumOfSquaresJs(values, 0, bulk);
  for (let i = bulk; i < n; i++) {
    const x = values[i]!;
    sum += x * x;
  }
  return sum;
}

/**
 * `acc[i] += (wa·a[i] + wb·b[i]) + (wc·c[i] + wd·d[i])` for every i: in SIMD when all five arrays
 * live in the same {@link KernelMemory}, else in JavaScript, bit for bit the same. All must have
 * `acc.length` values.
 */
export function foldQuad(acc: Float64Array, a: Float32Array, wa: number, b: Float32Array, wb: number, c: Float32Array, wc: number, d: Float32Array, wd: number): void {
  const n = acc.length;
  // The SIMD loop reads n values of each input from the kernel memory, where a shorter view would
  // read its neighbour's bytes instead of failing: refuse a mismatch up front on both paths.
  if (a.length !== n || b.length !== n || c.length !== n || d.length !== n) {
    throw new RangeError(`foldQuad: every delta must have the sum's ${n} values, got ${a.length}, ${b.length}, ${c.length}, ${d.length}`);
  }
  let from = 0;
  const kernel = kernelOf(acc, a, b, c, d);
  if (kernel !== undefined) {
    from = n - (n % 2);
    kernel.fold4(acc.byteOffset, a.byteOffset, b.byteOffset, c.byteOffset, d.byteOffset, from, wa, wb, wc, wd);
  }
  for (let i = from; i < n; i++) acc[i] = acc[i]! + ((wa * a[i]! + wb * b[i]!) + (wc * c[i]! + wd * d[i]!));
}
