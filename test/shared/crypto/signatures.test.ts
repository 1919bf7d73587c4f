import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { generateIdentity } from '../../../shared/crypto/identity.ts';
import { signText, verifyText } from '../../../shared/crypto/signatures.ts';

describe('protocol text signatures', () => {
  it('are byte-identical to tweetnacl signatures and verify both ways', () => {
    const identity = generateIdentity();
    const text = 'fedtl-fit/v1|run-r3-a1-fit|3|1700000000000|abc|1,32,0.01,adam';
    const native = signText(text, identity.signing.secretKey);
    const reference = nacl.sign.detached(new TextEncoder().encode(text), identity.signing.secretKey);
    expect(Buffer.from(native).toString('hex')).toBe(Buffer.from(reference).toString('hex'));
    expect(verifyText(text, reference, identity.signing.publicKey)).toBe(true);
    expect(nacl.sign.detached.verify(new TextEncoder().encode(text), native, identity.signing.publicKey)).toBe(true);
  });

  it('refuses another text, another key, a flipped bit and malformed inputs', () => {
    const identity = generateIdentity();
    const other = generateIdentity();
    const signature = signText('hello', identity.signing.secretKey);
    expect(verifyText('hellO', signature, identity.signing.publicKey)).toBe(false);
    expect(verifyText('hello', signature, other.signing.publicKey)).toBe(false);
    const flipped = Uint8Array.from(signature);
    flipped[10]! ^= 1;
    expect(verifyText('hello', flipped, identity.signing.publicKey)).toBe(false);
    expect(verifyText('hello', signature.subarray(0, 63), identity.signing.publicKey)).toBe(false);
    expect(verifyText('hello', signature, new Uint8Array(31))).toBe(false);
  });
});
