/**
 * Benchmark: fedtl's wasm gradient kernels (`shared/tf/wasm-kernels/`) against tfjs's `cpu`
 * kernels, side by side in one run, and the training steps they make possible:
 *
 * - **kernels**: each gradient kernel on the shapes fedtl's bases and the small CNN use, wasm vs
 *   cpu (ms per call, speed-up, and the max abs difference of the outputs);
 * - **embedding gradient scaling**: `UnsortedSegmentSum` on wasm at a fixed number of tokens and a
 *   growing vocabulary (its time follows the tokens; cpu's loops over every vocabulary row), and a
 *   training step through a GloVe-sized (20,002 × 100) table on wasm;
 * - **training steps** (SGD, batch `--batch`): MobileNetV2's top two blocks at 96 px (the layers
 *   of `mobilenet-v2-96` from `block_15_expand` to `out_relu`, i.e. blocks 15 and 16 and the final
 *   1×1 convolution, with a 10-class dense head, on `[batch, 3, 3, 160]` inputs: the cut features),
 *   and a small CNN (two 3×3 convolutions with max pooling on 28×28×1, dense 10). Both backends
 *   start from the same weights; the weights after one step must agree.
 *
 * Target: the MobileNetV2 top-two-blocks step ≥ 10× faster on wasm than on cpu.
 * Backends alternate in blocks (wasm, cpu, wasm, cpu, …; `--blocks`), each block one untimed
 * warm-up call (it also moves the tensors to that backend) then `--calls` timed calls; the median
 * per backend is reported, so load on the machine hits both sides alike. A call that takes over a
 * second (cpu's filter gradients) is timed once. A default run takes a few minutes on 2 cores,
 * nearly all of it cpu.
 *
 * Run: `npm run bench:kernels [-- --batch 8] [--blocks 2] [--calls 3]`
 * Needs the `mobilenet-v2-96` base (`node bin/fedtl.js prepare-base mobilenet-v2-96`; built here if
 * missing). Writes `scripts/bench/results/kernels.json`; exits non-zero if wasm and cpu disagree.
 */
import * as tf from '@tensorflow/tfjs';
import { openBase } from '../../shared/bases/index.ts';
import { createRandom } from '../../shared/math/random.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { intListArg, median, parseArgs, printTable, round3, writeResults } from './bench-util.ts';

const args = parseArgs();
const batch = intListArg(args, 'batch')?.[0] ?? 8;
const blocks = intListArg(args, 'blocks')?.[0] ?? 2;
const calls = intListArg(args, 'calls')?.[0] ?? 3;
const TOLERANCE = 1e-3;

type Backend = 'wasm' | 'cpu';
type Shape4 = [number, number, number, number];

function random(shape: readonly number[], seed: number, scale = 1): tf.Tensor {
  const rng = createRandom(seed);
  return tf.tensor(Float32Array.from({ length: tf.util.sizeFromShape([...shape]) }, () => (rng.nextFloat() * 2 - 1) * scale), [...shape]);
}

/** A call slower than this is timed once: JIT warm-up is noise at that scale, and cpu's slowest kernels take seconds. */
const SLOW_MS = 1000;

/**
 * Times `run(state)` on both backends in alternating blocks (wasm, cpu, wasm, cpu, …); `prepare`
 * makes each backend's state once (inputs, models) and `dispose` reads what it needs and frees it. Each block makes one
 * untimed warm-up call (which also moves tensors to that backend) and then `calls` timed calls;
 * a warm-up slower than {@link SLOW_MS} is itself the one measurement of that backend.
 * Returns the median ms per call.
 */
