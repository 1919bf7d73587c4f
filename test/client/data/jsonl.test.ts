import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadJsonl } from '../../../client/data/jsonl.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedtl-jsonl-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function jsonlFile(name: string, content: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

describe('loadJsonl', () => {
  it('reads texts with string labels, skipping blank lines', async () => {
    const path = await jsonlFile('ok.jsonl', '{"text":"good film","label":"pos"}\n\n{"text":"bad","label":"neg"}\r\n{"text":"ok","label":"pos","extra":1}\n');
    const ds = await loadJsonl({ path });
    expect(ds.examples).toEqual({ kind: 'text', texts: ['good film', 'bad', 'ok'] });
    expect(ds.classNames).toEqual(['neg', 'pos']);
    expect(Array.from(ds.labels)).toEqual([1, 0, 1]);
  });

  it('reads integer labels and custom field names', async () => {
    const path = await jsonlFile('ints.jsonl', '{"body":"a","y":1}\n{"body":"b","y":0}\n');
    const ds = await loadJsonl({ path, textField: 'body', labelField: 'y' });
    expect(ds.classNames).toEqual(['0', '1']);
    expect(Array.from(ds.labels)).toEqual([1, 0]);
  });

  const errorCases: [string, string, RegExp][] = [
    ['empty.jsonl', '\n\n', /holds no records/],
    ['bad-json.jsonl', '{"text":"a","label":1}\n{"text":\n', /bad-json\.jsonl:2: not valid JSON/],
    ['array.jsonl', '["a", 1]\n', /array\.jsonl:1: expected a JSON object/],
    ['no-text.jsonl', '{"text":"a","label":1}\n{"label":1}\n', /no-text\.jsonl:2: field 'text' must be a string/],
    ['no-label.jsonl', '{"text":"a"}\n', /no-label\.jsonl:1: missing label/],
    ['float-label.jsonl', '{"text":"a","label":0.5}\n', /float-label\.jsonl:1: label must be a string or an integer/],
    ['mixed.jsonl', '{"text":"a","label":1}\n{"text":"b","label":"1"}\n', /mixed\.jsonl:2: .*one label type/],
  ];
  it.each(errorCases)('refuses %s with BAD_DATA naming file:line', async (name, content, pattern) => {
    const path = await jsonlFile(name, content);
    const error = await loadJsonl({ path }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining(path) });
    expect((error as Error).message).toMatch(pattern);
  });

  it('refuses a missing file', async () => {
    const path = join(dir, 'missing.jsonl');
    await expect(loadJsonl({ path })).rejects.toMatchObject({ code: 'BAD_DATA', message: expect.stringContaining(path) });
  });
});
