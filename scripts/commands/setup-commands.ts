import type { Command } from 'commander';
import { prepareBase } from '../../shared/bases/prepare-base.ts';
import { formatPublicIdentity, generateIdentity, publicIdentity, saveIdentity } from '../../shared/crypto/identity.ts';

export function registerKeygenCommand(program: Command): void {
  program
    .command('keygen')
    .description('Create an identity (Ed25519 signing + X25519 box key pairs) in an owner-only file and print its public part')
    .requiredOption('--out <file>', 'identity file to write (mode 0600)')
    .option('--force', 'replace an existing identity file', false)
    .action((flags: { out: string; force: boolean }) => {
      const identity = generateIdentity();
      saveIdentity(flags.out, identity, { force: flags.force });
      const pub = publicIdentity(identity);
      process.stdout.write(`identity written to ${flags.out} (keep it private)\n`);
      process.stdout.write(`id: ${pub.clientId}\n`);
      process.stdout.write(`public key — for a coordinator, clients pin it with --coordinator-key; for a client, the operator adds it to the allow list:\n${formatPublicIdentity(pub)}\n`);
    });
}

export function registerPrepareBaseCommand(program: Command): void {
  program
    .command('prepare-base')
    .description('Build an embedded base (glove-100d, mobilenet-v2-96|128|224) into the local cache, verified by hash')
    .argument('<name>', 'base name')
    .option('--cache <dir>', 'cache directory (default $FEDTL_CACHE or .fedtl-cache)')
    .option('--rebuild', 'rebuild even if a verified copy exists', false)
    .action(async (name: string, flags: { cache?: string; rebuild: boolean }) => {
      const dir = await prepareBase(name, { ...(flags.cache ? { cacheDir: flags.cache } : {}), rebuild: flags.rebuild });
      process.stdout.write(`${name}: ${dir}\n`);
    });
}
