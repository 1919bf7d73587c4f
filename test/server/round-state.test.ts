import { afterEach, describe, expect, it } from 'vitest';
import { EvaluateRound, FitRound } from '../../server/round-state.ts';
import { createUpdateOpener } from '../../server/update-opener.ts';
import { generateIdentity, publicIdentity, type Identity } from '../../shared/crypto/identity.ts';
import { sealUpdate } from '../../shared/crypto/update-envelope.ts';
import { WeightedDeltaMean, WeightedMetricMean } from '../../shared/strategy/fed-avg.ts';

const coordinator = generateIdentity();
const clients: Identity[] = [generateIdentity(), generateIdentity(), generateIdentity()];
const ids = clients.map((c) => publicIdentity(c).clientId);
const opener = createUpdateOpener(coordinator, (clientId) => {
  const found = clients.find((c) => publicIdentity(c).clientId === clientId);
  return found ? publicIdentity(found) : undefined;
});

function seal(client: Identity, roundId: string, delta: number[], examples: number, metrics: Record<string, number> = {}): Uint8Array {
  return sealUpdate({ header: { roundId, exampleCount: examples, metrics }, delta: Float32Array.from(delta) }, { clientIdentity: client, coordinatorBoxKey: coordinator.box.publicKey });
}

const open: Array<FitRound | EvaluateRound> = [];
afterEach(() => {
  for (const round of open.splice(0)) round.close();
});

function fitRound(selected: string[], timeoutMs = 60_000, resolved: string[] = []): FitRound {
  const round = new FitRound({
    round: 1,
    roundId: 'run-r1-a1-fit',
    selected,
    timeoutMs,
    aggregation: new WeightedDeltaMean(new Float32Array([1, 2])),
    metrics: new WeightedMetricMean(),
    openUpdate: opener,
    parameterCount: 2,
    onResolved: (id) => resolved.push(id),
  });
  open.push(round);
  return round;
}

describe('FitRound', () => {
  it('folds accepted updates and their metrics, and settles when every selected client answered (hand-computed)', async () => {
    // Prepare: two selected clients; a: 10 × [1, 0], loss 1; b: 30 × [−1, 4], loss 3.
    const resolved: string[] = [];
    const round = fitRound([ids[0]!, ids[1]!], 60_000, resolved);
    // Execute
    expect(round.accept(ids[0]!, seal(clients[0]!, round.roundId, [1, 0], 10, { loss: 1 }))).toEqual({ ok: true });
    expect(round.closed).toBe(false);
    expect(round.accept(ids[1]!, seal(clients[1]!, round.roundId, [-1, 4], 30, { loss: 3 }))).toEqual({ ok: true });
    await round.done;
    // Assert: head [1 + (10 − 30)/40, 2 + 120/40] = [0.5, 5]; loss (10·1 + 30·3)/40 = 2.5.
    expect(round.closed).toBe(true);
    expect(Array.from(round.aggregation.finish())).toEqual([0.5, 5]);
    expect(round.metrics.finish()).toEqual({ loss: 2.5, examples: 40 });
    expect(round.missing).toBe(0);
    expect(resolved).toEqual([ids[0], ids[1]]);
  });

  it('refuses and counts: not selected, duplicate, replayed, wrong round, garbage', () => {
    const round = fitRound([ids[0]!, ids[1]!]);
    const first = seal(clients[0]!, round.roundId, [1, 1], 5);
    expect(round.accept(ids[2]!, seal(clients[2]!, round.roundId, [1, 1], 5))).toMatchObject({ ok: false, code: 'NOT_SELECTED' });
    expect(round.accept(ids[0]!, first)).toEqual({ ok: true });
    expect(round.accept(ids[0]!, first)).toMatchObject({ ok: false, code: 'DUPLICATE_UPDATE' });
    expect(round.accept(ids[1]!, seal(clients[1]!, 'another-round', [1, 1], 5))).toMatchObject({ ok: false });
    expect(round.accept(ids[1]!, new Uint8Array(40))).toMatchObject({ ok: false });
    expect(round.aggregation.count).toBe(1);
    expect(round.rejected['NOT_SELECTED']).toBe(1);
    expect(round.rejected['DUPLICATE_UPDATE']).toBe(1);
    expect(Object.values(round.rejected).reduce((a, b) => a + (b ?? 0), 0)).toBe(4);
  });

  it('settles once the clients that did not answer dropped out, and refuses answers after closing', async () => {
    const round = fitRound([ids[0]!, ids[1]!, ids[2]!]);
    expect(round.accept(ids[0]!, seal(clients[0]!, round.roundId, [1, 1], 5))).toEqual({ ok: true });
    expect(round.drop(ids[1]!)).toBe(true);
    expect(round.drop(ids[1]!)).toBe(false);
    expect(round.drop(ids[0]!)).toBe(false);
    expect(round.closed).toBe(false);
    round.drop(ids[2]!);
    await round.done;
    expect(round.missing).toBe(2);
    expect(round.accept(ids[2]!, seal(clients[2]!, round.roundId, [1, 1], 5))).toMatchObject({ ok: false, code: 'STALE_ROUND' });
  });

  it('closes at its deadline', async () => {
    const round = fitRound([ids[0]!], 50);
    await round.done;
    expect(round.closed).toBe(true);
    expect(round.aggregation.count).toBe(0);
  });
});

describe('EvaluateRound', () => {
  it('folds reports by example count, skipping clients without validation data (hand-computed)', async () => {
    const round = new EvaluateRound({ round: 2, roundId: 'run-r2-a1-evaluate', selected: [ids[0]!, ids[1]!, ids[2]!], timeoutMs: 60_000, metrics: new WeightedMetricMean() });
    open.push(round);
    expect(round.accept(ids[0]!, { roundId: round.roundId, examples: 10, loss: 1, accuracy: 0.5 })).toEqual({ ok: true });
    expect(round.accept(ids[1]!, { roundId: 'old', examples: 10, loss: 1, accuracy: 0.5 })).toMatchObject({ ok: false, code: 'STALE_ROUND' });
    expect(round.accept(ids[1]!, { roundId: round.roundId, examples: 30, loss: 2, accuracy: 0.9 })).toEqual({ ok: true });
    expect(round.accept(ids[1]!, { roundId: round.roundId, examples: 30, loss: 2, accuracy: 0.9 })).toMatchObject({ ok: false, code: 'DUPLICATE_UPDATE' });
    expect(round.accept(ids[2]!, { roundId: round.roundId, examples: 0, loss: 0, accuracy: 0 })).toEqual({ ok: true });
    await round.done;
    // loss (10·1 + 30·2)/40 = 1.75; accuracy (10·0.5 + 30·0.9)/40 = 0.8.
    const result = round.metrics.finish();
    expect(result['examples']).toBe(40);
    expect(result['loss']).toBeCloseTo(1.75, 12);
    expect(result['accuracy']).toBeCloseTo(0.8, 12);
  });
});
