/**
 * Row-sparse uploads over real sockets: a coordinator on port 0 fine-tunes a small GloVe base (its
 * table trains from round 1) and hand-driven clients send sealed updates whose table travels as the
 * rows they touched. The aggregate must equal the dense path's bit for bit, on the event loop and
 * on ingest workers; every malformed sparse payload is refused with its code and loses nothing; and
 * under secure aggregation a row-sparse upload is refused (the row indices must not travel).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Coordinator } from '../../server/coordinator.ts';
import { SocketSecureAggregation } from '../../server/secure-aggregation.ts';
import { startCoordinator } from '../../server/start-coordinator.ts';
import type { UpdateOpenerOptions } from '../../server/update-opener.ts';
import { openBase } from '../../shared/bases/prepare-base.ts';
import { AllowList } from '../../shared/crypto/allow-list.ts';
import { formatPublicIdentity, generateIdentity, publicIdentity, type Identity } from '../../shared/crypto/identity.ts';
import { sealPayload, sealUpdate } from '../../shared/crypto/update-envelope.ts';
import type { LoadedBase } from '../../shared/model/base-loader.ts';
import { initialModelWeights, selectManifest, stageWeightNames } from '../../shared/model/fine-tune-model.ts';
import type { HeadSpec } from '../../shared/model/head.ts';
import { FedAvg } from '../../shared/strategy/fed-avg.ts';
import type { Strategy } from '../../shared/strategy/strategy.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import type { WeightManifest } from '../../shared/weights/flat-weights.ts';
import { embeddingEntryNames, encodeRowSparse } from '../../shared/weights/sparse-rows.ts';
import { rowTablesOf } from '../../shared/strategy/row-averaging.ts';
import { RawClient, signedHello } from '../support/hostile.ts';
import { SMALL_GLOVE } from '../support/text-model.ts';

const HEAD: HeadSpec = { hidden: [], activation: 'relu', dropout: 0, classes: 2 };
const TABLE_FROM_ROUND_1 = { stages: [{ fromRound: 1, groups: [{ select: 'head' }, { select: 'pattern', pattern: '^glove_embedding$' }] }] };
const DIMS = 100;

let work: string;
let glove: LoadedBase;
/** The round's stage: the GloVe table, then the head. */
let stage: WeightManifest;
const coordinatorIdentity: Identity = generateIdentity();
const identities = [generateIdentity(), generateIdentity()];
const started: { coordinator: Coordinator; clients: RawClient[] }[] = [];

beforeAll(async () => {
  await selectBackend({ log: false });
  work = await mkdtemp(path.join(os.tmpdir(), 'fedtl-sparse-updates-'));
  glove = await openBase('glove-100d', { cacheDir: path.join(work, 'bases'), ...SMALL_GLOVE });
  const model = initialModelWeights(glove, HEAD, 5);
  stage = selectManifest(model.manifest, stageWeightNames(glove, HEAD, { index: 0, fromRound: 1, headLrMultiplier: 1, layers: [{ name: 'glove_embedding', lrMultiplier: 1 }] }));
}, 120_000);
afterEach(async () => {
  for (const { coordinator, clients } of started.splice(0)) {
    for (const client of clients) client.close();
    await coordinator.close();
  }
});
afterAll(async () => {
  glove.dispose();
  await rm(work, { recursive: true, force: true });
});

interface Federation {
  coordinator: Coordinator;
  clients: RawClient[];
  boxKey: string;
  /** The coordinator's run (one round). */
  done: Promise<unknown>;
}

/** A fine-tuning coordinator for one round and its two clients, connected and ready (120 and 80 examples). */
async function federation(options: { ingestWorkers?: number; validation?: UpdateOpenerOptions; strategy?: Strategy } = {}): Promise<Federation> {
  const allowList = AllowList.fromText(identities.map((id, i) => `${formatPublicIdentity(publicIdentity(id))} client-${i}`).join('\n'));
  const coordinator = await startCoordinator({
    identity: coordinatorIdentity,
    allowList,
    base: glove,
    baseDirectory: glove.dir,
    headSpec: HEAD,
    strategy: options.strategy ?? new FedAvg({ minClients: 2 }),
    rounds: 1,
    seed: 5,
    trainable: TABLE_FROM_ROUND_1,
    ingestWorkers: options.ingestWorkers ?? 0,
    ...(options.validation ? { validation: options.validation } : {}),
    loop: { roundTimeoutMs: 30_000, waitForClientsMs: 30_000, federatedEvaluation: false },
    logger: { debug() {}, info() {}, warn() {}, error() {} },
  });
  const pub = publicIdentity(coordinatorIdentity);
  const clients: RawClient[] = [];
  started.push({ coordinator, clients });
  for (const identity of identities) {
    clients.push(await RawClient.connect(coordinator.url, identity, pub.signingKey, pub.boxKey, (connectionId: string) => signedHello(identity, pub.signingKey, { connectionId })));
  }
  const done = coordinator.run();
  done.catch(() => undefined); // awaited by the tests that finish the round; a closed coordinator ends it
  for (const [i, client] of clients.entries()) expect((await client.ready(i === 0 ? 120 : 80)).ok).toBe(true);
  return { coordinator, clients, boxKey: pub.boxKey, done };
}

