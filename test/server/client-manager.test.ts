import { describe, expect, it } from 'vitest';
import { ClientManager, type Participant } from '../../server/client-manager.ts';

const participant = (clientId: string): Participant => ({ clientId, sendFit: () => undefined, sendEvaluate: () => undefined });

describe('ClientManager', () => {
  it('tracks connected, ready and busy clients; busy ones are not candidates', () => {
    const clients = new ClientManager();
    clients.connect('a');
    expect(clients.status('a')).toBe('connected');
    expect(clients.candidates()).toEqual([]);
    clients.ready(participant('a'), 10);
    clients.ready(participant('b'), 20);
    expect(clients.status('a')).toBe('ready');
    expect(clients.connectedCount).toBe(2);
    clients.setBusy('a', true);
    expect(clients.status('a')).toBe('busy');
    expect(clients.candidates()).toEqual([{ clientId: 'b', lastExampleCount: 20 }]);
    expect(clients.readyCount).toBe(2);
    clients.setBusy('a', false);
    expect(clients.remove('b')).toBe(true);
    expect(clients.status('b')).toBeNull();
    expect(clients.candidates().map((c) => c.clientId)).toEqual(['a']);
  });

  it('waits for enough ready clients, wakes on arrival, and times out with QUORUM_NOT_MET', async () => {
    const clients = new ClientManager();
    const waiting = clients.waitForReady(2, 60_000, () => false, () => undefined);
    clients.ready(participant('a'), 1);
    clients.ready(participant('b'), 1);
    await waiting;
    await expect(clients.waitForReady(3, 30, () => false, () => undefined)).rejects.toMatchObject({ code: 'QUORUM_NOT_MET' });
    let stopped = false;
    const stopping = clients.waitForReady(5, 60_000, () => stopped, () => undefined);
    stopped = true;
    clients.wake();
    await stopping;
  });
});
