/**
 * A probe of imdb-glove's fine-tuning federation, to compare recipes quickly: the preset's 20
 * clients on its Dirichlet-0.5 split, FedAvg weighted by examples, each client E epochs of Adam from
 * the global model (a fresh optimizer every round, as clients do), head-only rounds, then the
 * GloVe table too; the model and its math as in scripts/bench/imdb-glove-probe.ts (plain JS). Not
 * the simulator: the clients' crash draws and shuffles are its own, so rounds do not repeat the
 * simulator's one for one (the preset's recipe: 79.1 % after 30 rounds here, 79.7 % there).
 * Prints test accuracy after every round.
 *
 * Usage: node --import tsx scripts/bench/imdb-glove-federation-probe.ts [hr=4] [r=30] [e=2] [b=32]
 *   [lr=0.02] [mult=1] [decay=0] [drop=0] [len=256] [avg=0] [hmult=1] [tsgd=0] [sp=0] [val=0]
 *   [patience=5] [slr=1] [sopt=0] [seta=0.01] [stau=0.001] [sb1=0.9] [sb2=0.99] [rowavg=0] [mu=0]
 *   [vocab=20000] [alpha=0.5] [la=0] [cbw=0] [hfreeze=0] [nobias=0] [scaf=0] [scafw=1] [nova=0] [seed=42]
 * (hr: head-only rounds; mult: the table's rate multiplier; decay: the table's rate × decay^k in its
 * k-th round; drop: token dropout; len: tokens kept per review; avg=k: also the test accuracy of the
 * mean of the last k global models; hmult: the head's rate multiplier once the table trains; tsgd:
 * the table trains with plain SGD at this rate, so a word's step scales with its gradient instead of
 * Adam's per-coordinate normalization; sp: a decoupled pull of the table toward GloVe, rate × sp per
 * step (L2-SP, Li, Grandvalet & Davoine 2018, https://arxiv.org/abs/1802.01483); val: the fraction
 * of each client's reviews held out for federated validation, with the test accuracy of the round
 * early stopping would keep (best validation accuracy; Prechelt 1998). PROBE_PROGRESS=1 prints every
 * round on stderr as it ends. slr: FedAvg's server learning rate; sopt=1|2: FedAdam|FedYogi on the
 * averaged delta as shared/strategy/fed-opt.ts does it, with rate seta, adaptivity stau and decays
 * sb1, sb2; Reddi et al. 2021, "Adaptive Federated Optimization", https://arxiv.org/abs/2003.00295;
 * rowavg=1: each table row averaged over the clients whose reviews use it, weighted by examples;
 * mu: FedProx's proximal weight on the clients, Li et al. 2020, https://arxiv.org/abs/1812.06127;
 * vocab: GloVe words in the table (read from the wink file when not 20,000); alpha: the split's
 * Dirichlet α (1000: close to IID); la=τ: logit adjustment by each client's label prior in local
 * training (Menon et al. 2021); cbw=1: class-balanced loss weights n / (2 n_y) in local training;
 * hfreeze=1: the head stays fixed once the table trains (as FedBABU, Oh et al. 2022); nobias=1: the
 * head's bias stays 0; scaf=1|2: SCAFFOLD's drift correction with option I's control variates
 * (Karimireddy et al. 2020, https://arxiv.org/abs/1910.06378), each client's c_i its full-batch
 * gradient at the round's model, c their example-weighted mean, from the previous round (1) or
 * from this round before local training (2, one more exchange per round); scafw: the correction's
 * weight; nova=1: FedNova's normalized averaging, Wang et al. 2020, https://arxiv.org/abs/2007.07481:
 * each client's delta over its local steps E·⌈n/B⌉, the weighted sum times the weighted mean steps.)
 */
import { createRandom } from '../../shared/math/random.ts';
import { partition } from '../../shared/math/partition.ts';
import { loadImdbGloveProbe, probeArgs, type Doc } from './imdb-glove-probe-setup.ts';

