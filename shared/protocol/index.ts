/** Public API of `shared/protocol`: the one wire contract between coordinator and clients. */
export * from './protocol.ts';
