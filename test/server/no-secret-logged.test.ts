/**
 * No secret key material in logs: a whole federation (coordinator + two real clients, two rounds)
 * runs with every logger at debug level while stdout and stderr are captured; none of the
 * participants' secret keys may appear in any common encoding. Also covers the two other places a
 * secret could leak into output: `fedtl keygen`'s output, and the error (with its cause, which the
 * CLI prints at debug level) for an identity file whose secret is not canonical base64.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { generateIdentity, loadIdentity, saveIdentity, type Identity } from '../../shared/crypto/identity.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { Federation } from '../support/federation.ts';

/** Every spelling of every secret of `identities` we would consider a leak. */
function secretSpellings(identities: readonly Identity[]): string[] {
  const spellings: string[] = [];
  for (const identity of identities) {
    const secrets = [identity.signing.secretKey, identity.signing.secretKey.subarray(0, 32), identity.box.secretKey];
    for (const secret of secrets) {
      const buffer = Buffer.from(secret);
      const base64 = buffer.toString('base64');
      // A prefix of the base64 catches truncated quotes ("got 'AbC...'") too.
      spellings.push(base64.replace(/=+$/, ''), base64.slice(0, 24), buffer.toString('base64url').slice(0, 24), buffer.toString('hex').slice(0, 32));
    }
  }
  return spellings;
}

function leaks(output: string, identities: readonly Identity[]): string[] {
  return secretSpellings(identities).filter((spelling) => output.includes(spelling));
}

/** Captures everything written to stdout and stderr while `run` runs (nothing reaches the terminal). */
async function capture(run: () => Promise<void>): Promise<string> {
  let output = '';
  const stdout = process.stdout.write.bind(process.stdout);
  const stderr = process.stderr.write.bind(process.stderr);
  const sink = ((chunk: string | Uint8Array) => {
    output += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  }) as typeof process.stdout.write;
  process.stdout.write = sink;
  process.stderr.write = sink;
  try {
    await run();
  } finally {
    process.stdout.write = stdout;
    process.stderr.write = stderr;
  }
  return output;
}

describe('no secret key material in output', () => {
  let federation: Federation | undefined;
  let dir = '';
  const level = process.env['FEDTL_LOG'];

  beforeAll(async () => {
    await selectBackend({ log: false });
  });

  afterEach(async () => {
    if (level === undefined) delete process.env['FEDTL_LOG'];
    else process.env['FEDTL_LOG'] = level;
    await federation?.close();
    federation = undefined;
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = '';
  });

  it('logs no secret key during a federated run at debug level', async () => {
    // Execute: loggers read FEDTL_LOG when they are created, so set it before anything starts.
    process.env['FEDTL_LOG'] = 'debug';
    const output = await capture(async () => {
      federation = await Federation.start({ clients: 2, rounds: 2, sizes: [200, 300] });
      federation.startClient(0);
      federation.startClient(1);
      await federation.coordinator.run();
      await Promise.all(federation.clients.map((client) => client.done));
    });

    // Assert: the capture really holds debug-level logs of both sides, and no secret.
    expect(output).toContain('[fedtl:coordinator]');
    expect(output).toMatch(/\[fedtl:client:[0-9a-f]{8}\]/);
    expect(leaks(output, [federation!.coordinatorIdentity, ...federation!.identities])).toEqual([]);
  });

  it('prints no secret from `fedtl keygen`', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-keygen-'));
    const file = path.join(dir, 'client.key');
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['bin/fedtl.js', 'keygen', '--out', file], { env: { ...process.env, FEDTL_LOG: 'debug' } });

    expect(stdout).toContain('fedtl1:');
    expect(leaks(stdout + stderr, [loadIdentity(file)])).toEqual([]);
  });

  it('does not quote a malformed secret in the error or its cause', async () => {
    // Prepare: an identity file whose seed lost its base64 padding (decodes, but is not canonical).
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-badkey-'));
    const identity = generateIdentity();
    const file = path.join(dir, 'client.key');
    saveIdentity(file, identity);
    const json = JSON.parse(await readFile(file, 'utf8')) as { signing: { seed: string } };
    json.signing.seed = json.signing.seed.replace(/=+$/, '');
    await writeFile(file, JSON.stringify(json), { mode: 0o600 });

    let error: unknown;
    try {
      loadIdentity(file);
    } catch (thrown) {
      error = thrown;
    }

    expect(error).toMatchObject({ code: 'CORRUPT_FILE' });
    let text = '';
    for (let e: unknown = error; e instanceof Error; e = e.cause) text += `${e.message}\n${e.stack ?? ''}\n`;
    expect(leaks(text, [identity])).toEqual([]);
  });
});
