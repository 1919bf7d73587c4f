/**
 * CSV loader: numeric feature columns plus one label column → tensor examples.
 *
 * A hospital's tabular export (lab values, vitals) usually arrives as CSV. The header is
 * required because columns are matched by name; the label column may hold class names or integers.
 */
import { readFile } from 'node:fs/promises';
import { FedtlError } from '../../shared/core/errors.ts';
import { createLogger } from '../../shared/core/log.ts';
import { createDataset, type LabeledDataset } from './dataset.ts';
import { buildLabelIndex } from './label-map.ts';

const log = createLogger('data:csv');

export interface CsvLoaderOptions {
  /** Path of the CSV file. */
  path: string;
  /** Header name of the label column. @default 'label' */
  labelColumn?: string;
  /** Field separator (one character). @default ',' */
  delimiter?: string;
  /** Fixed, ordered class list shared by the federation. @default the sorted distinct labels */
  classNames?: readonly string[];
  /** Dataset name. @default the file path */
  name?: string;
  /**
   * Feature columns in the order the model reads them (the federation's, or an export's). Columns
   * are matched by header name, so a file whose columns are in another order loads correctly;
   * a missing or an unexpected column is an error. @default every non-label column, in header order
   */
  columns?: readonly string[];
}

/** One parsed record and the 1-based line it starts on (quoted fields may span lines). */
export interface CsvRecord {
  line: number;
  fields: string[];
}

/**
 * Splits CSV text into records (RFC 4180): fields may be quoted with `"`, a quote inside a
 * quoted field is doubled, quoted fields may hold the delimiter and line breaks; CRLF and LF both
 * end records. Blank lines are skipped. A quote that never closes is an error.
 */
export function parseCsv(text: string, options: { delimiter?: string; source: string }): CsvRecord[] {
  const delimiter = options.delimiter ?? ',';
  const records: CsvRecord[] = [];
  let fields: string[] = [];
  let field = '';
  let line = 1;
  let recordLine = 1;
  let inQuotes = false;
  let quoteLine = 0;
  let fieldWasQuoted = false;
  let lastRecordQuoted = false;
  const endField = (): void => {
    fields.push(field);
    field = '';
    fieldWasQuoted = false;
  };
  const endRecord = (): void => {
    endField();
    // A blank line parses as one empty, unquoted field: skip it rather than report a ragged row.
    if (!(fields.length === 1 && fields[0] === '' && !lastRecordQuoted)) records.push({ line: recordLine, fields });
    fields = [];
    lastRecordQuoted = false;
  };
  const start = text.charCodeAt(0) === 0xfeff ? 1 : 0; // Excel writes a byte-order mark.
  for (let i = start; i < text.length; i++) {
    const c = text[i] as string;
    if (inQuotes) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          inQuotes = false;
        }
      } else {
        if (c === '\n') line++;
        field += c;
      }
      continue;
    }
    if (c === '"' && field === '' && !fieldWasQuoted) {
      inQuotes = true;
      fieldWasQuoted = true;
      lastRecordQuoted = true;
      quoteLine = line;
    } else if (c === delimiter) {
      endField();
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      endRecord();
      line++;
      recordLine = line;
    } else {
      field += c;
    }
  }
  if (inQuotes) {
    throw new FedtlError('BAD_DATA', `${options.source}:${quoteLine}: a quoted field is never closed; add the closing '"'.`);
  }
  if (field !== '' || fields.length > 0 || fieldWasQuoted) endRecord();
  return records;
}

// Plain decimal numbers only: `Number()` would also accept '', '0x1f', 'Infinity' and ' '.
const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * Loads a CSV file with a header row into tensor examples (every non-label column is a
 * feature, in header order).
 *
 * @example
 * const ds = await loadCsv({ path: 'vitals.csv', labelColumn: 'outcome' });
 * ds.examples; // { kind: 'tensor', rows, rowSize: <number of feature columns> }
 */
