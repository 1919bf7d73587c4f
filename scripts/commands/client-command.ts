import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { FedtlClient } from '../../client/client.ts';
import { getLoader, loaderNames } from '../../client/data/index.ts';
import { subset } from '../../client/data/dataset.ts';
import { validationSplit } from '../../client/data/split.ts';
import { FedtlError, toFedtlError } from '../../shared/core/errors.ts';
import { loadIdentity, parsePublicIdentity, publicIdentity } from '../../shared/crypto/identity.ts';
import { parseAugmentationJson } from '../../shared/model/augmentation.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { fraction, nonNegativeNumber, onShutdown } from '../cli.ts';

interface ClientFlags {
  url: string;
  coordinatorKey: string;
  identity: string;
  data?: string;
  dataType: string;
  labelColumn?: string;
  classNames?: string;
  limit?: string;
  validationFraction: number;
  cache: string;
  seed: string;
  ca?: string;
  augment?: string;
  logitAdjustment?: number;
}

/**
 * Loads what can be loaded without the base (CSV, JSONL, built-in sets) and checks that an image
 * folder exists, so bad data fails before the client connects.
 */
async function checkData(flags: ClientFlags, loader: ReturnType<typeof getLoader>): Promise<void> {
  if (!flags.data) return;
  const found = await stat(flags.data).catch(() => null);
  if (!found) throw new FedtlError('BAD_DATA', `--data ${flags.data} does not exist`);
  if (flags.dataType === 'image-folder') {
    if (!found.isDirectory()) throw new FedtlError('BAD_DATA', `--data ${flags.data} is not a folder; --data-type image-folder needs a folder with one subfolder per class`);
    return;
  }
  if (flags.dataType === 'csv' || flags.dataType === 'jsonl') {
    await loader.load({ path: flags.data, labelColumn: flags.labelColumn ?? 'label', ...(flags.classNames ? { classNames: flags.classNames.split(',').map((s) => s.trim()) } : {}) });
  }
}

export function registerClientCommand(program: Command): void {
  program
    .command('client')
    .description('Join a coordinator with local data; only sealed weight deltas leave this machine')
    .requiredOption('--url <url>', 'coordinator URL, e.g. https://coordinator.example:7070 (or http:// on a trusted network)')
    .option('--ca <file>', "PEM certificate(s) to trust for an https:// URL, e.g. the coordinator's self-signed certificate (default: the system's CAs)")
    .requiredOption('--coordinator-key <fedtl1:...>', "the coordinator's public key, as printed by its keygen (pinned)")
    .requiredOption('--identity <file>', 'this client\'s identity file (fedtl keygen)')
    .option('--data <path>', 'image folder (one subfolder per class), CSV file or JSONL file')
    .option('--data-type <type>', `one of ${loaderNames().join(', ')}`, 'image-folder')
    .option('--label-column <name>', 'label column of a CSV file', 'label')
    .option('--class-names <names>', "the federation's class names in label order, comma-separated (so every client numbers labels alike)")
    .option('--limit <n>', 'use at most this many examples (a seeded sample)')
    .option('--validation-fraction <f>', 'share of the data kept for federated evaluation', fraction('validation-fraction'), 0.1)
    .option('--cache <dir>', 'where the base download and feature cache live', path.join('.fedtl-cache', 'client'))
    .option('--seed <n>', 'seed of the local split and shuffles', '0')
    .option('--augment <json>', 'augmentation in fine-tuning rounds whose features are the raw input, e.g. \'{"tokenDropout":0.2}\' or \'{"flip":true,"cropPadding":4}\' (default none)')
    .option('--logit-adjustment <tau>', 'logit adjustment τ of local training by the client\'s own label prior (balanced softmax; 0 = off; the evaluated and exported model is unchanged)', nonNegativeNumber('logit-adjustment'))
    .action(async (flags: ClientFlags) => {
      const loader = getLoader(flags.dataType);
      if (loader.needsPath && !flags.data) throw new FedtlError('BAD_CONFIG', `--data-type ${flags.dataType} needs --data <path>`);
      let coordinator: ReturnType<typeof parsePublicIdentity>;
      try {
        coordinator = parsePublicIdentity(flags.coordinatorKey);
      } catch (thrown) {
        throw new FedtlError('BAD_CONFIG', `--coordinator-key: ${toFedtlError(thrown).message} (copy the fedtl1:… line the coordinator prints)`);
      }
      const identity = loadIdentity(flags.identity);
      const seed = Number.parseInt(flags.seed, 10) || 0;
      let ca: string | undefined;
      if (flags.ca) {
        try {
          ca = readFileSync(flags.ca, 'utf8');
        } catch (cause) {
          throw new FedtlError('BAD_CONFIG', `cannot read --ca ${flags.ca}: ${(cause as Error).message}`, { cause });
        }
      }
      const limit = flags.limit === undefined ? undefined : Number(flags.limit);
      if (limit !== undefined && (!Number.isSafeInteger(limit) || limit <= 0)) throw new FedtlError('BAD_CONFIG', `--limit must be a positive integer, got "${flags.limit}"`);
      // Check the data before connecting: a wrong path or a bad file is reported once, here, not
      // after a base download or in a reconnect loop.
      await checkData(flags, loader);
      await selectBackend();
      const augmentation = flags.augment === undefined ? undefined : parseAugmentationJson(flags.augment);
      const client = new FedtlClient({
        url: flags.url,
        ...(augmentation ? { augmentation } : {}),
        ...(flags.logitAdjustment !== undefined ? { logitAdjustment: flags.logitAdjustment } : {}),
        coordinator: { signingKey: coordinator.signingKey, boxKey: coordinator.boxKey },
        identity,
        cacheDir: flags.cache,
        seed,
        ...(ca !== undefined ? { ca } : {}),
        data: async (base, federation) => {
          const classNames = flags.classNames ? flags.classNames.split(',').map((s) => s.trim()) : federation.classNames;
          const dataset = await loader.load({
            ...(flags.data ? { path: flags.data } : {}),
            seed,
            ...(limit !== undefined ? { limit } : {}),
            ...(base.input.kind === 'image' ? { image: { size: base.input.size, channels: base.input.channels } } : {}),
            ...(base.input.kind === 'tensor' && (flags.dataType === 'mnist' || flags.dataType === 'fashion-mnist') ? { format: 'tensor' as const } : {}),
            labelColumn: flags.labelColumn ?? 'label',
            ...(classNames ? { classNames } : {}),
            ...(federation.featureColumns ? { columns: federation.featureColumns } : {}),
          });
          const split = validationSplit(dataset.labels, dataset.classNames.length, flags.validationFraction, seed);
          if (!split) return { train: dataset };
          const train = subset(dataset, split.train, { name: `${dataset.name}-train` });
          const validation = subset(dataset, split.test, { name: `${dataset.name}-validation` });
          process.stdout.write(`data: ${train.size} training and ${validation.size} validation examples from ${dataset.name}\n`);
          return { train, validation };
        },
        onRound: (event) => {
          process.stdout.write(`round ${event.round}: ${event.accepted ? 'update accepted' : `update rejected (${event.error?.code})`} · ${event.exampleCount} examples · loss ${event.loss.toFixed(4)} · accuracy ${(100 * event.accuracy).toFixed(1)}%\n`);
        },
      });
      process.stdout.write(`client ${publicIdentity(identity).clientId} connecting to ${flags.url}\n`);
      onShutdown(() => client.close());
      client.start();
      const notice = await client.done;
      process.stdout.write(`coordinator finished after ${notice.rounds} rounds\n`);
      client.close();
    });
}