async function sideBySide<S>(prepare: (backend: Backend) => S, run: (state: S) => void, dispose: (state: S, backend: Backend) => void): Promise<Record<Backend, number>> {
  const states = new Map<Backend, S>();
  const times: Record<Backend, number[]> = { wasm: [], cpu: [] };
  const slow = new Set<Backend>();
  for (let block = 0; block < blocks; block++) {
    for (const backend of ['wasm', 'cpu'] as const) {
      if (slow.has(backend)) continue;
      await selectBackend({ prefer: backend, log: false });
      if (!states.has(backend)) states.set(backend, prepare(backend));
      const state = states.get(backend)!;
      const start = performance.now();
      run(state);
      const warmUp = performance.now() - start;
      if (warmUp > SLOW_MS) {
        times[backend].push(warmUp);
        slow.add(backend);
        continue;
      }
      for (let i = 0; i < calls; i++) {
        const begin = performance.now();
        run(state);
        times[backend].push(performance.now() - begin);
      }
    }
  }
  for (const [backend, state] of states) dispose(state, backend);
  return { wasm: median(times.wasm), cpu: median(times.cpu) };
}

function maxAbs(values: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < values.length; i++) max = Math.max(max, Math.abs(values[i]!));
  return max;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

let failed = false;
function check(what: string, diff: number, scale: number): void {
  if (!(diff <= TOLERANCE * Math.max(1, scale))) {
    console.error(`MISMATCH ${what}: max abs difference wasm vs cpu ${diff} (scale ${scale})`);
    failed = true;
  }
}

// ---- kernels ----------------------------------------------------------------------------------
interface KernelCase {
  kernel: string;
  label: string;
  inputs: Record<string, { shape: number[]; dtype?: 'int32'; values?: Int32Array }>;
  attrs: Record<string, unknown>;
}

function convCases(label: string, x: Shape4, filter: Shape4, strides: number, pad: 'same' | 'valid', depthwise: boolean): KernelCase[] {
  const info = tf.backend_util.computeConv2DInfo(x, filter, strides, 1, pad, undefined, depthwise);
  const dy = { shape: info.outShape };
  if (depthwise) {
    return [
      { kernel: tf.DepthwiseConv2dNativeBackpropFilter, label, inputs: { x: { shape: x }, dy }, attrs: { strides, pad, dilations: 1, filterShape: filter } },
      { kernel: tf.DepthwiseConv2dNativeBackpropInput, label, inputs: { dy, filter: { shape: filter } }, attrs: { strides, pad, dilations: 1, inputShape: x } },
    ];
  }
  return [
    { kernel: tf.Conv2DBackpropFilter, label, inputs: { x: { shape: x }, dy }, attrs: { strides, pad, dataFormat: 'NHWC', filterShape: filter } },
    { kernel: tf.Conv2DBackpropInput, label, inputs: { dy, filter: { shape: filter } }, attrs: { strides, pad, dataFormat: 'NHWC', inputShape: x } },
  ];
}

const B = batch;
/** Tokens of a batch: 8 reviews × 256 tokens (the GloVe base's sequence length). */
const TOKENS = 2048;
/** cpu's kernel loops over every row of the table with a full pass over the tokens each time, so the side-by-side case is small. */
const CPU_TOKENS = 512;
const SMALL_VOCABULARY = 1000;
function segmentIds(tokens: number, vocabulary: number, seed: number): Int32Array {
  const rng = createRandom(seed);
  return Int32Array.from({ length: tokens }, () => rng.nextInt(vocabulary));
}
const KERNEL_CASES: KernelCase[] = [
  ...convCases('MobileNetV2 top block 1×1 expand 160→960 at 3×3', [B, 3, 3, 160], [1, 1, 160, 960], 1, 'same', false),
  ...convCases('MobileNetV2 Conv_1 1×1 320→1280 at 3×3', [B, 3, 3, 320], [1, 1, 320, 1280], 1, 'valid', false),
  ...convCases('MobileNetV2 top block depthwise 3×3 same, 960 ch at 3×3', [B, 3, 3, 960], [3, 3, 960, 1], 1, 'same', true),
  ...convCases('MobileNetV2 block_1 depthwise 3×3 stride 2 valid, 96 ch at 49×49', [B, 49, 49, 96], [3, 3, 96, 1], 2, 'valid', true),
  ...convCases('small CNN conv 3×3 same 1→32 at 28×28', [B, 28, 28, 1], [3, 3, 1, 32], 1, 'same', false),
  ...convCases('small CNN conv 3×3 same 32→64 at 14×14', [B, 14, 14, 32], [3, 3, 32, 64], 1, 'same', false),
  {
    kernel: tf.UnsortedSegmentSum,
    label: `embedding gradient: ${CPU_TOKENS} tokens × 100 d into ${SMALL_VOCABULARY} rows`,
    inputs: { x: { shape: [CPU_TOKENS, 100] }, segmentIds: { shape: [CPU_TOKENS], dtype: 'int32', values: segmentIds(CPU_TOKENS, SMALL_VOCABULARY, 5) } },
    attrs: { numSegments: SMALL_VOCABULARY },
  },
];