export async function loadCsv(options: CsvLoaderOptions): Promise<LabeledDataset> {
  const { path } = options;
  const labelColumn = options.labelColumn ?? 'label';
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new FedtlError('BAD_DATA', `Cannot read CSV file ${path}: ${(cause as Error).message}. Check the path given to --data.`, { cause });
  }
  const records = parseCsv(text, { delimiter: options.delimiter ?? ',', source: path });
  const header = records[0];
  if (!header) throw new FedtlError('BAD_DATA', `CSV file ${path} is empty; it needs a header row and at least one data row.`);
  const columns = header.fields.map((name) => name.trim());
  const labelAt = columns.indexOf(labelColumn);
  if (labelAt < 0) {
    const looksNumeric = columns.every((name) => NUMBER.test(name));
    throw new FedtlError(
      'BAD_DATA',
      `CSV file ${path} has no label column '${labelColumn}'; columns found: [${columns.join(', ')}]. ` +
        (looksNumeric ? 'The first row looks like data: add a header row. ' : '') +
        'Pass the right name with labelColumn (--label-column).',
    );
  }
  if (columns.length < 2) throw new FedtlError('BAD_DATA', `CSV file ${path} has only the label column; it needs at least one numeric feature column.`);
  const dataRecords = records.slice(1);
  if (dataRecords.length === 0) throw new FedtlError('BAD_DATA', `CSV file ${path} has a header but no data rows.`);
  const featureColumns = columns.filter((_, c) => c !== labelAt);
  const order = options.columns ? columnOrder(featureColumns, options.columns, path) : featureColumns.map((_, i) => i);
  // Where each header column lands in a row (-1: the label column).
  const slot = new Int32Array(columns.length).fill(-1);
  featureColumns.forEach((_, i) => {
    slot[i < labelAt ? i : i + 1] = order.indexOf(i);
  });

  const rowSize = columns.length - 1;
  const rows = new Float32Array(dataRecords.length * rowSize);
  const rawLabels: string[] = [];
  const lines: number[] = [];
  for (let r = 0; r < dataRecords.length; r++) {
    const { line, fields } = dataRecords[r] as CsvRecord;
    if (fields.length !== columns.length) {
      throw new FedtlError(
        'BAD_DATA',
        `${path}:${line}: row has ${fields.length} fields but the header has ${columns.length}; every row needs one value per column.`,
      );
    }
    const out = r * rowSize;
    for (let c = 0; c < fields.length; c++) {
      const cell = (fields[c] as string).trim();
      if (c === labelAt) {
        if (cell === '') throw new FedtlError('BAD_DATA', `${path}:${line}: missing label in column '${labelColumn}'; every row needs a label.`);
        rawLabels.push(cell);
        continue;
      }
      if (!NUMBER.test(cell)) {
        throw new FedtlError(
          'BAD_DATA',
          `${path}:${line}:${c + 1}: column '${columns[c]}' holds ${JSON.stringify(cell)}, not a number; feature columns must be numeric (decimal, no empty cells).`,
        );
      }
      const value = Math.fround(Number(cell));
      if (!Number.isFinite(value)) {
        throw new FedtlError('BAD_DATA', `${path}:${line}:${c + 1}: column '${columns[c]}' holds ${cell}, too large for a 32-bit float; rescale the column.`);
      }
      rows[out + (slot[c] as number)] = value;
    }
    lines.push(line);
  }
  const { classNames, labels } = buildLabelIndex(rawLabels, {
    classNames: options.classNames,
    source: path,
    locate: (i) => `${path}:${lines[i] ?? '?'}`,
  });
  log.debug(`loaded ${dataRecords.length} rows x ${rowSize} features, ${classNames.length} classes from ${path}`);
  const names = order.map((i) => featureColumns[i] as string);
  return createDataset({ name: options.name ?? path, examples: { kind: 'tensor', rows, rowSize, columns: names }, labels, classNames });
}

/**
 * For each expected column, the index of the file's column with that name. The file must hold
 * exactly the expected columns (in any order): a missing column has no value to give, and an
 * extra one means the file is not the data the model was trained on.
 *
 * @example columnOrder(['b', 'a'], ['a', 'b'], 'x.csv') // [1, 0]
 */
export function columnOrder(found: readonly string[], expected: readonly string[], source: string): number[] {
  const missing = expected.filter((name) => !found.includes(name));
  const extra = found.filter((name) => !expected.includes(name));
  if (missing.length > 0 || extra.length > 0 || new Set(found).size !== found.length) {
    throw new FedtlError(
      'BAD_DATA',
      `CSV file ${source} has feature columns [${found.join(', ')}]; expected [${expected.join(', ')}]` +
        (missing.length > 0 ? `; missing [${missing.join(', ')}]` : '') +
        (extra.length > 0 ? `; not expected [${extra.join(', ')}]` : '') +
        (new Set(found).size !== found.length ? '; a column name repeats' : '') +
        '. Columns are matched by header name, so their order does not matter.',
    );
  }
  return expected.map((name) => found.indexOf(name));
}