/** A stage delta that moves only `rows` of the table (and the whole head), different per seed. */
function tableDelta(rows: readonly number[], seed: number): Float32Array {
  const delta = new Float32Array(stage.parameterCount);
  const table = stage.entries[0]!;
  for (const row of rows) for (let d = 0; d < DIMS; d++) delta[table.offset + row * DIMS + d] = (((row * 31 + d * 7 + seed * 13) % 41) - 20) / 1000;
  for (let i = table.offset + table.length; i < delta.length; i++) delta[i] = ((i + seed) % 9) / 500 - 0.008;
  return delta;
}

const header = (roundId: string, examples: number) => ({ roundId, exampleCount: examples, metrics: { loss: 1, accuracy: 0.5 } });

/** Runs the round with client 0 sending `deltas[0]` and client 1 `deltas[1]`, each sparse or dense; returns the whole model after it. */
async function oneRound(fed: Federation, deltas: Float32Array[], sparse: boolean[]): Promise<{ weights: Float32Array; bytes: number[] }> {
  const bytes: number[] = [];
  await Promise.all(
    fed.clients.map(async (client, i) => {
      const fit = await client.fits.next('fit');
      const sealed = sealUpdate({ header: header(fit.roundId, i === 0 ? 120 : 80), delta: deltas[i]! }, { clientIdentity: identities[i]!, coordinatorBoxKey: fed.boxKey, ...(sparse[i] ? { rowSparse: stage } : {}) });
      bytes[i] = sealed.byteLength;
      expect(await client.send(sealed)).toEqual({ ok: true });
    }),
  );
  await fed.done;
  return { weights: fed.coordinator.loop.weights.slice(), bytes };
}

