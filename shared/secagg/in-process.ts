/**
 * One secure-aggregation round with every client in this process: the transport for virtual
 * clients (`fedtl simulate --secure-aggregation`) and for the protocol benchmark. Messages still
 * go through the sealed, signed envelopes and the byte encodings, exactly as over sockets; only
 * the socket is missing. Client and coordinator time are measured separately.
 */
import { performance } from 'node:perf_hooks';
import { FedtlError } from '../core/errors.ts';
import type { Identity } from '../crypto/index.ts';
import { clientIdFromSigningKey } from '../crypto/index.ts';
import type { SecAggPhase, SecAggResult } from './protocol.ts';
import type { RingCodec } from './quantize.ts';
import { SecAggClientSession, SecAggServerSession } from './session.ts';

/** A virtual client of the round. */
export interface InProcessClient {
  readonly identity: Identity;
  /** Its (already clipped / noised) delta. */
  readonly delta: Float32Array;
  /** Integer FedAvg weight in [1, codec.maxWeight]. */
  readonly weight: number;
  readonly extra?: readonly number[];
  /** The phase whose message it never sends (it drops out just before). @default never drops */
  readonly dropBefore?: Exclude<SecAggPhase, 'done' | 'failed'>;
}

/** Options of {@link runSecAggRound}. */
export interface InProcessRoundOptions {
  readonly roundId: string;
  readonly coordinator: Identity;
  readonly codec: RingCodec;
  readonly clients: readonly InProcessClient[];
  readonly degree?: number;
  readonly threshold?: number;
  readonly minSurvivors?: number;
  /** Quantize with subtractive dither (distributed DP). @default false */
  readonly dither?: boolean;
  /** Test hook: rewrites a client's sealed message of a phase before the coordinator sees it. */
  readonly intercept?: (phase: SecAggPhase, clientId: string, sealed: Uint8Array) => Uint8Array;
}

/** The result plus where the time went. */
export interface InProcessRound extends SecAggResult {
  /** Coordinator CPU time (opening, checking, summing, reconstructing, unmasking), ms. */
  readonly coordinatorMs: number;
  /** Each client's protocol time (keys, shares, quantize + mask, sealing), ms. */
  readonly clientMs: ReadonlyMap<string, number>;
  /** Bytes each client sent, summed over the phases. */
  readonly bytesSent: number;
}

export function runSecAggRound(options: InProcessRoundOptions): InProcessRound {
  const { roundId, coordinator, codec } = options;
  const byId = new Map(options.clients.map((c) => [clientIdFromSigningKey(c.identity.signing.publicKey), c]));
  const vectorLength = (options.clients[0]?.delta.length ?? 0) + 1 + (options.clients[0]?.extra?.length ?? 0);
  const clientMs = new Map<string, number>([...byId.keys()].map((id) => [id, 0]));
  let coordinatorMs = 0;
  let bytesSent = 0;
  const onServer = <T>(fn: () => T): T => {
    const t = performance.now();
    try {
      return fn();
    } finally {
      coordinatorMs += performance.now() - t;
    }
  };
  const onClient = <T>(id: string, fn: () => T): T => {
    const t = performance.now();
    try {
      return fn();
    } finally {
      clientMs.set(id, (clientMs.get(id) ?? 0) + performance.now() - t);
    }
  };
  const server = new SecAggServerSession({
    roundId,
    coordinator,
    codec,
    vectorLength,
    selected: [...byId.keys()],
    resolveClient: (id) => {
      const c = byId.get(id);
      return c && { signingKey: c.identity.signing.publicKey, boxKey: c.identity.box.publicKey };
    },
    ...(options.degree === undefined ? {} : { degree: options.degree }),
    ...(options.threshold === undefined ? {} : { threshold: options.threshold }),
    ...(options.minSurvivors === undefined ? {} : { minSurvivors: options.minSurvivors }),
  });
  const coordinatorKeys = { signingKey: coordinator.signing.publicKey, boxKey: coordinator.box.publicKey };
  const sessions = new Map(
    [...byId].map(([id, c]) => [id, new SecAggClientSession({ roundId, identity: c.identity, coordinator: coordinatorKeys, codec, dither: options.dither ?? false })]),
  );
  const order: SecAggPhase[] = ['advertise', 'share', 'mask', 'unmask'];
  const alive = (id: string, phase: SecAggPhase): boolean => {
    const drop = byId.get(id)?.dropBefore;
    return drop === undefined || order.indexOf(phase) < order.indexOf(drop);
  };
  const deliver = (phase: SecAggPhase, id: string, sealed: Uint8Array): void => {
    const bytes = options.intercept ? options.intercept(phase, id, sealed) : sealed;
    bytesSent += bytes.length;
    onServer(() => server.receive(bytes));
  };

  for (const [id, s] of sessions) if (alive(id, 'advertise')) deliver('advertise', id, onClient(id, () => s.advertise()));
  const keys = onServer(() => server.closeAdvertise());
  for (const [id, sealed] of keys) if (alive(id, 'share')) deliver('share', id, onClient(id, () => (sessions.get(id) as SecAggClientSession).onRoundKeys(sealed)));
  const forwarded = onServer(() => server.closeShares());
  for (const [id, sealed] of forwarded) {
    if (!alive(id, 'mask')) continue;
    const c = byId.get(id) as InProcessClient;
    const masked = onClient(id, () => (sessions.get(id) as SecAggClientSession).onForwardedShares(sealed, { delta: c.delta, weight: c.weight, ...(c.extra ? { extra: c.extra } : {}) }));
    deliver('mask', id, masked);
  }
  const survivors = onServer(() => server.closeMaskedInput());
  for (const [id, sealed] of survivors) if (alive(id, 'unmask')) deliver('unmask', id, onClient(id, () => (sessions.get(id) as SecAggClientSession).onSurvivors(sealed)));
  const result = onServer(() => server.finish({ withDither: options.dither ?? false }));
  if (result.sum.length !== vectorLength) throw new FedtlError('INTERNAL', 'secure aggregation sum has the wrong length');
  return { ...result, coordinatorMs, clientMs, bytesSent };
}
