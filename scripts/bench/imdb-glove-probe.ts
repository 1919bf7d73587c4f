/**
 * A probe of imdb-glove's centralized fine-tuning, one knob at a time: the preset's model (mean of
 * GloVe rows over the padded length, parameter-free layer normalization, a softmax head) trained on
 * the preset's split with Adam, written out in plain JS (the TF.js path builds a batch × rows matrix
 * per step, minutes per epoch on a loaded machine; this takes seconds). Same math as
 * `centralizedFineTuning`: a head-only stage, then the table too, each stage a fresh Adam; a dense
 * Adam over the table, as tfjs applies it. Checked against the TF.js path on seed 42 (3 head epochs,
 * then 17 with the table at ×1): head epochs 68.3 / 72.5 / 52.6 % here against 70.1 / 73.2 / 52.8 %
 * there, then 81.5–82.3 % against 80.9–82.3 %. Prints test accuracy (and loss) after every epoch.
 *
 * Usage: node --import tsx scripts/bench/imdb-glove-probe.ts [he=3] [te=17] [lr=0.02] [mult=1]
 *   [len=256] [b=32] [drop=0] [lazy=0] [vocab=20000] [sif=0] [idf=0] [seed=42]
 * (he/te: head-only and table epochs; mult: the table's learning-rate multiplier; len: tokens kept
 * per review, the base's sequence length; drop: token dropout in the table stage; lazy=1: Adam
 * updates only the rows of the batch's words; vocab: GloVe words in the table, read from the wink
 * file when not the base's 20,000; sif=a: each word weighted a / (a + p(w)) inside the mean, p from
 * Zipf's law over GloVe's frequency order (Arora, Liang & Ma 2017); idf=1: weighted by its idf over
 * the training reviews instead. Weights do not combine with drop.)
 */
import { tokenize } from '../../shared/bases/tokenizer.ts';
import { createRandom } from '../../shared/math/random.ts';
import { loadImdbGloveProbe, probeArgs, type Doc } from './imdb-glove-probe-setup.ts';

const num = probeArgs();
const lr = num('lr', 0.02);
const mult = num('mult', 1);
const headEpochs = num('he', 3);
const tableEpochs = num('te', 17);
const seqLen = num('len', 256);
const B = num('b', 32);
const drop = num('drop', 0);
const seed = num('seed', 42);
const lazy = num('lazy', 0);
const D = 100;
const sif = num('sif', 0);
const idf = num('idf', 0);

const { train: trainData, test: testData, table, docOf } = await loadImdbGloveProbe(seed, seqLen, num('vocab', 20_000));

// How much of the training reviews the sequence length cuts.
const lengths = trainData.texts.map((text) => tokenize(text).length);
const tokens = lengths.reduce((a, b) => a + b, 0);
const kept = lengths.reduce((a, b) => a + Math.min(b, seqLen), 0);
console.log(`training reviews longer than ${seqLen} tokens: ${((100 * lengths.filter((n) => n > seqLen).length) / lengths.length).toFixed(1)} %; tokens cut: ${((100 * (tokens - kept)) / tokens).toFixed(1)} %; median length ${[...lengths].sort((a, b) => a - b)[lengths.length >> 1]}`);
const train = trainData.texts.map((text, i) => docOf(text, trainData.labels[i]!));
const test = testData.texts.map((text, i) => docOf(text, testData.labels[i]!));
// Per-word weights inside the mean: SIF a/(a + p(w)) with p from Zipf's law over GloVe's frequency
// order (id 2 is rank 1), or idf from the training reviews.
const rows = table.length / D;
const wordWeight = new Float32Array(rows).fill(1);
if (sif > 0) {
  const harmonic = Math.log(400_000) + 0.5772;
  for (let id = 2; id < rows; id++) wordWeight[id] = sif / (sif + 1 / ((id - 1) * harmonic));
}
if (idf > 0) {
  const df = new Float64Array(rows);
  for (const doc of train) for (const id of doc.ids) df[id]!++;
  for (let id = 0; id < rows; id++) wordWeight[id] = Math.log((1 + train.length) / (1 + df[id]!)) + 1;
}
for (const doc of [...train, ...test]) for (let k = 0; k < doc.ids.length; k++) doc.counts[k]! *= wordWeight[doc.ids[k]!]!;

const rand = createRandom(`${seed}-init`);
const limit = Math.sqrt(6 / (D + 2));
const W = Float32Array.from({ length: D * 2 }, () => (rand.nextFloat() * 2 - 1) * limit);
const bias = new Float32Array(2);

class Adam {
  m: Float32Array;
  v: Float32Array;
  t = 0;
  constructor(n: number, readonly lr: number) {
    this.m = new Float32Array(n);
    this.v = new Float32Array(n);
  }
  step(w: Float32Array, g: Float32Array, rows?: Set<number>) {
    this.t++;
    const b1 = 0.9, b2 = 0.999, eps = 1e-7;
    const a = (this.lr * Math.sqrt(1 - b2 ** this.t)) / (1 - b1 ** this.t);
    const upd = (i: number) => {
      this.m[i] = b1 * this.m[i]! + (1 - b1) * g[i]!;
      this.v[i] = b2 * this.v[i]! + (1 - b2) * g[i]! * g[i]!;
      w[i]! -= (a * this.m[i]!) / (Math.sqrt(this.v[i]!) + eps);
    };
    if (rows) {
      for (const r of rows) for (let d = 0; d < D; d++) upd(r * D + d);
    } else for (let i = 0; i < w.length; i++) upd(i);
  }
}