describe('row-sparse uploads of a fine-tuned embedding table, over real sockets', () => {
  const deltas = () => [tableDelta([3, 17, 400, 401, 402, 1999], 1), tableDelta([17, 999], 2)];

  it.each([
    ['on the event loop', 0],
    ['on 2 ingest workers', 2],
  ])('aggregate exactly as the dense path does (%s): unsent rows count as zeros weighted by the example count', async (_where, ingestWorkers) => {
    // Prepare: the same two deltas, sent densely to one coordinator and row-sparse to another
    const [a, b] = deltas();

    // Execute
    const dense = await oneRound(await federation({ ingestWorkers }), [a!, b!], [false, false]);
    const sparse = await oneRound(await federation({ ingestWorkers }), [a!, b!], [true, true]);

    // Assert: bit-identical models; the sparse uploads carry the rows, not the 2,002-row table
    expect(Buffer.from(sparse.weights.buffer).equals(Buffer.from(dense.weights.buffer))).toBe(true);
    const headValues = stage.parameterCount - stage.entries[0]!.length;
    // The dense envelope's framing, plus the header's `"encoding":"row-sparse"` field.
    const envelope = (i: number) => dense.bytes[i]! - stage.parameterCount * 4 + ',"encoding":"row-sparse"'.length;
    expect(sparse.bytes[0]).toBe(envelope(0) + 4 * (1 + 1 + 6 + 6 * DIMS + headValues));
    expect(sparse.bytes[1]).toBe(envelope(1) + 4 * (1 + 1 + 2 + 2 * DIMS + headValues));
    expect(dense.bytes[0]! / sparse.bytes[0]!).toBeGreaterThan(50);
  }, 120_000);

  it('mixes sparse and dense uploads in one round', async () => {
    const [a, b] = deltas();
    const dense = await oneRound(await federation(), [a!, b!], [false, false]);
    const mixed = await oneRound(await federation(), [a!, b!], [true, false]);
    expect(Buffer.from(mixed.weights.buffer).equals(Buffer.from(dense.weights.buffer))).toBe(true);
  }, 120_000);

  /** A valid row-sparse payload of rows 5 and 9, as words, for the cases below to corrupt. */
  function payloadWords(): Uint32Array {
    const bytes = encodeRowSparse(tableDelta([5, 9], 3), stage, embeddingEntryNames(stage));
    return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4).slice();
  }
  const f32 = (value: number) => new Uint32Array(Float32Array.of(value).buffer)[0]!;
  const firstValue = 1 + 1 + 2; // magic, row count, two row indices
  const cases: Array<[string, (words: Uint32Array) => Uint32Array, string, string]> = [
    ['a row outside the table', (w) => ((w[3] = SMALL_GLOVE.vocabularySize + 2), w), 'BAD_MESSAGE', 'outside [0, 2002)'],
    ['rows out of order', (w) => ((w[2] = 9), (w[3] = 5), w), 'BAD_MESSAGE', 'out of order'],
    ['a repeated row', (w) => ((w[3] = 5), w), 'BAD_MESSAGE', 'out of order'],
    ['more rows than the table', (w) => ((w[1] = 100_000), w), 'BAD_MESSAGE', 'lists 100000 rows'],
    ['a row count past the payload', (w) => ((w[1] = 300), w), 'BAD_MESSAGE', 'runs past the end'],
    ['a truncated payload', (w) => w.slice(0, w.length - 1), 'BAD_MESSAGE', 'runs past the end'],
    ['trailing bytes', (w) => Uint32Array.from([...w, 0]), 'BAD_MESSAGE', 'left over'],
    ['a wrong magic', (w) => ((w[0] = 0x31535267), w), 'BAD_MESSAGE', 'wrong magic'],
    ['NaN in a row', (w) => ((w[firstValue + 3] = f32(Number.NaN)), w), 'NON_FINITE', 'is NaN'],
    ['Infinity in a row', (w) => ((w[firstValue + DIMS + 1] = f32(Number.POSITIVE_INFINITY)), w), 'NON_FINITE', 'is Infinity'],
    ['-Infinity in the head', (w) => ((w[w.length - 1] = f32(Number.NEGATIVE_INFINITY)), w), 'NON_FINITE', 'is -Infinity'],
    ['a value over the range limit', (w) => ((w[firstValue] = f32(5)), w), 'OUT_OF_RANGE', `delta[${5 * DIMS}] = 5 exceeds`],
    ['an L2 norm over the limit', (w) => ((w[firstValue + 1] = f32(0.9)), w), 'OUT_OF_RANGE', 'L2 norm'],
  ];

  it.each([
    ['on the event loop', 0],
    ['on 2 ingest workers', 2],
  ])('refuses every malformed row-sparse payload with its code and loses nothing (%s)', async (_where, ingestWorkers) => {
    // Prepare: |x| ≤ 1 and ‖Δ‖ ≤ 0.8 (the valid deltas are far below both)
    const fed = await federation({ ingestWorkers, validation: { maxAbs: 1, maxL2Norm: 0.8 } });
    const [hostile, honest] = fed.clients;
    const fit = await hostile!.fits.next('fit');
    const seal = (words: Uint32Array) =>
      sealPayload({ header: header(fit.roundId, 120), parameterCount: stage.parameterCount, payload: new Uint8Array(words.buffer, words.byteOffset, words.byteLength), encoding: 'row-sparse' }, { clientIdentity: identities[0]!, coordinatorBoxKey: fed.boxKey });

    // Execute + Assert: each case refused with its code and a message naming the problem
    for (const [name, corrupt, code, message] of cases) {
      const ack = await hostile!.send(seal(corrupt(payloadWords())));
      expect({ name, ack }).toMatchObject({ name, ack: { ok: false, code } });
      expect((ack as { message: string }).message).toContain(message);
    }
    // A "sparse" payload as large as the dense delta is refused too: sparse only where it is smaller.
    const big = new Uint32Array(stage.parameterCount);
    expect(await hostile!.send(seal(big))).toMatchObject({ ok: false, code: 'BAD_MESSAGE' });

    // The client is still in the round: its valid update is taken, and the model is the two valid ones' mean.
    const valid = tableDelta([5, 9], 3);
    const other = tableDelta([11], 4);
    expect(await hostile!.send(sealUpdate({ header: header(fit.roundId, 120), delta: valid }, { clientIdentity: identities[0]!, coordinatorBoxKey: fed.boxKey, rowSparse: stage }))).toEqual({ ok: true });
    const honestFit = await honest!.fits.next('fit');
    expect(await honest!.send(sealUpdate({ header: header(honestFit.roundId, 80), delta: other }, { clientIdentity: identities[1]!, coordinatorBoxKey: fed.boxKey }))).toEqual({ ok: true });
    await fed.done;
    const record = fed.coordinator.loop.history[0]!;
    expect(record.accepted).toBe(2);
    expect(Object.values(record.rejected).reduce((sum, n) => sum + (n ?? 0), 0)).toBe(cases.length + 1);
    const reference = await oneRound(await federation({ ingestWorkers }), [valid, other], [false, false]);
    expect(Buffer.from(fed.coordinator.loop.weights.buffer).equals(Buffer.from(reference.weights.buffer))).toBe(true);
  }, 120_000);

  it.each([
    ['on the event loop', 0],
    ['on 2 ingest workers', 2],
  ])('with rowAveraging, average each table row over the clients that sent it, sparse or dense (%s)', async (_where, ingestWorkers) => {
    // Prepare: client 0 (120 examples) sends rows 3, 17, 400…; client 1 (80) rows 17 and 999
    const [a, b] = deltas();
    const rowAveraging = () => new FedAvg({ minClients: 2, rowAveraging: true });
    const table = rowTablesOf(initialModelWeights(glove, HEAD, 5).manifest)[0]!;
    const row = (w: Float32Array, r: number) => Array.from(w.subarray(table.offset + r * DIMS, table.offset + (r + 1) * DIMS));
    const sent = (delta: Float32Array, r: number) => delta.subarray(stage.entries[0]!.offset + r * DIMS, stage.entries[0]!.offset + (r + 1) * DIMS);

    // Execute: plain FedAvg, then row averaging with sparse and with dense uploads
    const first = await federation({ ingestWorkers });
    const start = first.coordinator.loop.weights.slice();
    const plain = (await oneRound(first, [a!, b!], [false, false])).weights;
    const sparse = (await oneRound(await federation({ ingestWorkers, strategy: rowAveraging() }), [a!, b!], [true, true])).weights;
    const dense = (await oneRound(await federation({ ingestWorkers, strategy: rowAveraging() }), [a!, b!], [false, true])).weights;

    // Assert: a row one client sent moves by exactly that client's delta (FedAvg: 120/200 or 80/200
    // of it): start + Δ rounded once to float32, computed here from the deltas, not from FedAvg's
    // rounded result; the shared row, the head and the unsent rows are FedAvg's, bit for bit
    for (const model of [sparse, dense]) {
      for (const [r, delta] of [[3, a!], [400, a!], [1999, a!], [999, b!]] as const) {
        const want = Array.from(sent(delta, r), (v, d) => Math.fround(start[table.offset + r * DIMS + d]! + v));
        expect(row(model, r)).toEqual(want);
        expect(want).not.toEqual(row(start, r));
      }
      for (const r of [17, 0, 1000]) expect(row(model, r)).toEqual(row(plain, r));
      expect(Array.from(model.subarray(table.offset + table.rows * DIMS))).toEqual(Array.from(plain.subarray(table.offset + table.rows * DIMS)));
      expect(Array.from(model.subarray(0, table.offset))).toEqual(Array.from(plain.subarray(0, table.offset)));
    }
    expect(Buffer.from(sparse.buffer).equals(Buffer.from(dense.buffer))).toBe(true);
  }, 120_000);

  it('under secure aggregation takes dense uploads only: a row-sparse one is refused, its row indices unread', async () => {
    // Prepare
    const strategy = new SocketSecureAggregation(new FedAvg({ minClients: 2 }), { coordinator: coordinatorIdentity, maxClients: 2 });
    const fed = await federation({ strategy });
    const fit = await fed.clients[0]!.fits.next('fit');
    expect(fit.config.extra?.['secagg']).toBe(true);

    // Execute
    const sealed = sealUpdate({ header: header(fit.roundId, 120), delta: tableDelta([5], 1) }, { clientIdentity: identities[0]!, coordinatorBoxKey: fed.boxKey, rowSparse: stage });
    const ack = await fed.clients[0]!.send(sealed);

    // Assert
    expect(ack).toMatchObject({ ok: false, code: 'BAD_MESSAGE' });
    expect((ack as { message: string }).message).toContain('dense updates only');
  }, 60_000);
});
