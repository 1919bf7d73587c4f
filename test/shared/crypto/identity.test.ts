import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  clientIdFromSigningKey,
  formatPublicIdentity,
  generateIdentity,
  loadIdentity,
  parsePublicIdentity,
  publicIdentity,
  saveIdentity,
} from '../../../shared/crypto/identity.ts';

const dir = mkdtempSync(join(tmpdir(), 'fedtl-identity-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const posix = process.platform !== 'win32';

describe('identity files', () => {
  it.runIf(posix)('saves with mode 0o600 and loads the same keys', () => {
    const path = join(dir, 'a.json');
    const id = generateIdentity();
    saveIdentity(path, id);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const loaded = loadIdentity(path);
    expect(Buffer.from(loaded.signing.secretKey).equals(Buffer.from(id.signing.secretKey))).toBe(true);
    expect(Buffer.from(loaded.box.secretKey).equals(Buffer.from(id.box.secretKey))).toBe(true);
    expect(publicIdentity(loaded)).toEqual(publicIdentity(id));
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ kind: 'fedtl-identity', version: 1 });
  });

  it.runIf(posix)('refuses to overwrite without force; force keeps 0o600 even over a 0o644 file', () => {
    const path = join(dir, 'b.json');
    saveIdentity(path, generateIdentity());
    expect(() => saveIdentity(path, generateIdentity())).toThrow(/already exists.*force/);
    chmodSync(path, 0o644);
    const next = generateIdentity();
    saveIdentity(path, next, { force: true });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(publicIdentity(loadIdentity(path))).toEqual(publicIdentity(next));
  });

  it.runIf(posix)('refuses a group/world-readable file, saying how to fix it', () => {
    const path = join(dir, 'c.json');
    saveIdentity(path, generateIdentity());
    chmodSync(path, 0o644);
    expect(() => loadIdentity(path)).toThrow(/0o644.*chmod 600/);
    chmodSync(path, 0o640);
    expect(() => loadIdentity(path)).toThrow(/chmod 600/);
  });

  it('rejects corrupted content: mismatched public key, bad lengths, wrong kind', () => {
    const path = join(dir, 'd.json');
    saveIdentity(path, generateIdentity());
    const good = JSON.parse(readFileSync(path, 'utf8')) as Record<string, Record<string, string>>;
    const variants: [string, (f: Record<string, Record<string, string>>) => void, RegExp][] = [
      ['swapped key', (f) => (f['signing']!['publicKey'] = publicIdentity(generateIdentity()).signingKey), /does not match/],
      ['short seed', (f) => (f['signing']!['seed'] = Buffer.alloc(16).toString('base64')), /signing.seed/],
      ['box mismatch', (f) => (f['box']!['publicKey'] = publicIdentity(generateIdentity()).boxKey), /box.publicKey does not match/],
      ['kind', (f) => ((f as Record<string, unknown>)['kind'] = 'other'), /kind/],
    ];
    for (const [, edit, message] of variants) {
      const copy = structuredClone(good);
      edit(copy);
      rmSync(path);
      writeFileSync(path, JSON.stringify(copy), { mode: 0o600 });
      expect(() => loadIdentity(path)).toThrow(message);
    }
    rmSync(path);
    writeFileSync(path, '{not json', { mode: 0o600 });
    expect(() => loadIdentity(path)).toThrow(/not valid JSON/);
  });
});

describe('public identity', () => {
  it('client id is stable, 16 hex, derived from the signing key', () => {
    const id = generateIdentity();
    const pub = publicIdentity(id);
    expect(pub.clientId).toMatch(/^[0-9a-f]{16}$/);
    expect(clientIdFromSigningKey(pub.signingKey)).toBe(pub.clientId);
    expect(publicIdentity(id).clientId).toBe(pub.clientId);
  });

  it('one-line form round-trips and is parsed strictly', () => {
    const pub = publicIdentity(generateIdentity());
    const line = formatPublicIdentity(pub);
    expect(line).toMatch(/^fedtl1:[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$/);
    expect(parsePublicIdentity(line)).toEqual(pub);
    expect(() => parsePublicIdentity(line.replace('fedtl1', 'fedtl2'))).toThrow(/fedtl1/);
    expect(() => parsePublicIdentity(`${line}:x`)).toThrow();
    expect(() => parsePublicIdentity(line.slice(0, -2))).toThrow(/canonical base64/);
    // Node's base64 decoder skips junk characters; the parser must not.
    expect(() => parsePublicIdentity(line.replace(pub.boxKey, `${pub.boxKey.slice(0, 10)}!${pub.boxKey.slice(10)}`))).toThrow();
  });
});
