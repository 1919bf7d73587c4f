/**
 * Socket messages of secure aggregation over sockets: the coordinator's `secagg` event carries one
 * step's sealed payload to a client, the client's `secagg` event carries its sealed reply. The
 * payloads themselves are sealed and signed (shared/secagg/session.ts); these parsers check only
 * the outer shape of untrusted input, so nothing malformed reaches the state machines.
 */
import { FedtlError } from '../core/errors.ts';

/** Coordinator → client steps: start (advertise your keys), round keys, forwarded shares, survivors. */
export const SECAGG_STEPS = ['start', 'keys', 'forward', 'survivors'] as const;
export type SecAggStep = (typeof SECAGG_STEPS)[number];

export interface SecAggDown {
  readonly roundId: string;
  readonly step: SecAggStep;
  /** Number of inputs of the round (sizes the ring). */
  readonly clients: number;
  /** The sealed payload (empty for `start`). */
  readonly bytes: Uint8Array;
}

export interface SecAggUp {
  readonly roundId: string;
  readonly bytes: Uint8Array;
}

/** The weight a client carries in the ring: its example count, capped to the ring's largest weight. */
export function secAggWeight(examples: number, maxWeight: number): number {
  return Math.min(maxWeight, Math.max(1, Math.round(examples)));
}

const ROUND_ID_RE = /^secagg-r\d{1,9}-[0-9a-f]{12}$/;

function bytesOf(value: unknown, what: string, maxBytes: number): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new FedtlError('BAD_MESSAGE', `${what}: expected binary bytes`);
  if (value.byteLength > maxBytes) throw new FedtlError('TOO_LARGE', `${what}: ${value.byteLength} bytes, over ${maxBytes}`);
  return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
}

function roundIdOf(value: unknown, what: string): string {
  if (typeof value !== 'string' || !ROUND_ID_RE.test(value)) throw new FedtlError('BAD_MESSAGE', `${what}.roundId: expected a secure-aggregation round id`);
  return value;
}

function record(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FedtlError('BAD_MESSAGE', `${what}: expected an object`);
  return value as Record<string, unknown>;
}

export function parseSecAggUp(value: unknown, maxBytes: number): SecAggUp {
  const f = record(value, 'secagg');
  return { roundId: roundIdOf(f['roundId'], 'secagg'), bytes: bytesOf(f['bytes'], 'secagg.bytes', maxBytes) };
}

export function parseSecAggDown(value: unknown, maxBytes: number): SecAggDown {
  const f = record(value, 'secagg');
  const step = f['step'];
  if (typeof step !== 'string' || !(SECAGG_STEPS as readonly string[]).includes(step)) throw new FedtlError('BAD_MESSAGE', `secagg.step: expected one of ${SECAGG_STEPS.join(', ')}`);
  const clients = f['clients'];
  if (typeof clients !== 'number' || !Number.isSafeInteger(clients) || clients < 2 || clients > 1_000_000) throw new FedtlError('BAD_MESSAGE', 'secagg.clients: expected an integer ≥ 2');
  return { roundId: roundIdOf(f['roundId'], 'secagg'), step: step as SecAggStep, clients, bytes: bytesOf(f['bytes'], 'secagg.bytes', maxBytes) };
}
