/**
 * Coordinator SIGKILL during aggregation: a coordinator in a child process is killed with SIGKILL
 * while round k+1 is folding in updates (after round k's checkpoint is on disk), then started
 * again on the same port and checkpoint directory. The clients reconnect by themselves. The run
 * must resume from round k's complete checkpoint (ignoring the debris a kill during a save leaves)
 * and end with the head an uninterrupted run reaches: the scripted clients' deltas depend only on
 * (round, client, received head), so both runs must agree to the last bit, for every registered
 * strategy (the server state of FedAvgM and the server optimizers is in the checkpoint).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ChildConfig } from '../../scripts/stress/coordinator-child.ts';
import { loadCheckpoint } from '../../server/checkpoint.ts';
import { formatPublicIdentity, generateIdentity, publicIdentity, saveIdentity, type Identity } from '../../shared/crypto/identity.ts';
import type { FitRequest } from '../../shared/protocol/protocol.ts';
import { strategyNames } from '../../shared/strategy/registry.ts';
import { maxAbsDifference } from '../support/hostile.ts';
import { CoordinatorChild, ScriptedClient, within, writeResult } from './stress-support.ts';

const CLIENTS = 6;
const ROUNDS = 5;
/** Killed while round KILL_AFTER + 1 aggregates. */
const KILL_AFTER = 2;

/** Pulls the head towards a per-client target, plus a round-dependent wiggle: a function of (round, client, head) only. */
function deterministicDelta(round: number, client: number, weights: Float32Array): Float32Array {
  const delta = new Float32Array(weights.length);
  for (let j = 0; j < weights.length; j++) {
    const target = ((((j + 1) * 2654435761 + client * 40503) >>> 0) % 2001) / 2000 - 0.5;
    delta[j] = 0.2 * (target - weights[j]!) + 0.001 * Math.sin(round * (client + 1) + j);
  }
  return delta;
}

const examplesOf = (i: number) => 40 + 25 * i;