const num = probeArgs();
const lr = num('lr', 0.02);
const mult = num('mult', 1);
const headRounds = num('hr', 4);
const rounds = num('r', 30);
const E = num('e', 2);
const B = num('b', 32);
const seed = num('seed', 42);
const drop = num('drop', 0);
const decay = num('decay', 0); // table lr × decay^(rounds into the table stage)
const avg = num('avg', 0); // report the mean of the last `avg` global models too
const tsgd = num('tsgd', 0); // > 0: the table trains with plain SGD at this rate instead of Adam
const sp = num('sp', 0); // > 0: decoupled L2-SP pull of the table toward GloVe, rate × sp per step
const hmult = num('hmult', 1); // the head's rate multiplier once the table trains
const slr = num('slr', 1); // server learning rate of FedAvg: global += slr × the averaged delta
const sopt = num('sopt', 0); // server optimizer on the averaged delta: 0 FedAvg, 1 FedAdam, 2 FedYogi (Reddi et al. 2021)
const seta = num('seta', 0.01), stau = num('stau', 1e-3), sb1 = num('sb1', 0.9), sb2 = num('sb2', 0.99);
const mu = num('mu', 0); // > 0: FedProx's proximal term μ/2·‖w − w_round‖² on the head and the table (Li et al. 2020)
const rowavg = num('rowavg', 0); // 1: each table row averages the deltas of the clients whose reviews use it only
const val = num('val', 0); // > 0: each client holds out this fraction of its reviews for validation (early stopping)
const patience = num('patience', 5); // early stopping: rounds without a better validation accuracy
const la = num('la', 0); // logit adjustment τ by the client's label prior during local training (Menon et al. 2021)
const cbw = num('cbw', 0); // 1: class-balanced loss weights n / (2 n_y) during local training
const hfreeze = num('hfreeze', 0); // 1: the head stays fixed once the table trains (FedBABU-like)
const nobias = num('nobias', 0); // 1: the head's bias stays 0
const nova = num('nova', 0); // 1: FedNova's normalized averaging (Wang et al. 2020): each delta over its local steps, the sum times the mean steps
const scafw = num('scafw', 1); // the drift correction's weight
const scaf = num('scaf', 0); // SCAFFOLD-style drift correction (Karimireddy et al. 2020, option I): 1 the server's c from the previous round, 2 from this round
const D = 100;
const seqLen = num('len', 256);

const { config, train: trainData, test: testData, table, docOf } = await loadImdbGloveProbe(seed, seqLen, num('vocab', 20_000));
const pretrained = table.slice();
const trainDocs = trainData.texts.map((t, i) => docOf(t, trainData.labels[i]!));
const test = testData.texts.map((t, i) => docOf(t, testData.labels[i]!));
const parts = partition(trainData.labels, { scheme: 'dirichlet', numClients: config.clients, seed, numClasses: 2, alpha: num('alpha', 0.5), beta: 0.5, shardsPerClient: 2 });

// With `val`, each client's held-out reviews (a seeded draw) are pooled into one validation set: the
// example-weighted mean of the clients' own validation accuracies, as federated evaluation reports it.
const validation: Doc[] = [];
const valDraw = createRandom(`${seed}-validation`);
// Client-local docs: ids remapped to the client's own rows.
const clients = parts.map((all) => {
  const shuffled = Array.from(all);
  valDraw.shuffle(shuffled);
  const held = val > 0 ? Math.round(shuffled.length * val) : 0;
  for (const i of shuffled.slice(0, held)) validation.push(trainDocs[i]!);
  const idx = held > 0 ? shuffled.slice(held) : Array.from(all);
  const rowOf = new Map<number, number>();
  const docs = Array.from(idx, (i) => {
    const d = trainDocs[i]!;
    return { ids: Int32Array.from(d.ids, (id) => (rowOf.has(id) ? rowOf.get(id)! : (rowOf.set(id, rowOf.size), rowOf.size - 1))), counts: d.counts, label: d.label };
  });
  return { docs, rows: Int32Array.from(rowOf.keys()) };
});

const rand = createRandom(`${seed}-init`);
const limit = Math.sqrt(6 / (D + 2));
let head = Float32Array.from({ length: D * 2 + 2 }, (_, i) => (i < D * 2 ? (rand.nextFloat() * 2 - 1) * limit : 0));

function forward(tab: Float32Array, h: Float32Array, doc: Doc, counts: Float32Array, adj0 = 0, adj1 = 0) {
  const m = new Float64Array(D);
  for (let k = 0; k < doc.ids.length; k++) {
    const o = doc.ids[k]! * D, c = counts[k]! / seqLen;
    for (let d = 0; d < D; d++) m[d]! += c * tab[o + d]!;
  }
  let mu = 0;
  for (let d = 0; d < D; d++) mu += m[d]!;
  mu /= D;
  let v = 0;
  for (let d = 0; d < D; d++) v += (m[d]! - mu) ** 2;
  const s = 1 / Math.sqrt(v / D + 1e-12);
  const z = new Float64Array(D);
  let l0 = h[D * 2]! + adj0, l1 = h[D * 2 + 1]! + adj1;
  for (let d = 0; d < D; d++) {
    z[d] = (m[d]! - mu) * s;
    l0 += z[d]! * h[d * 2]!;
    l1 += z[d]! * h[d * 2 + 1]!;
  }
  const mx = Math.max(l0, l1), e0 = Math.exp(l0 - mx), e1 = Math.exp(l1 - mx);
  return { z, s, p0: e0 / (e0 + e1), p1: e1 / (e0 + e1) };
}

