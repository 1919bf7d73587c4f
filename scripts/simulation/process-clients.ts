/**
 * `--mode process`: the coordinator runs in this process (as in socket mode) and every client is a
 * separate `fedtl client` process on loopback, started exactly as an operator would start one:
 * its own identity file (mode 0600), its own data file, its own cache directory (so each downloads
 * and verifies the base), its own features, training and sealing. Nothing is shared with the
 * simulator but the command line, so this mode exercises the deployed client end to end.
 *
 * Each client's partition is written to a temporary directory in a format the client CLI loads:
 * JSON Lines `{ "text", "label" }` for text, CSV (`x0 … xN, label`) for numeric rows (MNIST behind
 * the identity base), and for images behind an image base one folder of PNGs per class (written
 * with sharp; the client decodes and resizes them with sharp too, so features differ slightly from
 * a virtual run's). `--class-names` gives every client the federation's label order. The directory
 * is removed and every child still running is killed when the run ends, fails, or is interrupted.
 *
 * Fault injection (`dropoutRate`, `stragglerRate`) acts on the processes themselves
 * (process-faults.ts): a crashing client is killed with SIGKILL mid-round and restarted, a
 * stalling one is frozen (SIGSTOP) past the round's deadline. Any other child that exits early
 * fails the run with its output, instead of leaving the coordinator waiting.
 */
import { packageRoot } from '../../shared/core/package-root.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { clientSeed } from '../../client/client-round.ts';
import { subset, type LabeledDataset } from '../../client/data/dataset.ts';
import type { RoundRecord } from '../../server/round-record.ts';
import { initialHeadWeights, startCoordinator } from '../../server/start-coordinator.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import { createLogger, type Logger } from '../../shared/core/log.ts';
import { AllowList } from '../../shared/crypto/allow-list.ts';
import { formatPublicIdentity, publicIdentity, saveIdentity } from '../../shared/crypto/identity.ts';
import { buildHead } from '../../shared/model/head.ts';
import { StrategyWrapper } from '../../shared/strategy/strategy-wrapper.ts';
import type { FitInstruction, Strategy } from '../../shared/strategy/strategy.ts';
import type { FederatedRunInput, FederatedRunResult } from './run-federated.ts';
import { coordinatorLoopOptions, privateStrategyOf } from './run-federated.ts';
import { nativeIdentity } from './virtual-identities.ts';
import { processFault, type InjectedFault } from './process-faults.ts';

/** The `fedtl` launcher the children run. */
export const FEDTL_BIN = path.join(packageRoot(), 'bin', 'fedtl.js');

/** Images written per client before the mode refuses (PNG encoding and decoding in every child). */
export const MAX_PROCESS_IMAGES = 20_000;

/** One client's files, as the client CLI takes them. */
export interface ClientFiles {
  identity: string;
  data: string;
  dataType: 'jsonl' | 'csv' | 'image-folder';
  cache: string;
}

/** Lines of a data set's text examples as JSON Lines `{ text, label }` (label = class name). */
export function toJsonl(dataset: LabeledDataset): string {
  if (dataset.examples.kind !== 'text') throw new FedtlError('BAD_DATA', `JSONL needs text examples; ${dataset.name} holds ${dataset.examples.kind}`);
  const { texts } = dataset.examples;
  return texts.map((text, i) => JSON.stringify({ text, label: dataset.classNames[dataset.labels[i]!] })).join('\n') + '\n';
}

/**
 * A data set's numeric rows as CSV with a header `x0,…,x{n−1},label` (label = class name). Values
 * are written in the shortest form that parses back to the same float32.
 */
export function toCsv(dataset: LabeledDataset): string {
  if (dataset.examples.kind !== 'tensor') throw new FedtlError('BAD_DATA', `CSV needs numeric rows; ${dataset.name} holds ${dataset.examples.kind}`);
  const { rows, rowSize } = dataset.examples;
  const lines = [[...Array.from({ length: rowSize }, (_, j) => `x${j}`), 'label'].join(',')];
  for (let r = 0; r < dataset.size; r++) {
    const cells = new Array<string>(rowSize + 1);
    for (let j = 0; j < rowSize; j++) cells[j] = String(rows[r * rowSize + j]!);
    cells[rowSize] = csvField(dataset.classNames[dataset.labels[r]!]!);
    lines.push(cells.join(','));
  }
  return lines.join('\n') + '\n';
}

