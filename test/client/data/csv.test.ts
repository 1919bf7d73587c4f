import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCsv, parseCsv } from '../../../client/data/csv.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedtl-csv-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function csvFile(name: string, content: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

describe('parseCsv', () => {
  it('handles RFC 4180 quotes, doubled quotes, embedded newlines, CRLF and blank lines', () => {
    const records = parseCsv('a,b\r\n"x,1","say ""hi"""\r\n\r\n"multi\nline",3\n', { source: 't.csv' });
    expect(records).toEqual([
      { line: 1, fields: ['a', 'b'] },
      { line: 2, fields: ['x,1', 'say "hi"'] },
      { line: 4, fields: ['multi\nline', '3'] },
    ]);
  });

  it('reports an unclosed quote with file and line', () => {
    expect(() => parseCsv('a,b\n1,"oops\n', { source: 'bad.csv' })).toThrow(expect.objectContaining({ code: 'BAD_DATA', message: expect.stringContaining('bad.csv:2') }));
  });
});

describe('loadCsv', () => {
  it('reads numeric features and string labels mapped to sorted class names', async () => {
    const path = await csvFile('ok.csv', '\uFEFFx1,"label",x2\n1.5,malignant,-2\n0,"benign",3e2\n.25,malignant,+4\n');
    const ds = await loadCsv({ path });
    expect(ds.classNames).toEqual(['benign', 'malignant']);
    expect(Array.from(ds.labels)).toEqual([1, 0, 1]);
    expect(ds.examples).toEqual({ kind: 'tensor', rowSize: 2, rows: Float32Array.from([1.5, -2, 0, 300, 0.25, 4]), columns: ['x1', 'x2'] });
    expect(ds.name).toBe(path);
  });

  it('matches columns by header name when the model order is given, whatever the file order', async () => {
    // Prepare: the same data with its columns in two orders.
    const inOrder = await csvFile('in-order.csv', 'age,weight,label\n30,70,no\n80,55,yes\n');
    const shuffled = await csvFile('shuffled.csv', 'weight,label,age\n70,no,30\n55,yes,80\n');
    // Execute
    const a = await loadCsv({ path: inOrder, columns: ['age', 'weight'] });
    const b = await loadCsv({ path: shuffled, columns: ['age', 'weight'] });
    // Assert: identical rows in model order, and the names recorded with them.
    expect(b.examples).toEqual(a.examples);
    expect(b.examples).toEqual({ kind: 'tensor', rowSize: 2, rows: Float32Array.from([30, 70, 80, 55]), columns: ['age', 'weight'] });
  });

  it('refuses a file with a missing or an unexpected column, naming both', async () => {
    const missing = await csvFile('missing-col.csv', 'age,label\n30,no\n');
    const extra = await csvFile('extra-col.csv', 'age,weight,height,label\n30,70,180,no\n');
    await expect(loadCsv({ path: missing, columns: ['age', 'weight'] })).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringMatching(/missing \[weight\]/) });
    await expect(loadCsv({ path: extra, columns: ['age', 'weight'] })).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringMatching(/not expected \[height\]/) });
  });

  it('sorts integer labels numerically and honours labelColumn', async () => {
    const path = await csvFile('ints.csv', 'f,y\n1,10\n2,2\n3,10\n');
    const ds = await loadCsv({ path, labelColumn: 'y' });
    expect(ds.classNames).toEqual(['2', '10']);
    expect(Array.from(ds.labels)).toEqual([1, 0, 1]);
  });

  it('maps labels through a fixed federation class list', async () => {
    const path = await csvFile('fixed.csv', 'f,label\n1,b\n');
    const ds = await loadCsv({ path, classNames: ['a', 'b', 'c'] });
    expect(Array.from(ds.labels)).toEqual([1]);
    expect(ds.classNames).toEqual(['a', 'b', 'c']);
    await expect(loadCsv({ path, classNames: ['a'] })).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining(`${path}:2`) });
  });

  const errorCases: [string, string, RegExp][] = [
    ['empty.csv', '', /is empty/],
    ['no-label.csv', 'a,b\n1,2\n', /no label column 'label'; columns found: \[a, b\]/],
    ['no-header.csv', '1,2\n3,4\n', /looks like data: add a header row/],
    ['header-only.csv', 'a,label\n', /no data rows/],
    ['text-cell.csv', 'a,b,label\n1,2,x\n3,abc,y\n', /text-cell\.csv:3:2: column 'b' holds "abc"/],
    ['empty-cell.csv', 'a,label\n,x\n', /empty-cell\.csv:2:1: column 'a' holds ""/],
    ['hex-cell.csv', 'a,label\n0x10,x\n', /hex-cell\.csv:2:1/],
    ['missing-label.csv', 'a,label\n1,x\n2,\n', /missing-label\.csv:3: missing label/],
    ['ragged.csv', 'a,b,label\n1,2,x\n1,x\n', /ragged\.csv:3: row has 2 fields but the header has 3/],
    ['huge.csv', 'a,label\n1e60,x\n', /huge\.csv:2:1: .*too large/],
    ['only-label.csv', 'label\nx\n', /only the label column/],
  ];
  it.each(errorCases)('refuses %s with BAD_DATA naming the file', async (name, content, pattern) => {
    const path = await csvFile(name, content);
    const error = await loadCsv({ path }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining(path) });
    expect((error as Error).message).toMatch(pattern);
  });

  it('refuses a missing file', async () => {
    const path = join(dir, 'nope.csv');
    await expect(loadCsv({ path })).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining(path) });
  });

  it('gives the same fingerprint for the same content and a new one when a value changes', async () => {
    const a = await loadCsv({ path: await csvFile('fa.csv', 'f,label\n1,x\n2,y\n') });
    const b = await loadCsv({ path: await csvFile('fb.csv', 'f,label\n1,x\n2,y\n') });
    const c = await loadCsv({ path: await csvFile('fc.csv', 'f,label\n1,x\n2.5,y\n') });
    expect(b.fingerprint).toBe(a.fingerprint);
    expect(c.fingerprint).not.toBe(a.fingerprint);
  });
});