function evaluate(tab: Float32Array, h: Float32Array, docs: readonly Doc[] = test): [number, number] {
  let c = 0, loss = 0;
  for (const doc of docs) {
    const { p0, p1 } = forward(tab, h, doc, doc.counts);
    if ((p1 > p0 ? 1 : 0) === doc.label) c++;
    loss -= Math.log(Math.max(1e-7, doc.label ? p1 : p0));
  }
  return [c / docs.length, loss / docs.length];
}

function adam(n: number, rate: number) {
  const m = new Float32Array(n), v = new Float32Array(n);
  let t = 0;
  return (w: Float32Array, g: Float32Array) => {
    t++;
    const a = (rate * Math.sqrt(1 - 0.999 ** t)) / (1 - 0.9 ** t);
    for (let i = 0; i < w.length; i++) {
      m[i] = 0.9 * m[i]! + 0.1 * g[i]!;
      v[i] = 0.999 * v[i]! + 0.001 * g[i]! * g[i]!;
      w[i]! -= (a * m[i]!) / (Math.sqrt(v[i]!) + 1e-7);
    }
  };
}

function sgd(rate: number) {
  return (w: Float32Array, g: Float32Array) => {
    for (let i = 0; i < w.length; i++) w[i]! -= rate * g[i]!;
  };
}

/**
 * Adds one review's gradient, divided by `divisor`, to the head's (`gh`) and, if given, the held
 * rows' (`gt`); `adj0`/`adj1` are logit adjustments in the loss, `ew` the review's loss weight.
 */
function accumulate(tab: Float32Array, h: Float32Array, doc: Doc, counts: Float32Array, gh: Float32Array | Float64Array, gt: Float32Array | Float64Array | null, divisor: number, adj0 = 0, adj1 = 0, ew = 1) {
  const { z, s, p0, p1 } = forward(tab, h, doc, counts, adj0, adj1);
  const dl0 = (ew * (p0 - (doc.label === 0 ? 1 : 0))) / divisor, dl1 = (ew * (p1 - (doc.label === 1 ? 1 : 0))) / divisor;
  const dz = new Float64Array(D);
  let mdz = 0, mdzz = 0;
  for (let d = 0; d < D; d++) {
    gh[d * 2]! += z[d]! * dl0;
    gh[d * 2 + 1]! += z[d]! * dl1;
    dz[d] = h[d * 2]! * dl0 + h[d * 2 + 1]! * dl1;
    mdz += dz[d]! / D;
    mdzz += (dz[d]! * z[d]!) / D;
  }
  gh[D * 2]! += dl0;
  gh[D * 2 + 1]! += dl1;
  if (gt) for (let k = 0; k < doc.ids.length; k++) {
    const cw = counts[k]! / seqLen, o = doc.ids[k]! * D;
    for (let d = 0; d < D; d++) gt[o + d]! += cw * s * (dz[d]! - mdz - z[d]! * mdzz);
  }
}

/** The client's mean gradient over all its reviews at (h, tab): head part and table rows part. */
function clientGradient(c: (typeof clients)[number], h: Float32Array, tab: Float32Array) {
  const gh = new Float64Array(h.length), gt = new Float64Array(tab.length);
  for (const doc of c.docs) accumulate(tab, h, doc, doc.counts, gh, gt, c.docs.length);
  return { gh, gt };
}
/** Per client this round: correction (c − c_i) for head and the client's rows, or null. */
let correction: { head: Float64Array; rows: Float64Array } | null = null;

