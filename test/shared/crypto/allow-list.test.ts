import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FedtlError } from '../../../shared/core/errors.ts';
import type { Logger } from '../../../shared/core/log.ts';
import { AllowList, parseAllowList } from '../../../shared/crypto/allow-list.ts';
import { formatPublicIdentity, generateIdentity, publicIdentity } from '../../../shared/crypto/identity.ts';

const dir = mkdtempSync(join(tmpdir(), 'fedtl-allow-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const alice = publicIdentity(generateIdentity());
const bob = publicIdentity(generateIdentity());
const carol = publicIdentity(generateIdentity());
const line = formatPublicIdentity;

function quietLogger(): Logger & { errors: string[] } {
  const errors: string[] = [];
  return { errors, debug: () => {}, info: () => {}, warn: () => {}, error: (m) => errors.push(m) };
}

function parseError(text: string): string {
  try {
    parseAllowList(text, 'clients.allow');
  } catch (error) {
    if (error instanceof FedtlError) return `${error.code} ${error.message}`;
    throw error;
  }
  return 'OK';
}

describe('allow list parsing', () => {
  it('reads comments, names and revoked markers', () => {
    const entries = parseAllowList(
      ['# header', '', `${line(alice)} alice-hospital  # trailing comment`, `revoked ${line(bob)}`, `  ${line(carol)}`].join('\n'),
      'x',
    );
    expect(entries.map((e) => [e.clientId, e.status, e.name, e.line])).toEqual([
      [alice.clientId, 'allowed', 'alice-hospital', 3],
      [bob.clientId, 'revoked', undefined, 4],
      [carol.clientId, 'allowed', undefined, 5],
    ]);
  });

  it('names file:line in every error', () => {
    expect(parseError(`# ok\n${line(alice)}\nfedtl1:nope:nope`)).toMatch(/^CORRUPT_FILE clients.allow:3: /);
    expect(parseError(`${line(alice)} two words`)).toMatch(/clients.allow:1: unexpected text/);
    expect(parseError(`\n\nrevoked`)).toMatch(/clients.allow:3: 'revoked' must be followed/);
    expect(parseError(`${line(alice)} bad/name`)).toMatch(/clients.allow:1: name/);
    expect(parseError(`${line(alice)}\n${line(bob)}\nrevoked ${line(alice)}`)).toMatch(/clients.allow:3: .*already listed at line 1/);
    expect(parseError(`allowed ${line(alice)}`)).toMatch(/clients.allow:1: public identity must look like/);
  });
});

describe('AllowList', () => {
  it('answers allowed / unknown / revoked and resolves keys', () => {
    const list = AllowList.fromText(`${line(alice)} alice\nrevoked ${line(bob)} bob`);
    expect(list.isAllowed(alice.signingKey)).toBe('allowed');
    expect(list.isAllowed(bob.signingKey)).toBe('revoked');
    expect(list.isAllowed(carol.signingKey)).toBe('unknown');
    expect(list.statusOf(bob.clientId)).toBe('revoked');
    expect(list.resolveClient(alice.clientId)).toEqual(alice);
    expect(list.resolveClient(carol.clientId)).toBeUndefined();
    expect(() => list.resolveClient(bob.clientId)).toThrow(expect.objectContaining({ code: 'REVOKED_CLIENT' }));
  });

  it('reloads after an edit without restart, and after an editor-style rename', () => {
    const path = join(dir, 'reload.allow');
    writeFileSync(path, `${line(alice)}\n`);
    const list = AllowList.load(path, { logger: quietLogger() });
    expect(list.isAllowed(bob.signingKey)).toBe('unknown');
    writeFileSync(path, `${line(alice)}\n${line(bob)} bob\n`);
    expect(list.isAllowed(bob.signingKey)).toBe('allowed');
    expect(list.loadCount).toBe(2);
    writeFileSync(join(dir, 'tmp.allow'), `revoked ${line(alice)}\n${line(bob)} bob\n`);
    renameSync(join(dir, 'tmp.allow'), path);
    expect(list.isAllowed(alice.signingKey)).toBe('revoked');
  });

  it('keeps the last good list when the file becomes invalid or disappears, logging once', () => {
    const path = join(dir, 'invalid.allow');
    writeFileSync(path, `${line(alice)}\n`);
    const logger = quietLogger();
    const list = AllowList.load(path, { logger });
    writeFileSync(path, `${line(alice)}\ngarbage here\n`);
    expect(list.isAllowed(alice.signingKey)).toBe('allowed');
    expect(list.isAllowed(alice.signingKey)).toBe('allowed');
    expect(logger.errors).toHaveLength(1);
    expect(logger.errors[0]).toMatch(/invalid.allow:2/);
    rmSync(path);
    expect(list.isAllowed(alice.signingKey)).toBe('allowed');
    expect(logger.errors).toHaveLength(2);
    writeFileSync(path, `${line(carol)}\n`);
    expect(list.isAllowed(alice.signingKey)).toBe('unknown');
    expect(list.isAllowed(carol.signingKey)).toBe('allowed');
  });

  it('refuses an invalid file on first load', () => {
    const path = join(dir, 'bad.allow');
    writeFileSync(path, 'nonsense\n');
    expect(() => AllowList.load(path)).toThrow(/bad.allow:1/);
    expect(() => AllowList.load(join(dir, 'missing.allow'))).toThrow(expect.objectContaining({ code: 'BAD_CONFIG' }));
  });

  it('watch() applies an edit without any lookup', async () => {
    const path = join(dir, 'watch.allow');
    writeFileSync(path, `${line(alice)}\n`);
    const list = AllowList.load(path, { checkOnAccess: false, logger: quietLogger() });
    list.watch({ intervalMs: 10 });
    try {
      writeFileSync(path, `revoked ${line(alice)}\n`);
      await expect.poll(() => list.loadCount, { timeout: 2000, interval: 10 }).toBe(2);
      expect(list.isAllowed(alice.signingKey)).toBe('revoked');
    } finally {
      list.close();
    }
  });
});
