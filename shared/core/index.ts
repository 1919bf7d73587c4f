/** Public API of `shared/core`: the project's error class, logger and transfer check. */
export { FedtlError, ERROR_CODES, toFedtlError, isErrorCode } from './errors.ts';
export type { ErrorCode } from './errors.ts';
export { createLogger } from './log.ts';
export type { Logger, LogLevel } from './log.ts';
export { ownsWholeBuffer } from './transfer.ts';
