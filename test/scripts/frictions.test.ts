/**
 * Small newcomer frictions, checked in-process: `fedtl --version` prints the package's version,
 * and a coordinator says "listening on" exactly once.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { startCoordinator } from '../../server/start-coordinator.ts';
import { createIdentityBase } from '../../shared/bases/identity.ts';
import type { Logger } from '../../shared/core/log.ts';
import { AllowList } from '../../shared/crypto/allow-list.ts';
import { generateIdentity } from '../../shared/crypto/identity.ts';
import { FedAvg } from '../../shared/strategy/fed-avg.ts';
import { buildProgram, nonNegativeNumber } from '../../scripts/cli.ts';

describe('newcomer frictions', () => {
  it('--version and -V print the version of package.json', async () => {
    const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      let out = '';
      const program = buildProgram().exitOverride().configureOutput({ writeOut: (text) => (out += text) });
      await expect(program.parseAsync(['node', 'fedtl', flag])).rejects.toMatchObject({ code: 'commander.version' });
      expect(out.trim()).toBe(manifest.version);
    }
  });

  it('--logit-adjustment takes a finite number ≥ 0 and names itself when it refuses one', () => {
    const parse = nonNegativeNumber('logit-adjustment');
    expect(parse('0')).toBe(0);
    expect(parse('1.5')).toBe(1.5);
    for (const bad of ['-1', 'NaN', 'Infinity', 'abc']) expect(() => parse(bad)).toThrow('logit-adjustment must be a finite number ≥ 0');
  });

  it('a coordinator logs "listening on" once', async () => {
    const lines: string[] = [];
    const record = (message: string) => lines.push(message);
    const logger: Logger = { debug: record, info: record, warn: record, error: record };
    const identity = generateIdentity();
    const coordinator = await startCoordinator({
      identity,
      allowList: AllowList.fromText(''),
      base: createIdentityBase(4, { name: 'identity-4' }),
      baseDirectory: null,
      headSpec: { hidden: [], activation: 'relu', dropout: 0, classes: 2 },
      strategy: new FedAvg({ minClients: 1 }),
      rounds: 1,
      seed: 1,
      logger,
    });
    try {
      expect(lines.filter((line) => line.includes('listening on'))).toHaveLength(1);
      expect(lines.find((line) => line.includes('listening on'))).toContain(coordinator.url);
    } finally {
      await coordinator.close();
    }
  });
});
