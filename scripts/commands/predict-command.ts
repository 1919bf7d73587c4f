import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { columnOrder, parseCsv } from '../../client/data/csv.ts';
import { loadExportedModel, predict, type ExportedModel, type Prediction } from '../../client/predict.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';

// Plain decimal numbers only, as the CSV loader reads training data.
const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * Numeric rows of a CSV file for `model`. When the export records its feature columns, the file's
 * columns are matched by header name (any order; a missing or unknown column is refused); an
 * older export without column names takes every non-label column in file order, with a warning.
 */
export async function csvRowsForModel(file: string, model: ExportedModel, labelColumn: string, warn: (message: string) => void): Promise<number[][]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new FedtlError('BAD_DATA', `cannot read --csv ${file}: ${(cause as Error).message}`, { cause });
  }
  const records = parseCsv(text, { source: file });
  const header = records.shift();
  if (!header) throw new FedtlError('BAD_DATA', `--csv ${file} is empty; it needs a header row`);
  const names = header.fields.map((h) => h.trim());
  const featureAt = names.map((_, i) => i).filter((i) => names[i] !== labelColumn);
  const preprocessing = model.sidecar.preprocessing;
  const expected = preprocessing?.kind === 'tensor' ? preprocessing.columns : undefined;
  let pick = featureAt;
  if (expected) {
    pick = columnOrder(featureAt.map((i) => names[i]!), expected, `--csv ${file}`).map((k) => featureAt[k]!);
  } else {
    warn(`the model in ${model.dir} does not record its column names: the columns of ${file} are taken in file order [${featureAt.map((i) => names[i]).join(', ')}], which must be the training order`);
  }
  return records.map(({ line, fields }) => {
    if (fields.length !== names.length) throw new FedtlError('BAD_DATA', `${file}:${line}: ${fields.length} fields, the header has ${names.length}`);
    return pick.map((column) => {
      const cell = fields[column]!.trim();
      if (!NUMBER.test(cell)) throw new FedtlError('BAD_DATA', `${file}:${line}:${column + 1}: column '${names[column]}' holds ${JSON.stringify(cell)}, not a number`);
      return Number(cell);
    });
  });
}

function shown(raw: string | number[], i: number): string {
  return typeof raw === 'string' ? JSON.stringify(raw.length > 60 ? `${raw.slice(0, 59)}…` : raw) : `row ${i + 1}`;
}

function percent(p: number): string {
  return `${(100 * p).toFixed(1)}%`;
}

export function registerPredictCommand(program: Command): void {
  program
    .command('predict')
    .description('Classify new inputs with an exported model: texts, image files, or the rows of a CSV file')
    .requiredOption('--model <dir>', 'exported model directory (a coordinator writes <out>/model)')
    .option('--csv <file>', 'classify the rows of this CSV file (header required; columns are matched by name)')
    .option('--label-column <name>', 'column of the CSV to ignore', 'label')
    .option('--json', 'print one JSON array: input, class, and the probability of every class', false)
    .argument('[inputs...]', 'texts (text models) or image paths (image models)')
    .action(async (inputs: string[], flags: { model: string; csv?: string; labelColumn: string; json: boolean }) => {
      await selectBackend({ log: false });
      const model = await loadExportedModel(flags.model);
      const warn = (message: string) => process.stderr.write(`fedtl: warning: ${message}\n`);
      try {
        const raw: (string | number[])[] = flags.csv ? await csvRowsForModel(flags.csv, model, flags.labelColumn, warn) : inputs;
        if (raw.length === 0) throw new FedtlError('BAD_CONFIG', 'nothing to classify: give texts or image paths as arguments, or --csv <file>');
        const predictions: Prediction[] = await predict(model, raw as string[] | number[][]);
        predictions.forEach((p, i) => {
          if (p.knownWords === 0) warn(`input ${i + 1} (${shown(raw[i]!, i)}) has no word the model knows; its answer is only the model's prior`);
        });
        if (flags.json) {
          const rows = predictions.map((p, i) => ({
            input: flags.csv ? { row: i + 1 } : raw[i],
            className: p.className,
            label: p.label,
            probabilities: Object.fromEntries(model.classNames.map((name, c) => [name, p.probabilities[c]])),
            ...(p.knownWords !== undefined ? { knownWords: p.knownWords } : {}),
          }));
          process.stdout.write(JSON.stringify(rows, null, 1) + '\n');
          return;
        }
        predictions.forEach((p, i) => {
          const all = model.classNames.map((name, c) => `${name} ${percent(p.probabilities[c]!)}`).join(', ');
          process.stdout.write(`${p.className}\t${percent(p.probabilities[p.label]!)}\t${shown(raw[i]!, i)}\t(${all})\n`);
        });
      } finally {
        model.dispose();
      }
    });
}