function csvField(value: string): string {
  return /[",\n\r]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** Writes image examples as `root/<class>/<n>.png`. */
async function writeImageFolder(dataset: LabeledDataset, root: string): Promise<void> {
  const examples = dataset.examples;
  if (examples.kind !== 'image') throw new FedtlError('BAD_DATA', `an image folder needs images; ${dataset.name} holds ${examples.kind}`);
  const { width, height, channels } = examples;
  if (channels !== 1 && channels !== 3) throw new FedtlError('BAD_DATA', `images with ${channels} channels cannot be written as PNG here`);
  const size = width * height * channels;
  // Only the classes this client holds: the loader refuses an empty class folder, and
  // `--class-names` keeps the label order when a class is missing.
  for (const label of new Set(dataset.labels)) await mkdir(path.join(root, dataset.classNames[label]!), { recursive: true });
  for (let i = 0; i < dataset.size; i++) {
    const pixels = Buffer.from(examples.pixels.buffer, examples.pixels.byteOffset + i * size, size);
    const file = path.join(root, dataset.classNames[dataset.labels[i]!]!, `${i}.png`);
    await sharp(pixels, { raw: { width, height, channels } }).png().toFile(file);
  }
}

/**
 * The class names as written to the clients' files and passed to `--class-names`: a name that a
 * comma-separated list or a folder cannot carry (`T-shirt/top`) gets its `/ \\ ,` replaced by `-`,
 * and if that makes names collide, every class is named by its index. Only the order matters to the
 * clients: label `i` is `names[i]` in every client, as in the simulator.
 */
export function fileClassNames(classNames: readonly string[]): string[] {
  const cleaned = classNames.map((name) => name.replace(/[/\\,\0\r\n]/g, '-').trim());
  const usable = cleaned.every((name) => name !== '' && name !== '.' && name !== '..') && new Set(cleaned).size === cleaned.length;
  return usable ? cleaned : classNames.map((_, i) => `class-${i}`);
}

/**
 * Writes one client's data file (or folder) in the format its kind needs; returns how to load it.
 * Labels are written by name: pass a data set whose class names are {@link fileClassNames}.
 */
export async function writeClientData(dataset: LabeledDataset, directory: string, baseInput: 'text' | 'image' | 'tensor'): Promise<Pick<ClientFiles, 'data' | 'dataType'>> {
  switch (dataset.examples.kind) {
    case 'text': {
      const file = path.join(directory, 'data.jsonl');
      await writeFile(file, toJsonl(dataset));
      return { data: file, dataType: 'jsonl' };
    }
    case 'tensor': {
      const file = path.join(directory, 'data.csv');
      await writeFile(file, toCsv(dataset));
      return { data: file, dataType: 'csv' };
    }
    case 'image': {
      if (baseInput !== 'image') throw new FedtlError('BAD_CONFIG', `image examples need an image base in process mode; this base reads ${baseInput} (use a tensor format of the data set)`);
      const root = path.join(directory, 'images');
      await writeImageFolder(dataset, root);
      return { data: root, dataType: 'image-folder' };
    }
  }
}

/**
 * A strategy that waits for `count` clients before its first round, then behaves as `inner`: client
 * processes start at different speeds, and round 1 should not start with only the quickest.
 */
export class WaitForAllFirst extends StrategyWrapper {
  readonly wrapperName = 'wait-for-all-first';
  readonly #count: number;
  #started = false;

  readonly #onFit: ((round: number, clientIds: string[]) => void) | undefined;

  /** `onFit` is told each round's selected clients, before their fit requests are sent. */
  constructor(inner: Strategy, count: number, onFit?: (round: number, clientIds: string[]) => void) {
    super(inner);
    this.#count = count;
    this.#onFit = onFit;
  }

  /** The inner strategy's name: waiting changes no result, so checkpoints stay interchangeable. */
  override get name(): string {
    return this.inner.name;
  }

  override get minClients(): number {
    return this.#started ? this.inner.minClients : Math.max(this.inner.minClients, this.#count);
  }

  override configureFit(...args: Parameters<Strategy['configureFit']>): FitInstruction[] {
    this.#started = true;
    const instructions = this.inner.configureFit(...args);
    this.#onFit?.(args[0], instructions.map((i) => i.clientId));
    return instructions;
  }
}

interface Child {
  index: number;
  process: ChildProcess;
  /** Last lines of its output, for error messages. */
  output: string[];
  exit: Promise<number>;
}

function startChild(index: number, args: string[], log: Logger): Child {
  const child = spawn(process.execPath, [FEDTL_BIN, 'client', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      output.push(line);
      if (output.length > 40) output.shift();
      log.debug(`client ${index}: ${line}`);
    }
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exit = new Promise<number>((resolve) => {
    child.once('error', (error) => {
      output.push(`spawn failed: ${error.message}`);
      resolve(127);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
  return { index, process: child, output, exit };
}

function killAll(children: readonly Child[]): void {
  for (const child of children) {
    if (child.process.exitCode !== null || child.process.signalCode !== null) continue;
    // A stalled (SIGSTOPped) client would hold SIGTERM until it is continued.
    child.process.kill('SIGCONT');
    child.process.kill('SIGTERM');
  }
}

/** Cleanups of the process runs in progress, for {@link stopProcessClients}. */
const running = new Set<() => Promise<void>>();

/**
 * Kills the client processes of every process-mode run in progress and removes their temporary
 * directories (identities and data). For a CLI's SIGINT handler, which exits right after.
 */
export async function stopProcessClients(): Promise<void> {
  await Promise.all([...running].map((cleanup) => cleanup()));
}

export interface ProcessRunResult extends FederatedRunResult {
  /** Exit code of each client process, by client index (of its last process, after restarts). */
  exitCodes: number[];
  /** Faults injected (dropoutRate → crash, stragglerRate → stall), in order. */
  injectedFaults: InjectedFault[];
}

export async function runProcesses(input: FederatedRunInput): Promise<ProcessRunResult> {
  const { config, parts } = input;
  const dataset = input.trainDataset;
  if (!dataset || !parts) throw new FedtlError('BAD_CONFIG', 'process mode needs the raw training set and the partition (input.trainDataset, input.parts)');
  const log = input.logger ?? createLogger('simulation');
  const classNames = fileClassNames(dataset.classNames);
  if (dataset.examples.kind === 'image' && dataset.size > MAX_PROCESS_IMAGES) {
    throw new FedtlError('BAD_CONFIG', `process mode writes every training image as a PNG; ${dataset.size} images is more than ${MAX_PROCESS_IMAGES}. Use --train-examples ${MAX_PROCESS_IMAGES} or less, or --mode virtual.`);
  }
  const started = Date.now();
  const directory = await mkdtemp(path.join(os.tmpdir(), 'fedtl-sim-processes-'));
  const children: Child[] = [];
  // Set once the clients run (step 4); the fault injector calls them.
  let crashAndRestart: (i: number) => Promise<void> = async () => undefined;
  let stall: (i: number, ms: number) => void = () => undefined;
  let cleaned: Promise<void> | null = null;
  const cleanup = () =>
    (cleaned ??= (async () => {
      killAll(children);
      await Promise.all(children.map((child) => child.exit));
      await rm(directory, { recursive: true, force: true });
    })());
  running.add(cleanup);
  // Without a CLI handler, an interrupt still takes the children down (the run then fails).
  const onSignal = () => killAll(children);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const serverHead = buildHead(input.base.embeddingSize, config.head);
  let coordinator: Awaited<ReturnType<typeof startCoordinator>> | null = null;
  try {
    // 1. Every client's identity and data, written as an operator would prepare them.
    const coordinatorIdentity = nativeIdentity();
    const allowLines: string[] = [];
    const indexOf = new Map<string, number>();
    const files: ClientFiles[] = [];
    for (let i = 0; i < parts.length; i++) {
      const own = path.join(directory, `client-${i}`);
      await mkdir(own, { recursive: true });
      const identity = nativeIdentity();
      const identityFile = path.join(own, 'identity.json');
      saveIdentity(identityFile, identity);
      allowLines.push(`${formatPublicIdentity(publicIdentity(identity))} sim-client-${i}`);
      indexOf.set(publicIdentity(identity).clientId, i);
      const data = await writeClientData({ ...subset(dataset, parts[i]!, { name: `client-${i}` }), classNames }, own, input.base.input.kind);
      files.push({ identity: identityFile, ...data, cache: path.join(own, 'cache') });
    }
    log.info(`process mode: wrote ${parts.length} clients' identities and data to ${directory}`);

    // 2. The coordinator, as in socket mode, waiting for every client before round 1.
    const initial = initialHeadWeights(input.base.embeddingSize, config.head, config.seed);
    const loopOptions = coordinatorLoopOptions(input, serverHead, initial.manifest);
    const injectedFaults: InjectedFault[] = [];
    const onFit = (round: number, clientIds: string[]) => {
      for (const clientId of clientIds) {
        const i = indexOf.get(clientId);
        const kind = i === undefined ? null : processFault(config.seed, round, i, config);
        if (i === undefined || !kind) continue;
        injectedFaults.push({ round, client: i, kind });
        // A moment after selection, so the fit request has gone out: the fault hits mid-round.
        setTimeout(() => (kind === 'crash' ? void crashAndRestart(i) : stall(i, (loopOptions.roundTimeoutMs ?? 60_000) + 1_000)), 20);
      }
    };
    coordinator = await startCoordinator({
      identity: coordinatorIdentity,
      allowList: AllowList.fromText(allowLines.join('\n')),
      base: input.base,
      baseDirectory: input.baseDirectory,
      headSpec: config.head,
      strategy: new WaitForAllFirst(privateStrategyOf(config), parts.length, config.dropoutRate > 0 || config.stragglerRate > 0 ? onFit : undefined),
      rounds: config.rounds,
      seed: config.seed,
      ...(config.trainable ? { trainable: config.trainable } : {}),
      host: '127.0.0.1',
      port: 0,
      logger: { ...createLogger('coordinator'), info: () => undefined },
      ...(config.dashboard ? { dashboard: true } : {}),
      loop: loopOptions,
    });

    if (coordinator.dashboardUrl) log.info(`dashboard: ${coordinator.dashboardUrl}`);
    // 3. One `fedtl client` process per client.
    const coordinatorKey = formatPublicIdentity(publicIdentity(coordinatorIdentity));
    const argsOf: string[][] = [];
    for (let i = 0; i < files.length; i++) {
      const own = files[i]!;
      const args = [
        '--url', coordinator.url,
        '--coordinator-key', coordinatorKey,
        '--identity', own.identity,
        '--data', own.data,
        '--data-type', own.dataType,
        '--class-names', classNames.join(','),
        '--validation-fraction', String(config.validationFraction),
        '--cache', own.cache,
        '--seed', String(clientSeed(config.seed, i)),
        ...(config.augmentation ? ['--augment', JSON.stringify(config.augmentation)] : []),
        ...(config.logitAdjustment !== undefined ? ['--logit-adjustment', String(config.logitAdjustment)] : []),
      ];
      argsOf.push(args);
      children.push(startChild(i, args, log));
    }

    // 4. Run; a client process that exits before the run ends fails it with that client's output.
    const live = coordinator;
    let finished = false;
    /** Processes killed on purpose (injected crashes): their exit is expected. */
    const crashed = new Set<Child>();
    let failRun: (error: FedtlError) => void = () => undefined;
    const watch = (child: Child) =>
      void child.exit.then((code) => {
        if (finished || crashed.has(child)) return;
        live.loop.stop();
        failRun(new FedtlError('INTERNAL', `client process ${child.index} exited with code ${code} before the run ended; its last output:\n${child.output.join('\n')}`));
      });
    const earlyExit = new Promise<never>((_, reject) => {
      failRun = reject;
      for (const child of children) watch(child);
    });
    crashAndRestart = async (i: number) => {
      const old = children[i]!;
      crashed.add(old);
      old.process.kill('SIGKILL');
      await old.exit;
      if (finished) return;
      const restarted = startChild(i, argsOf[i]!, log);
      children[i] = restarted;
      watch(restarted);
    };
    stall = (i: number, ms: number) => {
      const frozen = children[i]!;
      frozen.process.kill('SIGSTOP');
      const thaw = setTimeout(() => frozen.process.kill('SIGCONT'), ms);
      thaw.unref();
    };
    earlyExit.catch(() => undefined);
    const history = await Promise.race([live.run(), earlyExit]);
    finished = true;
    // The coordinator has told every client the run is over; each exits on its own.
    const deadline = setTimeout(() => killAll(children), 30_000);
    const exitCodes = await Promise.all(children.map((child) => child.exit));
    clearTimeout(deadline);
    const failed = exitCodes.map((code, i) => ({ code, i })).filter((c) => c.code !== 0);
    if (failed.length > 0) log.warn(`client processes exited non-zero after the run: ${failed.map((c) => `client ${c.i} (${c.code})`).join(', ')}`);
    return { history: [...history], weights: live.loop.bestWeights, seconds: (Date.now() - started) / 1000, exitCodes, injectedFaults };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
    running.delete(cleanup);
    await coordinator?.close();
    serverHead.dispose();
  }
}
