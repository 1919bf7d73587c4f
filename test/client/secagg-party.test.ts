import { describe, expect, it } from 'vitest';
import { SecAggParty } from '../../client/secagg-party.ts';
import { generateIdentity } from '../../shared/crypto/index.ts';
import type { FitConfig } from '../../shared/strategy/strategy.ts';

const config: FitConfig = { epochs: 1, batchSize: 8, learningRate: 0.01, optimizer: 'sgd', extra: { secagg: true, 'secagg.bits': 32, 'secagg.clipRange': 1, 'secagg.maxWeight': 100 } };
const coordinator = generateIdentity();
const keys = { signingKey: coordinator.signing.publicKey, boxKey: coordinator.box.publicKey };
const down = (step: 'start' | 'keys' | 'forward' | 'survivors', roundId = 'secagg-r1-000000000000') => ({ roundId, step, clients: 3, bytes: new Uint8Array(0) });

describe('a socket client\'s secure-aggregation steps', () => {
  it('holds the delta and sends zeros in the update', () => {
    const party = new SecAggParty(generateIdentity(), keys);
    const sent = party.hold(Float32Array.of(0.5, -0.25), config);
    expect(Array.from(sent)).toEqual([0, 0]);
  });

  it('refuses steps without a held delta, a repeated start, and steps of another round', () => {
    const party = new SecAggParty(generateIdentity(), keys);
    expect(() => party.answer(down('start'))).toThrow(/without a held delta/);
    party.hold(Float32Array.of(0.5, -0.25), config);
    expect(() => party.answer(down('keys'))).toThrow(/not the current one/);
    expect(party.answer(down('start')).length).toBeGreaterThan(0);
    expect(() => party.answer(down('start'))).toThrow(/already started/);
    expect(() => party.answer(down('keys', 'secagg-r2-000000000000'))).toThrow(/not the current one/);
    // Bytes not sealed by the pinned coordinator for this round and step are refused.
    expect(() => party.answer(down('keys'))).toThrow();
  });

  it('refuses a fit config without a valid ring', () => {
    const party = new SecAggParty(generateIdentity(), keys);
    expect(() => party.hold(new Float32Array(2), { ...config, extra: { secagg: true } })).toThrow(/secagg.bits/);
  });
});
