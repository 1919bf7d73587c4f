/**
 * The `fedtl` command: keygen, prepare-base, coordinator, client, simulate, predict.
 *
 * Every command parses its options into a typed config, fails with a clear message and a non-zero
 * exit code on misconfiguration, and stops cleanly on SIGINT/SIGTERM.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { packageRoot } from '../shared/core/package-root.ts';
import { FedtlError, toFedtlError } from '../shared/core/errors.ts';
import { BACKEND_NAMES, isBackendName } from '../shared/tf/select-backend.ts';
import { registerClientCommand } from './commands/client-command.ts';
import { registerCoordinatorCommand } from './commands/coordinator-command.ts';
import { registerKeygenCommand, registerPrepareBaseCommand } from './commands/setup-commands.ts';
import { registerPredictCommand } from './commands/predict-command.ts';
import { registerSimulateCommand } from './commands/simulate-command.ts';
// Registers the fashion-cnn-split base (its build reads Fashion-MNIST, which shared/ does not).
import './bases/fashion-split-cnn.ts';

/** The version in fedtl's package.json (sources and built code alike). */
export function packageVersion(): string {
  const manifest: unknown = JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8'));
  const version = typeof manifest === 'object' && manifest !== null ? (manifest as Record<string, unknown>)['version'] : undefined;
  return typeof version === 'string' ? version : 'unknown';
}

export function buildProgram(): Command {
  const program = new Command('fedtl')
    .version(packageVersion(), '-V, --version', 'print the fedtl version')
    .description('Federated transfer learning: a frozen pretrained base, a small trainable head, sealed weight deltas and FedAvg.')
    .addOption(
      new Option('--backend <name>', `TensorFlow.js backend (${BACKEND_NAMES.join(', ')}); default: the best that loads`).argParser((value) => {
        if (!isBackendName(value)) throw new InvalidArgumentError(`must be one of ${BACKEND_NAMES.join(', ')}`);
        return value;
      }),
    )
    .hook('preAction', (command) => {
      const backend = command.opts<{ backend?: string }>().backend;
      // The backend is chosen where tensors are first needed; the flag travels as the env var.
      if (backend) process.env['FEDTL_BACKEND'] = backend;
    })
    .showHelpAfterError('(fedtl --help, or fedtl <command> --help, lists the options)');
  registerKeygenCommand(program);
  registerPrepareBaseCommand(program);
  registerCoordinatorCommand(program);
  registerClientCommand(program);
  registerSimulateCommand(program);
  registerPredictCommand(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (thrown) {
    const error = toFedtlError(thrown);
    process.stderr.write(`fedtl: ${error.code === 'INTERNAL' ? '' : `${error.code}: `}${error.message}\n`);
    if (process.env['FEDTL_LOG'] === 'debug' && error.cause) process.stderr.write(`${String((error.cause as Error).stack ?? error.cause)}\n`);
    process.exitCode = error instanceof FedtlError && error.code === 'INTERNAL' ? 70 : 2;
  }
}

/** Parsers shared by the commands. */
export function positiveInteger(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isSafeInteger(parsed) || parsed <= 0) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return parsed;
  };
}

export function nonNegativeInteger(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isSafeInteger(parsed) || parsed < 0) throw new InvalidArgumentError(`${name} must be an integer ≥ 0`);
    return parsed;
  };
}

export function positiveNumber(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed <= 0) throw new InvalidArgumentError(`${name} must be a positive number`);
    return parsed;
  };
}

export function nonNegativeNumber(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!(Number.isFinite(parsed) && parsed >= 0)) throw new InvalidArgumentError(`${name} must be a finite number ≥ 0`);
    return parsed;
  };
}

export function fraction(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!(parsed >= 0 && parsed <= 1)) throw new InvalidArgumentError(`${name} must be in [0, 1]`);
    return parsed;
  };
}

/** Exit codes of a process ended by a signal, by convention 128 + the signal's number. */
const SIGNAL_EXIT_CODES: Readonly<Record<string, number>> = { SIGINT: 130, SIGTERM: 143 };

/**
 * On the first SIGINT/SIGTERM, runs `cleanup` and exits with the conventional code (130 for
 * Ctrl-C, 143 for SIGTERM): an interrupted run must not look like a successful one to a script.
 * A second signal exits at once.
 */
export function onShutdown(cleanup: () => Promise<void> | void): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    const code = SIGNAL_EXIT_CODES[signal] ?? 130;
    if (stopping) process.exit(code);
    stopping = true;
    process.stderr.write(`\nfedtl: ${signal} received, shutting down\n`);
    void Promise.resolve()
      .then(cleanup)
      .finally(() => process.exit(code));
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
}