const kernelRows: Record<string, string | number>[] = [];
interface KernelState { inputs: tf.NamedTensorMap; output?: Float32Array }
for (const [index, c] of KERNEL_CASES.entries()) {
  const outputs: Partial<Record<Backend, Float32Array>> = {};
  const ms = await sideBySide<KernelState>(
    (backend) => {
      const inputs: tf.NamedTensorMap = {};
      for (const [name, spec] of Object.entries(c.inputs)) {
        inputs[name] = spec.dtype === 'int32' ? tf.tensor(spec.values!, spec.shape, 'int32') : random(spec.shape, 10 * index + name.length);
      }
      return { inputs };
    },
    (state) => {
      const out = tf.engine().runKernel(c.kernel, state.inputs, c.attrs as tf.NamedAttrMap) as tf.Tensor;
      // The first output of each backend is kept for the comparison.
      if (state.output === undefined) state.output = out.dataSync() as Float32Array;
      out.dispose();
    },
    (state, backend) => {
      outputs[backend] = state.output;
      tf.dispose(Object.values(state.inputs));
    },
  );
  const diff = maxAbsDiff(outputs.wasm!, outputs.cpu!);
  check(`${c.kernel} ${c.label}`, diff, maxAbs(outputs.cpu!));
  kernelRows.push({ kernel: c.kernel, case: c.label, wasmMs: round3(ms.wasm), cpuMs: round3(ms.cpu), speedup: round3(ms.cpu / ms.wasm), maxAbsDiff: Number(diff.toExponential(2)) });
  console.log(`${c.kernel} | ${c.label}: wasm ${round3(ms.wasm)} ms, cpu ${round3(ms.cpu)} ms`);
}

// ---- embedding gradient scaling (wasm) ----------------------------------------------------------
await selectBackend({ prefer: 'wasm', log: false });
const scalingRows: Record<string, string | number>[] = [];
for (const [tokens, vocabulary] of [[TOKENS, 1_000], [TOKENS, 20_002], [TOKENS, 400_000], [8 * TOKENS, 20_002]] as const) {
  const x = random([tokens, 100], 7);
  const ids = tf.tensor1d(segmentIds(tokens, vocabulary, 8), 'int32');
  const run = (): void => tf.unsortedSegmentSum(x, ids, vocabulary).dispose();
  run();
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const start = performance.now();
    run();
    times.push(performance.now() - start);
  }
  tf.dispose([x, ids]);
  scalingRows.push({ tokens, vocabulary, dims: 100, wasmMs: round3(median(times)) });
}

/**
 * A GloVe-sized table fine-tuned on wasm: 8 reviews × 256 tokens through a 20,002 × 100 embedding,
 * mean pooling and a dense head, SGD. wasm only: cpu's embedding gradient alone would take minutes.
 */
