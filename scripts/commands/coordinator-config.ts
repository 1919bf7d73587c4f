/**
 * The coordinator's settings, parsed at the boundary: a config file (JSON) and the command-line
 * flags go through one zod schema, so an unknown key or a value of the wrong type stops the
 * coordinator at start (exit 2) with a message that names the key, instead of reaching clients.
 * Every default is written once, in {@link COORDINATOR_DEFAULTS} (training defaults come from
 * shared/model/training-defaults.ts, FedAvg's from shared/strategy/fed-avg.ts).
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { FedtlError } from '../../shared/core/errors.ts';
import { OPTIMIZERS, TRAINING_DEFAULTS } from '../../shared/model/training-defaults.ts';
import { FEDAVG_DEFAULTS } from '../../shared/strategy/fed-avg.ts';
import { allStrategyParams, strategyNames } from '../../shared/strategy/registry.ts';

/** Defaults of every coordinator setting that has one. */
export const COORDINATOR_DEFAULTS = {
  base: 'glove-100d',
  hidden: [] as number[],
  activation: 'relu',
  dropoutRate: 0,
  rounds: 10,
  fraction: FEDAVG_DEFAULTS.fractionFit,
  minClients: FEDAVG_DEFAULTS.minClients,
  epochs: TRAINING_DEFAULTS.epochs,
  batchSize: TRAINING_DEFAULTS.batchSize,
  lr: TRAINING_DEFAULTS.learningRate,
  optimizer: TRAINING_DEFAULTS.optimizer,
  deadline: 600,
  port: 7070,
  host: '127.0.0.1',
  out: 'fedtl-run',
  seed: 0,
  strategy: 'fedavg',
} as const;

const positiveInt = z.int().positive();

/** Every key a config file may hold; all optional (flags and defaults fill the rest). */
export const coordinatorFileSchema = z.strictObject({
  identity: z.string().min(1).optional(),
  allow: z.string().min(1).optional(),
  base: z.string().min(1).optional(),
  hidden: z.array(positiveInt).optional(),
  activation: z.string().min(1).optional(),
  dropoutRate: z.number().min(0).max(1).optional(),
  classes: positiveInt.optional(),
  classNames: z.array(z.string().min(1)).min(2).optional(),
  /** CSV data: feature column names in model order; clients' files are matched by header. */
  featureColumns: z.array(z.string().min(1)).min(1).optional(),
  /** Serve the live dashboard and /metrics behind a token printed at start. */
  dashboard: z.boolean().optional(),
  rounds: positiveInt.optional(),
  fraction: z.number().gt(0).max(1).optional(),
  minClients: positiveInt.optional(),
  maxClients: positiveInt.optional(),
  minUpdates: positiveInt.optional(),
  epochs: positiveInt.optional(),
  batchSize: positiveInt.optional(),
  lr: z.number().positive().optional(),
  optimizer: z.enum(OPTIMIZERS).optional(),
  deadline: z.number().positive().optional(),
  maxExamples: positiveInt.optional(),
  maxDeltaNorm: z.number().positive().optional(),
  ingestWorkers: z.int().min(0).optional(),
  port: z.int().min(0).max(65535).optional(),
  host: z.string().min(1).optional(),
  tlsCert: z.string().min(1).optional(),
  tlsKey: z.string().min(1).optional(),
  out: z.string().min(1).optional(),
  seed: z.int().optional(),
  strategy: z.enum(strategyNames() as [string, ...string[]]).optional(),
  // Checked against the base when the coordinator starts (shared/model/trainable-set.ts), where the layer names are known.
  trainable: z.unknown().optional(),
  earlyStopping: z.strictObject({ patience: positiveInt.optional(), minDelta: z.number().min(0).optional() }).optional(),
  iterateAveraging: z.strictObject({ tailFraction: z.number().gt(0).max(1).optional() }).optional(),
  // Differential privacy (range checks with their messages are in shared/privacy resolveDp).
  dpClip: z.number().optional(),
  dpNoiseMultiplier: z.number().optional(),
  dpEpsilon: z.number().optional(),
  dpDelta: z.number().optional(),
  dpBudget: z.number().optional(),
  dpAdaptiveClip: z.boolean().optional(),
  secureAggregation: z.boolean().optional(),
  ...Object.fromEntries(allStrategyParams().map((p) => [p.key, z.number().optional()])),
});

type FileConfig = z.infer<typeof coordinatorFileSchema>;