function localTrain(c: (typeof clients)[number], h: Float32Array, tab: Float32Array | null, tableRate: number, rng: ReturnType<typeof createRandom>) {
  const stepHead = adam(h.length, tab ? lr * hmult : lr);
  const stepTable = tab ? (tsgd > 0 ? sgd(tableRate) : adam(tab.length, tableRate)) : null;
  const h0 = mu > 0 ? h.slice() : null, t0 = mu > 0 && tab ? tab.slice() : null;
  const tab0 = tab && sp > 0 ? Float32Array.from({ length: c.rows.length * D }, (_, k) => pretrained[c.rows[Math.floor(k / D)]! * D + (k % D)]!) : null;
  const gh = new Float32Array(h.length);
  const gt = tab ? new Float32Array(tab.length) : null;
  const order = new Int32Array(c.docs.length).map((_, i) => i);
  const n1 = c.docs.reduce((a, d) => a + d.label, 0), n0 = c.docs.length - n1;
  const adj0 = la * Math.log(Math.max(n0, 1) / c.docs.length), adj1 = la * Math.log(Math.max(n1, 1) / c.docs.length);
  const cw0 = cbw ? c.docs.length / (2 * Math.max(n0, 1)) : 1, cw1 = cbw ? c.docs.length / (2 * Math.max(n1, 1)) : 1;
  const frozen = tab ?? Float32Array.from({ length: c.rows.length * D }, (_, i) => table[c.rows[Math.floor(i / D)]! * D + (i % D)]!);
  for (let e = 0; e < E; e++) {
    rng.shuffle(order);
    for (let start = 0; start < order.length; start += B) {
      gh.fill(0);
      gt?.fill(0);
      for (let i = start; i < Math.min(order.length, start + B); i++) {
        const doc = c.docs[order[i]!]!;
        let counts = doc.counts;
        if (drop > 0 && tab) counts = counts.map((n) => { let k = 0; for (let j = 0; j < n; j++) if (rng.nextFloat() >= drop) k++; return k; });
        accumulate(frozen, h, doc, counts, gh, gt, B, adj0, adj1, doc.label ? cw1 : cw0);
      }
      if (h0) for (let k = 0; k < h.length; k++) gh[k]! += mu * (h[k]! - h0[k]!);
      if (t0 && tab && gt) for (let k = 0; k < tab.length; k++) gt[k]! += mu * (tab[k]! - t0[k]!);
      if (correction && tab && gt) {
        for (let k = 0; k < gh.length; k++) gh[k]! += correction.head[k]!;
        for (let k = 0; k < gt.length; k++) gt[k]! += correction.rows[k]!;
      }
      if (nobias) gh[D * 2] = gh[D * 2 + 1] = 0;
      if (!(hfreeze && tab)) stepHead(h, gh);
      if (stepTable && tab && gt) stepTable(tab, gt);
      if (tab && tab0) for (let k = 0; k < tab.length; k++) tab[k]! -= tableRate * sp * (tab[k]! - tab0[k]!);
    }
  }
}

// The server's step on the averaged delta: FedAvg with rate `slr`, or FedAdam / FedYogi over the
// whole model (head then table), moments kept across rounds as fed-opt.ts keeps them.
const serverM = sopt > 0 ? new Float64Array(D * 2 + 2 + table.length) : null;
const serverV = sopt > 0 ? new Float64Array(D * 2 + 2 + table.length).fill(stau * stau) : null;
function serverStep(w: Float32Array, delta: Float64Array, offset: number) {
  if (!serverM || !serverV) {
    for (let k = 0; k < w.length; k++) w[k]! += slr * delta[k]!;
    return;
  }
  for (let k = 0; k < w.length; k++) {
    const i = offset + k, d = delta[k]!, d2 = d * d;
    serverM[i] = sb1 * serverM[i]! + (1 - sb1) * d;
    serverV[i] = sopt === 1 ? sb2 * serverV[i]! + (1 - sb2) * d2 : serverV[i]! - (1 - sb2) * d2 * Math.sign(serverV[i]! - d2);
    w[k]! += (seta * serverM[i]!) / (Math.sqrt(serverV[i]!) + stau);
  }
}