describe('coordinator killed with SIGKILL during aggregation', () => {
  let dir = '';
  const children: CoordinatorChild[] = [];
  const clients: ScriptedClient[] = [];

  afterEach(async () => {
    for (const client of clients) client.close();
    for (const child of children) {
      child.kill();
      await child.exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it.each(strategyNames())('%s: resumes from the last complete checkpoint and ends with the bytes of an uninterrupted run', async (strategy) => {
    // Prepare: one coordinator identity and allow list for both runs.
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-stress-crash-'));
    const coordinatorIdentity = generateIdentity();
    saveIdentity(path.join(dir, 'coordinator.key'), coordinatorIdentity);
    const identities: Identity[] = Array.from({ length: CLIENTS }, () => generateIdentity());
    await writeFile(path.join(dir, 'clients.allow'), identities.map((id, i) => `${formatPublicIdentity(publicIdentity(id))} c${i}`).join('\n') + '\n');
    const pub = publicIdentity(coordinatorIdentity);
    const config = (checkpointDir: string, port = 0): ChildConfig => ({
      identityFile: path.join(dir, 'coordinator.key'),
      allowFile: path.join(dir, 'clients.allow'),
      rounds: ROUNDS,
      minClients: CLIENTS,
      checkpointDir,
      port,
      roundTimeoutMs: 60_000,
      strategy,
    });
    const startClients = (url: string, update: (i: number) => (fit: FitRequest, weights: Float32Array) => Float32Array | null): ScriptedClient[] =>
      identities.map((identity, i) => {
        const client = new ScriptedClient({ url, identity, coordinator: { signingKey: pub.signingKey, boxKey: pub.boxKey }, examples: examplesOf(i), update: update(i), reconnect: true });
        clients.push(client);
        return client;
      });

    // Reference: the same federation without a crash.
    const referenceDir = path.join(dir, 'reference');
    const reference = await CoordinatorChild.start(path.join(dir, 'reference.json'), config(referenceDir));
    children.push(reference);
    const referenceClients = startClients(`http://127.0.0.1:${reference.port}`, (i) => (fit, weights) => deterministicDelta(fit.round, i, weights));
    await reference.next((e) => e.event === 'finished', 'the reference run', 120_000);
    for (const client of referenceClients) client.close();
    const expected = (await loadCheckpoint(referenceDir))!;

    // Execute: the same run, killed while round KILL_AFTER + 1 has half of its updates folded in.
    const crashDir = path.join(dir, 'crash');
    const first = await CoordinatorChild.start(path.join(dir, 'crash-1.json'), config(crashDir));
    children.push(first);
    const port = first.port;
    let holding = true;
    const crashClients = startClients(`http://127.0.0.1:${port}`, (i) => (fit, weights) =>
      // In the round to be interrupted, the second half stays silent so the round cannot finish.
      holding && fit.round === KILL_AFTER + 1 && i >= CLIENTS / 2 ? null : deterministicDelta(fit.round, i, weights),
    );
    await first.next((e) => e.event === 'round' && e.record.round === KILL_AFTER, `round ${KILL_AFTER}'s checkpoint`, 120_000);
    await within(
      Promise.all(crashClients.slice(0, CLIENTS / 2).map((c) => c.sentSatisfies((sent) => sent.some((s) => s.round === KILL_AFTER + 1 && s.ack.ok)))),
      `half of round ${KILL_AFTER + 1}'s updates`,
      60_000,
    );
    const beforeKill = await loadCheckpoint(crashDir);
    first.kill('SIGKILL');
    const exit = await first.exited;
    holding = false;
    // What a kill in the middle of the next save would leave: a torn temp file and an unreferenced head.
    await writeFile(path.join(crashDir, 'checkpoint.json.99999.tmp'), '{"format":"fedtl-checkpoint/v1","round":3,"weightsFile":"head-');
    await writeFile(path.join(crashDir, `head-${KILL_AFTER + 1}.bin`), Buffer.alloc(100, 7));
    const restarted = await CoordinatorChild.start(path.join(dir, 'crash-2.json'), config(crashDir, port));
    children.push(restarted);
    await restarted.next((e) => e.event === 'finished', 'the resumed run', 120_000);

    // Assert: killed by the signal, resumed at KILL_AFTER on the same port, same final head.
    expect(exit.signal).toBe('SIGKILL');
    expect(beforeKill?.round).toBe(KILL_AFTER);
    const listening = restarted.events.find((e) => e.event === 'listening');
    expect(listening).toMatchObject({ port, resumedRounds: KILL_AFTER });
    const actual = (await loadCheckpoint(crashDir))!;
    expect(actual.round).toBe(ROUNDS);
    expect(actual.history.map((r) => [r.round, r.accepted, r.examples])).toEqual(expected.history.map((r) => [r.round, CLIENTS, r.examples]));
    // The interrupted round's updates from before the kill were not carried over: it counted each client once.
    expect(actual.history[KILL_AFTER]!.accepted).toBe(CLIENTS);
    const difference = maxAbsDifference(actual.weights, expected.weights);
    const identical = Buffer.from(actual.weights.buffer, actual.weights.byteOffset, actual.weights.byteLength).equals(Buffer.from(expected.weights.buffer, expected.weights.byteOffset, expected.weights.byteLength));
    expect(difference).toBe(0);
    // The strategy's server state travelled in the checkpoint: the same bytes as without the kill.
    expect(identical).toBe(true);
    expect(actual.strategy?.name).toBe(strategy);
    // Every client answered the interrupted round twice at most (once before the kill, once after), and every later round once.
    for (const client of crashClients) {
      expect(client.sent.filter((s) => s.round > KILL_AFTER + 1 && s.ack.ok).map((s) => s.round)).toEqual(Array.from({ length: ROUNDS - KILL_AFTER - 1 }, (_, k) => KILL_AFTER + 2 + k));
    }
    const result = { strategy, clients: CLIENTS, rounds: ROUNDS, killedDuringRound: KILL_AFTER + 1, resumedFrom: KILL_AFTER, identicalBytes: identical, maxAbsDifference: difference };
    await writeResult(`coordinator-crash-${strategy}.json`, result);
    process.stdout.write(`\n[stress:crash] ${JSON.stringify(result)}\n`);
  });
});