function embeddingStepMs(): number {
  const embedding = tf.layers.embedding({ inputDim: 20_002, outputDim: 100, embeddingsInitializer: tf.initializers.randomUniform({ minval: -0.05, maxval: 0.05, seed: 4 }) });
  const head = tf.layers.dense({ units: 2, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 5 }) });
  const tokens = tf.tensor2d(segmentIds(TOKENS, 20_002, 9), [TOKENS / 256, 256], 'int32');
  const labels = tf.tidy(() => tf.oneHot(tf.tensor1d(Array.from({ length: TOKENS / 256 }, (_, i) => i % 2), 'int32'), 2));
  const predict = () => head.apply(tf.mean(embedding.apply(tokens) as tf.Tensor, 1)) as tf.Tensor;
  tf.tidy(predict);
  const optimizer = tf.train.sgd(0.1);
  const step = (): void => {
    const loss = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(labels, predict()), true);
    loss?.dataSync();
    loss?.dispose();
  };
  step();
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const start = performance.now();
    step();
    times.push(performance.now() - start);
  }
  tf.dispose([tokens, labels]);
  optimizer.dispose();
  embedding.dispose();
  head.dispose();
  return median(times);
}
const embeddingStep = { model: `embedding 20,002 × 100 + mean + dense 2, ${TOKENS / 256} reviews × 256 tokens, SGD`, wasmMs: round3(embeddingStepMs()) };

// ---- training steps -----------------------------------------------------------------------------
/** A fresh copy of `layer` (own variables), built on `input` and holding `layer`'s weights. */
function copyLayer(layer: tf.layers.Layer, input: tf.SymbolicTensor | tf.SymbolicTensor[]): tf.SymbolicTensor {
  // tfjs's own way to clone a layer: its class's static fromConfig on its config (the static side
  // of a layer class is not in tfjs's public types, hence the cast).
  const cls = layer.constructor as unknown as { fromConfig(cls: unknown, config: tf.serialization.ConfigDict): tf.layers.Layer };
  const copy = cls.fromConfig(cls, layer.getConfig());
  const output = copy.apply(input) as tf.SymbolicTensor;
  copy.setWeights(layer.getWeights());
  copy.trainable = true;
  return output;
}

/**
 * The layers of `base` from `firstLayer` to its output, copied onto a new input (fresh variables
 * holding the base's pretrained weights), plus a dense head.
 */
function topOf(base: tf.LayersModel, firstLayer: string, classes: number): tf.LayersModel {
  const first = base.layers.findIndex((layer) => layer.name === firstLayer);
  if (first < 0) throw new Error(`${firstLayer} is not a layer of the base`);
  const cut = base.layers[first]!.inboundNodes[0]!.inboundLayers[0]!;
  const input = tf.input({ shape: (cut.output as tf.SymbolicTensor).shape.slice(1) as number[] });
  const outputs = new Map<string, tf.SymbolicTensor>([[cut.name, input]]);
  for (const layer of base.layers.slice(first)) {
    const inputs = layer.inboundNodes[0]!.inboundLayers.map((inbound) => {
      const tensor = outputs.get(inbound.name);
      if (!tensor) throw new Error(`${layer.name} reads ${inbound.name}, which is below the cut`);
      return tensor;
    });
    outputs.set(layer.name, copyLayer(layer, inputs.length === 1 ? inputs[0]! : inputs));
  }
  const features = outputs.get(base.layers.at(-1)!.name)!;
  const head = tf.layers.dense({ units: classes, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) });
  return tf.model({ inputs: input, outputs: head.apply(features) as tf.SymbolicTensor });
}

function smallCnn(): tf.LayersModel {
  const seed = (s: number) => tf.initializers.glorotUniform({ seed: s });
  const model = tf.sequential();
  model.add(tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 32, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: seed(1) }));
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  model.add(tf.layers.conv2d({ filters: 64, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: seed(2) }));
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  model.add(tf.layers.flatten());
  model.add(tf.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: seed(3) }));
  return model;
}

interface StepState { model: tf.LayersModel; x: tf.Tensor; y: tf.Tensor; optimizer: tf.Optimizer; afterFirstStep?: Float32Array[] }

