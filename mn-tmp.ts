import * as tf from '@tensorflow/tfjs';
import { selectBackend } from './shared/tf/index.ts';
import { fileLoadHandler } from './shared/model/base-loader.ts';
const backend = (process.argv[2] as any) ?? 'wasm';
await selectBackend({prefer: backend, log:false});
const base = await tf.loadLayersModel(fileLoadHandler('.fedtl-cache/mobilenet-v2-96'));
const first = base.layers.findIndex(l => l.name === 'block_15_expand');
const cutIn = base.layers[first]!.inboundNodes[0]!.inboundLayers[0]!.name;
const input = tf.input({shape: (base.getLayer(cutIn).output as tf.SymbolicTensor).shape.slice(1) as number[]});
const out = new Map<string, tf.SymbolicTensor>([[cutIn, input]]);
for (const layer of base.layers.slice(first)) {
  const ins = layer.inboundNodes[0]!.inboundLayers.map(l => out.get(l.name)!);
  layer.trainable = true;
  out.set(layer.name, layer.apply(ins.length === 1 ? ins[0]! : ins) as tf.SymbolicTensor);
}
const feat = out.get(base.layers.at(-1)!.name)!;
const model = tf.model({inputs: input, outputs: tf.layers.dense({units: 10, activation:'softmax'}).apply(feat) as tf.SymbolicTensor});
const N = 32;
const x = tf.randomUniform([N, ...input.shape.slice(1) as number[]]);
const y = tf.oneHot(tf.randomUniform([N], 0, 10, 'int32'), 10);
const opt = tf.train.sgd(0.01);
const step = () => { const l = opt.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, {training: true}) as tf.Tensor), true)!; l.dataSync(); l.dispose(); };
step();
const reps = backend === 'cpu' ? 1 : 10;
let t = performance.now(); for (let i=0;i<reps;i++) step();
console.log(backend, 'top-2 step ms', (performance.now()-t)/reps, 'trainable', model.trainableWeights.length);
if (process.argv[3]) { const p = await tf.profile(step); const agg = new Map<string, number>(); for (const k of p.kernels) agg.set(k.name, (agg.get(k.name)??0) + (k.kernelTimeMs as number)); console.log([...agg].sort((a,b)=>b[1]-a[1]).slice(0,15)); }
