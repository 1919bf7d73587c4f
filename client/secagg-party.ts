/**
 * A socket client's side of secure aggregation (SecAgg+, Bell et al. 2020): after a fit round
 * whose signed config asks for it (`extra.secagg`), the client keeps its delta, sends the
 * coordinator a zero delta, and answers the coordinator's four steps with the sealed, signed
 * messages of `SecAggClientSession` — its real delta leaves only quantized and masked.
 */
import { FedtlError } from '../shared/core/errors.ts';
import type { Identity, SenderKeys } from '../shared/crypto/index.ts';
import type { FitConfig } from '../shared/strategy/strategy.ts';
import { secAggWeight, type SecAggDown } from '../shared/protocol/secagg-messages.ts';
import { ringCodec } from '../shared/secagg/quantize.ts';
import { SecAggClientSession } from '../shared/secagg/session.ts';

interface Pending {
  readonly delta: Float32Array;
  readonly ring: { bits: number; clipRange: number; maxWeight: number };
  weight: number;
  session?: SecAggClientSession;
  roundId?: string;
}

/** True when a fit config asks for secure aggregation. */
export function wantsSecAgg(config: FitConfig): boolean {
  return config.extra?.['secagg'] === true;
}

function ringOf(config: FitConfig): Pending['ring'] {
  const num = (key: string): number => {
    const v = config.extra?.[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new FedtlError('BAD_MESSAGE', `fit config ${key}: expected a positive number`);
    return v;
  };
  return { bits: num('secagg.bits'), clipRange: num('secagg.clipRange'), maxWeight: num('secagg.maxWeight') };
}

export class SecAggParty {
  readonly #identity: Identity;
  readonly #coordinator: SenderKeys;
  #pending: Pending | null = null;

  constructor(identity: Identity, coordinator: SenderKeys) {
    this.#identity = identity;
    this.#coordinator = coordinator;
  }

  /** Keeps this round's delta for masking; returns what the fit update carries instead (zeros). */
  hold(delta: Float32Array, config: FitConfig): Float32Array {
    this.#pending = { delta: Float32Array.from(delta), ring: ringOf(config), weight: 1 };
    return new Float32Array(delta.length);
  }

  /** The example count of the held delta, once the fit round knows it. */
  setExamples(examples: number): void {
    if (this.#pending) this.#pending.weight = secAggWeight(examples, this.#pending.ring.maxWeight);
  }

  /** Answers one step of the coordinator; throws a `FedtlError` on a message it cannot accept. */
  answer(down: SecAggDown): Uint8Array {
    const p = this.#pending;
    if (!p) throw new FedtlError('STALE_ROUND', `secure-aggregation step ${down.step} without a held delta`);
    if (down.step === 'start') {
      if (p.session) throw new FedtlError('REPLAY', 'secure aggregation already started for the held delta');
      const codec = ringCodec({ maxClients: down.clients, ...p.ring });
      p.roundId = down.roundId;
      p.session = new SecAggClientSession({ roundId: down.roundId, identity: this.#identity, coordinator: this.#coordinator, codec });
      return p.session.advertise();
    }
    if (!p.session || p.roundId !== down.roundId) throw new FedtlError('STALE_ROUND', `secure-aggregation step ${down.step} of round ${down.roundId} is not the current one`);
    switch (down.step) {
      case 'keys':
        return p.session.onRoundKeys(down.bytes);
      case 'forward':
        return p.session.onForwardedShares(down.bytes, { delta: p.delta, weight: p.weight });
      case 'survivors': {
        const reply = p.session.onSurvivors(down.bytes);
        this.#pending = null; // the round is over for this client: nothing of the delta is kept
        return reply;
      }
    }
  }
}
