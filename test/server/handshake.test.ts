/**
 * The coordinator's admission and identity checks, against a real coordinator on loopback: every
 * refusal reaches the client as a typed `connect_error` code, and the federation carries on.
 */
import { describe, expect, it } from 'vitest';
import { encodeKey, generateIdentity } from '../../shared/crypto/identity.ts';
import { PROTOCOL_VERSION, type Hello } from '../../shared/protocol/protocol.ts';
import { Harness, makeDelta, maxAbsDifference, useHarness, weightedMean, within, type RawClient } from '../support/hostile.ts';

describe('coordinator handshake under hostile hellos', () => {
  let harness: Harness | undefined;
  const startHarness = useHarness();

  /** Two honest clients run one round after the attacks; returns the round's head and what they sent. */
  async function honestRoundStillWorks(h: Harness): Promise<void> {
    const initial = Float32Array.from(h.coordinator.loop.weights);
    const honest = await h.ready([0, 1]);
    for (const [i, client] of honest.entries()) client.answerFits(() => ({ delta: makeDelta(h.parameterCount, i), examples: 100 + 50 * i }));
    const history = await h.coordinator.run();
    expect(history).toHaveLength(1);
    const sent = await Promise.all(honest.map((c) => c.sent.next('honest ack')));
    expect(sent.every((s) => s.ack.ok)).toBe(true);
    expect(maxAbsDifference(h.coordinator.loop.weights, weightedMean(initial, sent))).toBeLessThan(1e-6);
  }

  it('refuses bad hellos with the specific code, and admits honest clients afterwards', async () => {
    // Prepare: two allowed identities, one revoked, one unknown.
    harness = await startHarness({ allowed: 2, revoked: 1, rounds: 1 });
    const h = harness;
    const allowed = h.identities[0]!;
    const stranger = generateIdentity();
    const otherCoordinator = generateIdentity();

    // Execute + Assert, one hostile hello at a time.
    expect((await h.refusal(h.hello(allowed, { protocolVersion: PROTOCOL_VERSION + 1 }))).code).toBe('PROTOCOL_VERSION');
    expect((await h.refusal(h.hello(stranger))).code).toBe('UNKNOWN_CLIENT');
    expect((await h.refusal(h.hello(h.revokedIdentities[0]!))).code).toBe('REVOKED_CLIENT');
    // Signed by the right key, but over another text (a flipped signature byte).
    const good = (connectionId: string) => h.hello(allowed)(connectionId) as Hello;
    const flipped = (connectionId: string) => {
      const hello = good(connectionId);
      const signature = Buffer.from(hello.signature, 'base64');
      signature[0] = signature[0]! ^ 1;
      return { ...hello, signature: signature.toString('base64') };
    };
    expect((await h.refusal(flipped)).code).toBe('BAD_SIGNATURE');
    expect((await h.refusal((id: string) => ({ ...good(id), signature: 'not base64!' }))).code).toBe('BAD_SIGNATURE');
    // A hello made for another coordinator does not verify here.
    expect((await h.refusal(h.hello(allowed, { signedFor: encodeKey(otherCoordinator.signing.publicKey) }))).code).toBe('BAD_SIGNATURE');
    // Claiming an allowed client's public key without its secret key.
    expect((await h.refusal(h.hello(stranger, { claimedSigningKey: encodeKey(allowed.signing.publicKey) }))).code).toBe('BAD_SIGNATURE');
    // A client clock 10 minutes off, either way (default limit 5 minutes): refused, naming the skew.
    const behind = await h.refusal(h.hello(allowed, { timestamp: Date.now() - 10 * 60_000 }));
    expect(behind).toMatchObject({ code: 'CLOCK_SKEW' });
    // The hello spends time in flight, so the measured skew is 600 s plus the delivery delay (minus it when ahead).
    expect(behind.message).toMatch(/clock is 60\d s behind the coordinator's \(limit 300 s\)/);
    const ahead = await h.refusal(h.hello(allowed, { timestamp: Date.now() + 10 * 60_000 }));
    expect(ahead).toMatchObject({ code: 'CLOCK_SKEW' });
    expect(ahead.message).toMatch(/clock is (59\d|600) s ahead of the coordinator's/);
    // Malformed hellos: no auth, wrong types, a key that is not a key.
    expect((await h.refusal(undefined)).code).toBe('BAD_MESSAGE');
    expect((await h.refusal((id: string) => ({ ...good(id), timestamp: 'now' }))).code).toBe('BAD_MESSAGE');
    expect((await h.refusal(h.hello(allowed, { claimedSigningKey: 'AAAA' }))).code).toBe('BAD_MESSAGE');

    // Nothing above became a member; honest clients still federate.
    expect(h.coordinator.loop.memberCount).toBe(0);
    await honestRoundStillWorks(h);
  });

  it('refuses a recorded hello on another connection, and a reused nonce even when re-signed for the new connection', async () => {
    harness = await startHarness({ allowed: 2, rounds: 1 });
    const h = harness;
    const first = await h.connect(0, { nonce: 'bm9uY2Utb25jZQ==' });
    expect(first.welcome.clientId).toMatch(/^[0-9a-f]{16}$/);
    // A captured hello replayed verbatim (while the first connection is live, and after it is gone):
    // it is signed over the first connection's session id.
    expect((await h.refusal(first.sentAuth)).code).toBe('BAD_SIGNATURE');
    // The client's own key re-signing the same nonce for a new connection: the nonce is spent.
    expect((await h.refusal(h.hello(h.identities[0]!, { nonce: 'bm9uY2Utb25jZQ==' }))).code).toBe('REPLAY');
    first.close();
    expect((await h.refusal(first.sentAuth)).code).toBe('BAD_SIGNATURE');
    await honestRoundStillWorks(h);
  });

  it('refuses a ready for another base (HASH_MISMATCH) and a ready with no examples', async () => {
    harness = await startHarness({ allowed: 2, rounds: 1 });
    const h = harness;
    const client = await h.connect(0);
    expect(await client.ready(10, 'f'.repeat(64))).toMatchObject({ ok: false, code: 'HASH_MISMATCH' });
    expect(await client.ready(0)).toMatchObject({ ok: false, code: 'BAD_MESSAGE' });
    expect(await client.call('ready', 'hello')).toMatchObject({ ok: false, code: 'BAD_MESSAGE' });
    expect(h.coordinator.loop.memberCount).toBe(0);
    client.close();
    await within(client.disconnected, 'disconnect');
    await honestRoundStillWorks(h);
  });

  it('rejects an update sealed by one client and sent over another client\'s connection', async () => {
    // Prepare: client 2 is the attacker; it holds (say, stole) client 0's envelope or key.
    harness = await startHarness({ allowed: 3, rounds: 1, strategy: { minClients: 3, minUpdates: 2 } });
    const h = harness;
    const [a, b, attacker] = (await h.ready([0, 1, 2])) as [RawClient, RawClient, RawClient];
    const initial = Float32Array.from(h.coordinator.loop.weights);
    const run = h.coordinator.run();
    const fit = await attacker.fits.next('fit');

    // Execute: an envelope sealed with client 0's key, sent on the attacker's socket, before client 0 answers.
    const forged = attacker.seal(fit.roundId, makeDelta(h.parameterCount, 99), 10_000, h.identities[0]!);
    const reply = await attacker.send(forged);

    // Assert: refused as a signature/identity mismatch; client 0's own update is then accepted, once.
    expect(reply).toMatchObject({ ok: false, code: 'BAD_SIGNATURE' });
    const sent = [await a.answerNext(makeDelta(h.parameterCount, 0), 100), await b.answerNext(makeDelta(h.parameterCount, 1), 150)];
    attacker.close();
    const history = await run;
    expect(sent.every((s) => s.ack.ok)).toBe(true);
    expect(history[0]).toMatchObject({ accepted: 2, examples: 250 });
    expect(history[0]!.rejected).toMatchObject({ BAD_SIGNATURE: 1 });
    expect(maxAbsDifference(h.coordinator.loop.weights, weightedMean(initial, sent))).toBeLessThan(1e-6);
  });

  it('lets a newer connection with one identity replace the older one, even mid-round', async () => {
    harness = await startHarness({ allowed: 3, rounds: 1, strategy: { minClients: 3, minUpdates: 2 } });
    const h = harness;
    const honest = await h.ready([0, 1]);
    const old = (await h.ready([2]))[0]!;
    const initial = Float32Array.from(h.coordinator.loop.weights);
    const run = h.coordinator.run();
    await old.fits.next('fit');
    for (const [i, client] of honest.entries()) expect((await client.answerNext(makeDelta(h.parameterCount, i), 100 + 50 * i)).ack.ok).toBe(true);

    // Execute: the same identity connects again while its old connection is selected and silent.
    const newer = await h.connect(2);

    // Assert: the old connection is told why and dropped; the round does not wait for it (it
    // settles now, long before the 20 s deadline), and the newer connection is the one admitted.
    expect(await old.problems.next('problem')).toMatchObject({ code: 'DUPLICATE_UPDATE' });
    expect(await within(old.disconnected, 'old disconnect')).toBe('io server disconnect');
    const history = await within(run, 'the round to settle without the replaced connection', 5_000);
    expect(history[0]).toMatchObject({ accepted: 2, dropped: 1 });
    expect(maxAbsDifference(h.coordinator.loop.weights, weightedMean(initial, honest.map((c) => c.sent.items[0]!)))).toBeLessThan(1e-6);
    expect(newer.connected).toBe(true);
    expect(await newer.ready(100)).toEqual({ ok: true });
  });

  it('refuses the next update of a key revoked in the allow-list file mid-session, and drops its socket', async () => {
    harness = await startHarness({ allowed: 3, rounds: 2, strategy: { minClients: 2, minUpdates: 2 } });
    const h = harness;
    const clients = await h.ready([0, 1, 2]);
    const [a, b, victim] = clients as [RawClient, RawClient, RawClient];
    a.answerFits(() => ({ delta: makeDelta(h.parameterCount, 0), examples: 100 }));
    b.answerFits(() => ({ delta: makeDelta(h.parameterCount, 1), examples: 150 }));
    const initial = Float32Array.from(h.coordinator.loop.weights);
    const run = h.coordinator.run();
    const fit = await victim.fits.next('fit');

    // Execute: the operator revokes the key on disk; the client then sends a valid update.
    h.revoke(2);
    const reply = await victim.send(victim.seal(fit.roundId, makeDelta(h.parameterCount, 2), 500));

    // Assert: typed refusal, socket dropped, round 1 is the honest mean, round 2 runs without it.
    expect(reply).toMatchObject({ ok: false, code: 'REVOKED_CLIENT' });
    expect(await within(victim.disconnected, 'victim disconnect')).toBe('io server disconnect');
    const history = await run;
    expect(history).toHaveLength(2);
    const round1 = [await a.sent.next(), await b.sent.next()];
    expect(round1.every((u) => u.ack.ok && u.round === 1)).toBe(true);
    expect(maxAbsDifference(h.roundWeights[0]!, weightedMean(initial, round1))).toBeLessThan(1e-6);
    expect(history[1]).toMatchObject({ selected: 2, accepted: 2 });
    // It cannot come back either.
    expect((await h.refusal(h.hello(h.identities[2]!))).code).toBe('REVOKED_CLIENT');
  });

  it('sends no more weights to a key revoked between rounds, even if it stays silent', async () => {
    harness = await startHarness({ allowed: 3, rounds: 2, strategy: { minClients: 3, minUpdates: 2 } });
    const h = harness;
    const clients = await h.ready([0, 1, 2]);
    for (const [i, client] of clients.entries()) client.answerFits(() => ({ delta: makeDelta(h.parameterCount, i), examples: 100 + 50 * i }));
    // The operator revokes client 2 on disk between rounds 1 and 2; client 2 sends nothing meanwhile.
    h.onRound = (record) => {
      if (record.round === 1) h.revoke(2);
    };
    const run = h.coordinator.run();
    const victim = clients[2]!;

    expect(await victim.problems.next('problem')).toMatchObject({ code: 'REVOKED_CLIENT' });
    expect(await within(victim.disconnected, 'victim disconnect')).toBe('io server disconnect');
    const history = await run;
    // Assert: the victim saw round 1's head only; round 2 aggregated the two others.
    expect(victim.fits.items.map((f) => f.round)).toEqual([1]);
    expect(history[1]).toMatchObject({ accepted: 2 });
    const sent = await Promise.all(clients.slice(0, 2).map(async (c) => [await c.sent.next(), await c.sent.next()]));
    const round2 = sent.map((pair) => pair[1]!);
    expect(round2.map((u) => [u.round, u.ack.ok])).toEqual([[2, true], [2, true]]);
    expect(maxAbsDifference(h.roundWeights[1]!, weightedMean(h.roundWeights[0]!, round2))).toBeLessThan(1e-6);
  });
});
