/**
 * One error class for the whole project, with a machine-readable code.
 *
 * Codes are data (an `as const` map) so the protocol can carry them to a peer and tests can
 * match on them without parsing messages.
 */
export const ERROR_CODES = {
  BAD_CONFIG: 'BAD_CONFIG',
  BAD_DATA: 'BAD_DATA',
  BAD_MODEL: 'BAD_MODEL',
  BAD_MESSAGE: 'BAD_MESSAGE',
  BAD_SHAPE: 'BAD_SHAPE',
  NON_FINITE: 'NON_FINITE',
  /** A finite value outside an accepted range, e.g. an update element above `maxAbs`. */
  OUT_OF_RANGE: 'OUT_OF_RANGE',
  TOO_LARGE: 'TOO_LARGE',
  BAD_SIGNATURE: 'BAD_SIGNATURE',
  DECRYPT_FAILED: 'DECRYPT_FAILED',
  UNKNOWN_CLIENT: 'UNKNOWN_CLIENT',
  REVOKED_CLIENT: 'REVOKED_CLIENT',
  PROTOCOL_VERSION: 'PROTOCOL_VERSION',
  REPLAY: 'REPLAY',
  STALE_ROUND: 'STALE_ROUND',
  NOT_SELECTED: 'NOT_SELECTED',
  DUPLICATE_UPDATE: 'DUPLICATE_UPDATE',
  DEADLINE_PASSED: 'DEADLINE_PASSED',
  RATE_LIMITED: 'RATE_LIMITED',
  /** Too many connections waiting for admission, from one address or in total. */
  TOO_MANY_CONNECTIONS: 'TOO_MANY_CONNECTIONS',
  /** A connection did not present an accepted hello in time. */
  ADMISSION_TIMEOUT: 'ADMISSION_TIMEOUT',
  /** A hello's timestamp is further from the coordinator's clock than allowed. */
  CLOCK_SKEW: 'CLOCK_SKEW',
  HASH_MISMATCH: 'HASH_MISMATCH',
  /** A round message refers to weights (by digest) that the client does not hold; it asks for them in full. */
  WEIGHTS_NOT_HELD: 'WEIGHTS_NOT_HELD',
  CORRUPT_FILE: 'CORRUPT_FILE',
  /** A file could not be written (disk full, permissions, a path that is not a directory). */
  STORAGE: 'STORAGE',
  QUORUM_NOT_MET: 'QUORUM_NOT_MET',
  /** Secure aggregation could not produce a verified sum (inconsistent shares, too few survivors). */
  SECAGG_FAILED: 'SECAGG_FAILED',
  /** A round would exceed the configured differential-privacy budget (ε). */
  PRIVACY_BUDGET: 'PRIVACY_BUDGET',
  BACKEND: 'BACKEND',
  INTERNAL: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

export class FedtlError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FedtlError';
    this.code = code;
  }
}

/** Turns anything thrown into a FedtlError at an edge (socket handler, CLI), keeping the cause. */
export function toFedtlError(thrown: unknown, fallback: ErrorCode = 'INTERNAL'): FedtlError {
  if (thrown instanceof FedtlError) return thrown;
  const message = thrown instanceof Error ? thrown.message : String(thrown);
  return new FedtlError(fallback, message, { cause: thrown });
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}