function forward(ids: Int32Array, counts: Float32Array) {
  const m = new Float64Array(D);
  for (let k = 0; k < ids.length; k++) {
    const o = ids[k]! * D, c = counts[k]! / seqLen;
    for (let d = 0; d < D; d++) m[d]! += c * table[o + d]!;
  }
  let mu = 0;
  for (let d = 0; d < D; d++) mu += m[d]!;
  mu /= D;
  let v = 0;
  for (let d = 0; d < D; d++) v += (m[d]! - mu) ** 2;
  v /= D;
  const s = 1 / Math.sqrt(v + 1e-12);
  const z = new Float64Array(D);
  for (let d = 0; d < D; d++) z[d] = (m[d]! - mu) * s;
  const l = [bias[0]!, bias[1]!];
  for (let d = 0; d < D; d++) {
    l[0]! += z[d]! * W[d * 2]!;
    l[1]! += z[d]! * W[d * 2 + 1]!;
  }
  const mx = Math.max(l[0]!, l[1]!);
  const e0 = Math.exp(l[0]! - mx), e1 = Math.exp(l[1]! - mx);
  return { z, s, p: [e0 / (e0 + e1), e1 / (e0 + e1)] };
}

function accuracy(docs: Doc[]): [number, number] {
  let c = 0, loss = 0;
  for (const doc of docs) {
    const { p } = forward(doc.ids, doc.counts);
    if ((p[1]! > p[0]! ? 1 : 0) === doc.label) c++;
    loss -= Math.log(Math.max(1e-7, p[doc.label]!));
  }
  return [c / docs.length, loss / docs.length];
}

function epochs(n: number, trainTable: boolean, epochSeed: number, log: string[]) {
  const headOpt = new Adam(W.length + 2, lr);
  const tableOpt = trainTable ? new Adam(table.length, lr * mult) : null;
  const rng = createRandom(epochSeed);
  const dropRng = createRandom(`${epochSeed}-augment`);
  const order = new Int32Array(train.length).map((_, i) => i);
  const gHead = new Float32Array(W.length + 2);
  const gTable = trainTable ? new Float32Array(table.length) : null;
  const hw = new Float32Array(W.length + 2);
  for (let e = 0; e < n; e++) {
    rng.shuffle(order);
    for (let start = 0; start < order.length; start += B) {
      gHead.fill(0);
      const touched = new Set<number>();
      for (let i = start; i < Math.min(order.length, start + B); i++) {
        const doc = train[order[i]!]!;
        let counts = doc.counts;
        if (drop > 0 && trainTable) {
          counts = counts.map((c) => {
            let kept = 0;
            for (let j = 0; j < c; j++) if (dropRng.nextFloat() >= drop) kept++;
            return kept;
          });
        }
        const { z, s, p } = forward(doc.ids, counts);
        const dl = [p[0]! - (doc.label === 0 ? 1 : 0), p[1]! - (doc.label === 1 ? 1 : 0)].map((x) => x / B);
        const dz = new Float64Array(D);
        for (let d = 0; d < D; d++) {
          gHead[d * 2]! += z[d]! * dl[0]!;
          gHead[d * 2 + 1]! += z[d]! * dl[1]!;
          dz[d] = W[d * 2]! * dl[0]! + W[d * 2 + 1]! * dl[1]!;
        }
        gHead[D * 2]! += dl[0]!;
        gHead[D * 2 + 1]! += dl[1]!;
        if (gTable) {
          let mdz = 0, mdzz = 0;
          for (let d = 0; d < D; d++) {
            mdz += dz[d]!;
            mdzz += dz[d]! * z[d]!;
          }
          mdz /= D;
          mdzz /= D;
          for (let k = 0; k < doc.ids.length; k++) {
            const c = counts[k]! / seqLen;
            if (c === 0) continue;
            const o = doc.ids[k]! * D;
            touched.add(doc.ids[k]!);
            for (let d = 0; d < D; d++) gTable[o + d]! += c * s * (dz[d]! - mdz - z[d]! * mdzz);
          }
        }
      }
      hw.set(W);
      hw[D * 2] = bias[0]!;
      hw[D * 2 + 1] = bias[1]!;
      headOpt.step(hw, gHead);
      W.set(hw.subarray(0, D * 2));
      bias[0] = hw[D * 2]!;
      bias[1] = hw[D * 2 + 1]!;
      if (tableOpt && gTable) {
        tableOpt.step(table, gTable, lazy ? touched : undefined);
        if (lazy) for (const r of touched) gTable.fill(0, r * D, (r + 1) * D);
        else gTable.fill(0);
      }
    }
    const [acc, loss] = accuracy(test);
    log.push(`${(acc * 100).toFixed(1)}(${loss.toFixed(2)})`);
  }
}

const t0 = Date.now();
const log: string[] = [];
if (headEpochs > 0) epochs(headEpochs, false, seed, log);
log.push('|');
epochs(tableEpochs, true, seed + 1, log);
console.log(`${process.argv.slice(2).join(' ')} || ${log.join(' ')} | ${((Date.now() - t0) / 1000).toFixed(0)} s`);
process.exit(0);
