/**
 * Public API of `shared/crypto`: identities, the allow list and the sealed update envelope.
 * `native-keys.ts` is internal and deliberately not re-exported.
 */
export {
  IDENTITY_FILE_KIND,
  IDENTITY_FILE_VERSION,
  PUBLIC_IDENTITY_PREFIX,
  PUBLIC_KEY_BYTES,
  clientIdFromSigningKey,
  decodeKey,
  encodeKey,
  formatPublicIdentity,
  generateIdentity,
  identityFromSecrets,
  loadIdentity,
  parsePublicIdentity,
  publicIdentity,
  saveIdentity,
} from './identity.ts';
export type { Identity, PublicIdentity, SaveIdentityOptions } from './identity.ts';
export { AllowList, parseAllowList } from './allow-list.ts';
export type { AllowListEntry, AllowListOptions, AllowStatus } from './allow-list.ts';
export {
  UPDATE_FORMAT_VERSION,
  UPDATE_HEADER_VERSION,
  keyId,
  openUpdate,
  openUpdateAsync,
  openUpdateInto,
  openUpdateRows,
  sealPayload,
  sealUpdate,
} from './update-envelope.ts';
export type {
  ClientPublicKeys,
  DeltaStats,
  EnvelopeLimits,
  ExpectedUpdate,
  OpenUpdateOptions,
  OpenedRows,
  OpenedUpdate,
  PayloadEncoding,
  SealUpdateOptions,
  UpdateHeader,
  UpdateHeaderInput,
} from './update-envelope.ts';
export { createHello, signEvaluation, signReady, verifyClientSignature, type ReportBinding } from './hello.ts';
export { MESSAGE_FORMAT_VERSION, ephemeralKeyPair, openMessage, sealMessage, x25519Agree } from './sealed-message.ts';
export type { MessageHeader, OpenMessageOptions, OpenedMessage, SealMessageOptions, SenderKeys } from './sealed-message.ts';
export { signText, verifyText } from './signatures.ts';
