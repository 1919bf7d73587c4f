/**
 * SECURITY.md states defaults that the code sets; these checks read both, so a changed default
 * without a changed document fails here.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { ADMISSION_DEFAULTS } from '../../server/admission.ts';
import { DEFAULT_MAX_EXAMPLE_RATIO } from '../../server/weight-bound.ts';
import { registerCoordinatorCommand } from '../../scripts/commands/coordinator-command.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const security = readFileSync(path.join(ROOT, 'SECURITY.md'), 'utf8').replace(/\s+/g, ' ');

describe('SECURITY.md matches the code', () => {
  it('states the CLI round deadline a silent client can stall a round for', () => {
    const program = new Command();
    registerCoordinatorCommand(program);
    const help = program.commands.find((c) => c.name() === 'coordinator')!.helpInformation().replace(/\s+/g, ' ');
    const deadline = /--deadline <seconds>.*?\(default (\d+)\)/.exec(help)?.[1];
    expect(deadline).toBeDefined();
    expect(security).toContain(`deadline: ${deadline} s by default in \`fedtl coordinator\``);
  });

  it('states the admission limits and the weight bound as set in the code', () => {
    expect(security).toContain(`Admission timeout**: ${ADMISSION_DEFAULTS.admissionTimeoutMs / 1000} s`);
    expect(security).toContain(`at most ${ADMISSION_DEFAULTS.maxUnadmittedPerAddress} unadmitted connections per remote address`);
    expect(security).toContain(`${ADMISSION_DEFAULTS.maxUnadmitted.toLocaleString('en-US')} in total`);
    expect(security).toContain(`after ${ADMISSION_DEFAULTS.maxRefusedHellosPerMinute} in a minute`);
    expect(security).toContain(`at most ${DEFAULT_MAX_EXAMPLE_RATIO} × the median training-set size`);
  });
});
