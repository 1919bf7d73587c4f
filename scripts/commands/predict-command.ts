import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { loadExportedModel, predict } from '../../client/predict.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';

/** Numeric rows of a CSV file without its header; the label column, if present, is dropped. */
async function csvRows(file: string, labelColumn: string): Promise<number[][]> {
  const lines = (await readFile(file, 'utf8')).split(/\r?\n/).filter((line) => line.trim() !== '');
  const header = (lines.shift() ?? '').split(',').map((h) => h.trim());
  const skip = header.indexOf(labelColumn);
  return lines.map((line, i) =>
    line
      .split(',')
      .filter((_, column) => column !== skip)
      .map((cell, column) => {
        const value = Number(cell);
        if (cell.trim() === '' || !Number.isFinite(value)) throw new FedtlError('BAD_DATA', `${file}:${i + 2}:${column + 1}: "${cell}" is not a number`);
        return value;
      }),
  );
}

export function registerPredictCommand(program: Command): void {
  program
    .command('predict')
    .description('Classify new inputs with an exported model: texts, image files, or the rows of a CSV file')
    .requiredOption('--model <dir>', 'exported model directory (a coordinator writes <out>/model)')
    .option('--csv <file>', 'classify the rows of this CSV file (header required)')
    .option('--label-column <name>', 'column of the CSV to ignore', 'label')
    .argument('[inputs...]', 'texts (text models) or image paths (image models)')
    .action(async (inputs: string[], flags: { model: string; csv?: string; labelColumn: string }) => {
      await selectBackend({ log: false });
      const model = await loadExportedModel(flags.model);
      try {
        const raw = flags.csv ? await csvRows(flags.csv, flags.labelColumn) : inputs;
        if (raw.length === 0) throw new FedtlError('BAD_CONFIG', 'nothing to classify: give texts or image paths as arguments, or --csv <file>');
        const predictions = await predict(model, raw);
        predictions.forEach((p, i) => {
          const shown = typeof raw[i] === 'string' ? JSON.stringify((raw[i] as string).slice(0, 60)) : `row ${i + 1}`;
          process.stdout.write(`${p.className}\t${(100 * Math.max(...p.probabilities)).toFixed(1)}%\t${shown}\n`);
        });
      } finally {
        model.dispose();
      }
    });
}
