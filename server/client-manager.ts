/**
 * Client membership, in one place: who is connected, who is ready to train (base loaded, features
 * computed), and who is busy with a round it was sent. The round loop asks it for candidates and
 * waits on it for enough ready clients; the coordinator (sockets) and the simulator (virtual
 * clients) tell it who arrives and leaves.
 */
import { FedtlError } from '../shared/core/errors.ts';
import type { EvaluateRequest, FitRequest } from '../shared/protocol/protocol.ts';
import type { Candidate } from '../shared/strategy/strategy.ts';

/**
 * A client as the loop sees it: something that can be asked to fit or evaluate. Each request comes
 * with the digest its signature covers (`roundWeightsDigest`), so a transport can refer to weights the
 * client already holds instead of sending them again; each send returns the bytes of weights it
 * actually sent (nothing: all of them).
 */
export interface Participant {
  readonly clientId: string;
  sendFit(request: FitRequest, weightsDigest: string): number | void;
  sendEvaluate(request: EvaluateRequest, weightsDigest: string): number | void;
}

export type ClientStatus = 'connected' | 'ready' | 'busy';

interface Member {
  participant: Participant;
  examples: number;
  busy: boolean;
}

export class ClientManager {
  readonly #connected = new Set<string>();
  readonly #ready = new Map<string, Member>();
  #changed: (() => void) | null = null;

  /** A client whose connection was admitted (it is not ready yet). */
  connect(clientId: string): void {
    this.#connected.add(clientId);
  }

  /** A client ready to train with `examples` training examples. */
  ready(participant: Participant, examples: number): void {
    this.#connected.add(participant.clientId);
    this.#ready.set(participant.clientId, { participant, examples, busy: false });
    this.#notify();
  }

  /** A client that left (disconnected or was removed); returns whether it was ready. */
  remove(clientId: string): boolean {
    this.#connected.delete(clientId);
    const wasReady = this.#ready.delete(clientId);
    this.#notify();
    return wasReady;
  }

  status(clientId: string): ClientStatus | null {
    const member = this.#ready.get(clientId);
    if (member) return member.busy ? 'busy' : 'ready';
    return this.#connected.has(clientId) ? 'connected' : null;
  }

  get connectedCount(): number {
    return this.#connected.size;
  }

  /** Ready clients, busy ones included. */
  get readyCount(): number {
    return this.#ready.size;
  }

  has(clientId: string): boolean {
    return this.#ready.has(clientId);
  }

  participant(clientId: string): Participant | undefined {
    return this.#ready.get(clientId)?.participant;
  }

  /** Ready clients not busy with a round, in arrival order. */
  candidates(): Candidate[] {
    const out: Candidate[] = [];
    for (const [clientId, member] of this.#ready) if (!member.busy) out.push({ clientId, lastExampleCount: member.examples });
    return out;
  }

  setBusy(clientId: string, busy: boolean): void {
    const member = this.#ready.get(clientId);
    if (member) member.busy = busy;
  }

  /** Resolves once `minimum` clients are ready; throws QUORUM_NOT_MET after `timeoutMs`, returns early if `stopped()`. */
  async waitForReady(minimum: number, timeoutMs: number, stopped: () => boolean, onWait: (ready: number) => void): Promise<void> {
    const limit = Date.now() + timeoutMs;
    while (this.#ready.size < minimum && !stopped()) {
      const remaining = limit - Date.now();
      if (remaining <= 0) throw new FedtlError('QUORUM_NOT_MET', `only ${this.#ready.size} client(s) connected after waiting; ${minimum} needed`);
      onWait(this.#ready.size);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.#changed = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#changed = null;
    }
  }

  /** Wakes a pending {@link waitForReady} (membership changed, or the loop stopped). */
  #notify(): void {
    this.#changed?.();
  }

  wake(): void {
    this.#notify();
  }
}
