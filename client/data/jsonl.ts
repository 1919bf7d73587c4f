/**
 * JSON Lines loader for labeled text: one `{ "text": string, "label": string | number }` per line.
 */
import { readFile } from 'node:fs/promises';
import { FedtlError } from '../../shared/core/errors.ts';
import { createLogger } from '../../shared/core/log.ts';
import { createDataset, type LabeledDataset } from './dataset.ts';
import { buildLabelIndex, type RawLabel } from './label-map.ts';

const log = createLogger('data:jsonl');

export interface JsonlLoaderOptions {
  /** Path of the `.jsonl` file. */
  path: string;
  /** Field holding the text. @default 'text' */
  textField?: string;
  /** Field holding the label. @default 'label' */
  labelField?: string;
  /** Fixed, ordered class list shared by the federation. @default the sorted distinct labels */
  classNames?: readonly string[];
  /** Dataset name. @default the file path */
  name?: string;
}

/**
 * Loads labeled texts from a JSON Lines file. Blank lines are skipped; anything else that is
 * not an object with a string text and a string or integer label is an error naming `file:line`.
 *
 * @example
 * const ds = await loadJsonl({ path: 'notes.jsonl' }); // ds.examples.kind === 'text'
 */
export async function loadJsonl(options: JsonlLoaderOptions): Promise<LabeledDataset> {
  const { path } = options;
  const textField = options.textField ?? 'text';
  const labelField = options.labelField ?? 'label';
  let content: string;
  try {
    content = await readFile(path, 'utf8');
  } catch (cause) {
    throw new FedtlError('BAD_DATA', `Cannot read JSONL file ${path}: ${(cause as Error).message}. Check the path given to --data.`, { cause });
  }
  const texts: string[] = [];
  const rawLabels: RawLabel[] = [];
  const lineNumbers: number[] = [];
  const lines = content.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineText = (lines[i] as string).trim();
    if (lineText === '') continue;
    const at = `${path}:${i + 1}`;
    let parsed: unknown;
    try {
      parsed = JSON.parse(lineText);
    } catch (cause) {
      throw new FedtlError('BAD_DATA', `${at}: not valid JSON (${(cause as Error).message}); each line must be one JSON object.`, { cause });
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new FedtlError('BAD_DATA', `${at}: expected a JSON object like {"${textField}": "...", "${labelField}": "..."}, got ${Array.isArray(parsed) ? 'an array' : typeof parsed}.`);
    }
    const record = parsed as Record<string, unknown>;
    const text = record[textField];
    if (typeof text !== 'string') {
      throw new FedtlError('BAD_DATA', `${at}: field '${textField}' must be a string, got ${text === undefined ? 'nothing' : typeof text}.`);
    }
    const label = record[labelField];
    if (label === undefined || label === null || label === '') {
      throw new FedtlError('BAD_DATA', `${at}: missing label field '${labelField}'; every line needs a label.`);
    }
    if (!(typeof label === 'string' || (typeof label === 'number' && Number.isInteger(label)))) {
      throw new FedtlError('BAD_DATA', `${at}: label must be a string or an integer, got ${JSON.stringify(label)}.`);
    }
    texts.push(text);
    rawLabels.push(label);
    lineNumbers.push(i + 1);
  }
  if (texts.length === 0) throw new FedtlError('BAD_DATA', `JSONL file ${path} holds no records; add one JSON object per line.`);
  const { classNames, labels } = buildLabelIndex(rawLabels, {
    classNames: options.classNames,
    source: path,
    locate: (i) => `${path}:${lineNumbers[i] ?? '?'}`,
  });
  log.debug(`loaded ${texts.length} texts, ${classNames.length} classes from ${path}`);
  return createDataset({ name: options.name ?? path, examples: { kind: 'text', texts }, labels, classNames });
}