async function trainingStep(name: string, build: () => tf.LayersModel, inputShape: number[]): Promise<Record<string, string | number>> {
  const initial = tf.tidy(() => {
    const model = build();
    const weights = model.getWeights().map((w) => w.dataSync().slice());
    model.dispose();
    return weights;
  });
  const after: Partial<Record<Backend, Float32Array[]>> = {};
  const ms = await sideBySide<StepState>(
    () => {
      const model = build();
      const weights = model.getWeights().map((w, i) => tf.tensor(initial[i]!, w.shape));
      model.setWeights(weights);
      tf.dispose(weights);
      const x = random([batch, ...inputShape], 3);
      const y = tf.tidy(() => tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 10), 'int32'), 10));
      return { model, x, y, optimizer: tf.train.sgd(0.05) };
    },
    (state) => {
      const { model, x, y, optimizer } = state;
      const loss = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor), true);
      loss?.dataSync();
      loss?.dispose();
      state.afterFirstStep ??= model.getWeights().map((w) => w.dataSync() as Float32Array);
    },
    (state, backend) => {
      after[backend] = state.afterFirstStep;
      tf.dispose([state.x, state.y]);
      state.optimizer.dispose();
      state.model.dispose();
    },
  );
  let diff = 0;
  let scale = 0;
  after.cpu!.forEach((w, i) => {
    diff = Math.max(diff, maxAbsDiff(w, after.wasm![i]!));
    scale = Math.max(scale, maxAbs(w));
  });
  check(`${name}: weights after one step`, diff, scale);
  console.log(`${name}: wasm ${round3(ms.wasm)} ms, cpu ${round3(ms.cpu)} ms per step`);
  return { model: name, batch, wasmMs: round3(ms.wasm), cpuMs: round3(ms.cpu), speedup: round3(ms.cpu / ms.wasm), maxAbsDiffAfterOneStep: Number(diff.toExponential(2)) };
}

const base = await openBase('mobilenet-v2-96');
const baseModel = base.model;
if (!baseModel) throw new Error('mobilenet-v2-96 loaded without a LayersModel');
const trainingRows = [
  await trainingStep('MobileNetV2-96 top two blocks (block_15, block_16, Conv_1) + dense 10', () => topOf(baseModel, 'block_15_expand', 10), [3, 3, 160]),
  await trainingStep('small CNN (2 conv 3×3 + max pool) on 28×28×1', smallCnn, [28, 28, 1]),
];
base.dispose();

const target = trainingRows[0]!;
const met = Number(target['speedup']) >= 10;
console.log('\nkernels (median ms per call)');
printTable(kernelRows);
console.log('\nembedding gradient on wasm (UnsortedSegmentSum)');
printTable(scalingRows);
console.log('\ntraining steps (median ms per step)');
printTable(trainingRows);
console.log(`${embeddingStep.model}: wasm ${embeddingStep.wasmMs} ms per step`);
console.log(`\ntarget: MobileNetV2-96 top-two-blocks step ≥ 10× faster on wasm: ${target['speedup']}× — ${met ? 'met' : 'missed'}`);

const path = writeResults('kernels', {
  config: { batch, blocks, calls, slowCallMs: SLOW_MS },
  kernels: kernelRows,
  embeddingGradientScaling: scalingRows,
  training: trainingRows,
  embeddingTrainingStep: embeddingStep,
  target: { measurement: 'MobileNetV2-96 top two blocks training step, wasm vs cpu', required: 10, speedup: target['speedup'], met },
  summary: [
    ...trainingRows.map((row) => ({
      measurement: `${row['model']}, batch ${batch}: training step`,
      result: `wasm ${row['wasmMs']} ms, cpu ${row['cpuMs']} ms`,
      ratio: `${row['speedup']}× faster on wasm`,
      target: row === target ? '≥ 10×' : '—',
      status: row === target ? (met ? 'met' : 'missed') : '—',
    })),
    { measurement: `${embeddingStep.model}: training step (wasm only)`, result: `wasm ${embeddingStep.wasmMs} ms`, ratio: '—' },
    ...kernelRows.map((row) => ({ measurement: `${row['kernel']}: ${row['case']}`, result: `wasm ${row['wasmMs']} ms, cpu ${row['cpuMs']} ms`, ratio: `${row['speedup']}×` })),
  ],
});
console.log(`wrote ${path}`);
if (failed) process.exitCode = 1;