/** Every coordinator setting after parsing: defaults applied, required ones present. */
export interface CoordinatorConfig {
  identity: string;
  allow: string;
  base: string;
  hidden: number[];
  activation: string;
  dropoutRate: number;
  classes: number;
  classNames?: string[];
  /** CSV data: feature column names in model order. @default those of the first ready client */
  featureColumns?: string[];
  /** Live dashboard at /dashboard and Prometheus /metrics, behind a token. @default off */
  dashboard?: boolean;
  rounds: number;
  fraction: number;
  minClients: number;
  maxClients?: number;
  minUpdates?: number;
  epochs: number;
  batchSize: number;
  lr: number;
  optimizer: (typeof OPTIMIZERS)[number];
  deadline: number;
  maxExamples?: number;
  maxDeltaNorm?: number;
  /** Worker threads opening updates (server/update-ingest.ts). @default defaultIngestWorkers(head size) */
  ingestWorkers?: number;
  port: number;
  host: string;
  /** PEM certificate (chain) and key files: serve HTTPS/WSS instead of plain HTTP. */
  tlsCert?: string;
  tlsKey?: string;
  out: string;
  seed: number;
  strategy: string;
  /** What trains by round (`{ "stages": [...] }`, shared/model/trainable-set.ts). @default the head alone */
  trainable?: unknown;
  /** Stop when the federated validation accuracy has not improved for `patience` rounds; export the best round. @default off */
  earlyStopping?: { patience?: number; minDelta?: number };
  /**
   * Server-side iterate averaging: export (and evaluate) the mean of the global models of the last
   * `tailFraction` of each stage's rounds (shared/model/iterate-averaging.ts). @default off
   */
  iterateAveraging?: { tailFraction?: number };
  /** Strategy parameters given (by config key); the rest take the strategy's defaults. */
  strategyParams: Record<string, number>;
  /** Differential privacy (`--dp-*`); absent is off. */
  dpClip?: number;
  dpNoiseMultiplier?: number;
  dpEpsilon?: number;
  dpDelta?: number;
  dpBudget?: number;
  dpAdaptiveClip?: boolean;
  secureAggregation?: boolean;
}

/** One line per problem, each naming the key: `lr: Invalid input: expected number, received string`. */
function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .map((issue) => {
      if (issue.code === 'unrecognized_keys') return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
      return `"${issue.path.join('.')}": ${issue.message}`;
    })
    .join('; ');
}

/** Parses a config file's JSON text; BAD_CONFIG naming the file and the key on any problem. */
export function parseCoordinatorFile(text: string, file: string): FileConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new FedtlError('BAD_CONFIG', `config file ${file} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
  const parsed = coordinatorFileSchema.safeParse(json);
  if (!parsed.success) {
    const known = Object.keys(coordinatorFileSchema.shape).join(', ');
    const unknown = parsed.error.issues.some((i) => i.code === 'unrecognized_keys');
    throw new FedtlError('BAD_CONFIG', `config file ${file}: ${describeIssues(parsed.error.issues)}${unknown ? ` (known keys: ${known})` : ''}`);
  }
  return parsed.data;
}

export async function readCoordinatorFile(file: string | undefined): Promise<FileConfig> {
  if (!file) return {};
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new FedtlError('BAD_CONFIG', `cannot read config file ${file}: ${(cause as Error).message}`, { cause });
  }
  return parseCoordinatorFile(text, file);
}

/**
 * File settings, overridden by flags (already typed by commander; `hidden` and `classNames` as
 * comma-separated text), then defaults. The merged result goes through the same schema, so a
 * flag's value is held to the same rules as the file's.
 */
export function resolveCoordinatorConfig(file: FileConfig, flags: Readonly<Record<string, unknown>>, strategyParams: Record<string, number>): CoordinatorConfig {
  const fromFlags: Record<string, unknown> = {};
  for (const key of Object.keys(coordinatorFileSchema.shape)) if (flags[key] !== undefined) fromFlags[key] = flags[key];
  if (typeof fromFlags['hidden'] === 'string') {
    const text = fromFlags['hidden'].trim();
    fromFlags['hidden'] = text === '' ? [] : text.split(',').map((part) => Number(part.trim()));
  }
  if (typeof fromFlags['classNames'] === 'string') fromFlags['classNames'] = fromFlags['classNames'].split(',').map((s) => s.trim());
  if (typeof fromFlags['featureColumns'] === 'string') fromFlags['featureColumns'] = fromFlags['featureColumns'].split(',').map((s) => s.trim());
  for (const [key, value] of Object.entries(strategyParams)) fromFlags[key] = value;
  const merged = coordinatorFileSchema.safeParse({ ...file, ...fromFlags });
  if (!merged.success) throw new FedtlError('BAD_CONFIG', `coordinator settings: ${describeIssues(merged.error.issues)}`);
  const data = merged.data as Record<string, unknown>;
  const params: Record<string, number> = {};
  for (const param of allStrategyParams()) if (typeof data[param.key] === 'number') params[param.key] = data[param.key] as number;
  if (!data['identity']) throw new FedtlError('BAD_CONFIG', 'a coordinator needs --identity (create one with `fedtl keygen --out coordinator.key`)');
  if (!data['allow']) throw new FedtlError('BAD_CONFIG', 'a coordinator needs --allow <file> listing the client public keys it admits');
  const classNames = data['classNames'] as string[] | undefined;
  const classes = (data['classes'] as number | undefined) ?? classNames?.length;
  if (!classes) throw new FedtlError('BAD_CONFIG', 'give --classes <n> or --class-names a,b,c');
  if (classNames && classNames.length !== classes) throw new FedtlError('BAD_CONFIG', `classes is ${classes} but classNames lists ${classNames.length} names`);
  return { ...COORDINATOR_DEFAULTS, hidden: [...COORDINATOR_DEFAULTS.hidden], ...data, classes, strategyParams: params } as CoordinatorConfig;
}