const log: string[] = [];
// Early stopping as the coordinator's EarlyStopping does it: keep the best validation round; stop after `patience` without a gain.
let best = { val: -1, round: 0, test: 0 };
let stoppedAt = 0;
let atStop = best;
let serverC: { head: Float64Array; table: Float64Array } | null = null;
let pendingC: { head: Float64Array; table: Float64Array } | null = null;
const history: Array<{ head: Float32Array; table: Float32Array | null }> = [];
const faults = createRandom(`${seed}-faults`);
for (let round = 1; round <= rounds; round++) {
  const trainTable = round > headRounds;
  const tableRate = (tsgd > 0 ? tsgd : lr * mult) * (decay > 0 ? decay ** (round - headRounds - 1) : 1);
  const newHead = new Float64Array(head.length);
  const tableDelta = trainTable ? new Float64Array(table.length) : null;
  const rowWeight = trainTable && rowavg ? new Float64Array(table.length / D) : null;
  let total = 0;
  const chosen = clients.map((c, i) => ({ c, i })).filter(() => faults.nextFloat() >= 0.05);
  for (const { c } of chosen) total += c.docs.length;
  // SCAFFOLD (option I): c_i = the client's gradient at the round's model; c = their example-weighted mean.
  const cis = new Map<number, { gh: Float64Array; gt: Float64Array }>();
  if (scaf && trainTable) {
    const cNew = { head: new Float64Array(head.length), table: new Float64Array(table.length) };
    for (const { c, i } of chosen) {
      const tabRows = Float32Array.from({ length: c.rows.length * D }, (_, k) => table[c.rows[Math.floor(k / D)]! * D + (k % D)]!);
      const g = clientGradient(c, head, tabRows);
      cis.set(i, g);
      const w = c.docs.length / total;
      for (let k = 0; k < head.length; k++) cNew.head[k]! += w * g.gh[k]!;
      c.rows.forEach((row, r) => { for (let d = 0; d < D; d++) cNew.table[row * D + d]! += w * g.gt[r * D + d]!; });
    }
    if (scaf === 2 || !serverC) serverC = cNew;
    else pendingC = cNew;
  }
  let meanSteps = 0;
  for (const { c, i } of chosen) {
    const h = head.slice();
    const tab = trainTable ? Float32Array.from({ length: c.rows.length * D }, (_, k) => table[c.rows[Math.floor(k / D)]! * D + (k % D)]!) : null;
    const ci = cis.get(i);
    correction = ci && serverC ? { head: Float64Array.from(ci.gh, (g, k) => scafw * (serverC!.head[k]! - g)), rows: Float64Array.from(ci.gt, (g, k) => scafw * (serverC!.table[c.rows[Math.floor(k / D)]! * D + (k % D)]! - g)) } : null;
    localTrain(c, h, tab, tableRate, createRandom(`${seed}-${round}-${i}`));
    correction = null;
    const p = c.docs.length / total;
    const steps = E * Math.ceil(c.docs.length / B);
    meanSteps += p * steps;
    const w = nova ? p / steps : p;
    for (let k = 0; k < h.length; k++) newHead[k]! += w * (h[k]! - head[k]!);
    if (tab && tableDelta) c.rows.forEach((row, r) => { for (let d = 0; d < D; d++) tableDelta[row * D + d]! += w * (tab[r * D + d]! - table[row * D + d]!); });
    if (rowWeight) for (const row of c.rows) rowWeight[row]! += w;
  }
  if (rowWeight && tableDelta) rowWeight.forEach((rw, row) => { if (rw > 0) for (let d = 0; d < D; d++) tableDelta[row * D + d]! /= rw; });
  if (pendingC) { serverC = pendingC; pendingC = null; }
  const scale = nova ? meanSteps : 1;
  if (tableDelta && nova) for (let k = 0; k < tableDelta.length; k++) tableDelta[k]! *= scale;
  const headDelta = newHead.map((d) => scale * d);
  serverStep(head, headDelta, 0);
  if (tableDelta) serverStep(table, tableDelta, head.length);
  const [acc, loss] = evaluate(table, head);
  log.push(`${(acc * 100).toFixed(1)}`);
  if (val > 0) {
    const [vAcc] = evaluate(table, head, validation);
    if (vAcc > best.val) best = { val: vAcc, round, test: acc };
    if (!stoppedAt && round - best.round >= patience) {
      stoppedAt = round;
      atStop = best;
    }
    if (round === rounds) log.push(`| validation ${validation.length} reviews: best round ${best.round} (val ${(best.val * 100).toFixed(1)}), its test ${(best.test * 100).toFixed(1)}${stoppedAt ? `; patience ${patience} stops after round ${stoppedAt} with round ${atStop.round}'s model, test ${(atStop.test * 100).toFixed(1)}` : ''}`);
  }
  if (process.env['PROBE_PROGRESS']) console.error(`round ${round}: ${(acc * 100).toFixed(1)} (loss ${loss.toFixed(3)})`);
  if (avg > 0) {
    history.push({ head: head.slice(), table: table.slice() });
    if (history.length > avg) history.shift();
  }
  if (round === rounds) {
    log.push(`(loss ${loss.toFixed(3)})`);
    if (avg > 0) {
      const h = new Float32Array(head.length), t = new Float32Array(table.length);
      for (const snap of history) {
        for (let k = 0; k < h.length; k++) h[k]! += snap.head[k]! / history.length;
        for (let k = 0; k < t.length; k++) t[k]! += snap.table![k]! / history.length;
      }
      log.push(`avg${avg} ${(evaluate(t, h)[0] * 100).toFixed(1)}`);
    }
  }
}
console.log(`${process.argv.slice(2).join(' ')} || ${log.join(' ')}`);
process.exit(0);
