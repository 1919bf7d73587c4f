/**
 * fedtl as a package: `npm pack` (which builds dist/ through `prepack`), install the tarball into
 * an empty folder, and use it from there with plain Node — the command, a tiny simulation, and an
 * `import { startCoordinator } from 'fedtl/server'` in a `.mjs` file. Nothing of the clone's
 * sources or node_modules is visible to the installed copy.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

let work = '';
let app = '';
let files: string[] = [];

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'fedtl-package-'));
  // Pack: prepack builds dist/ with tsc (tsconfig.build.json).
  const packed = await run(NPM, ['pack', '--json', '--pack-destination', work], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 });
  const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  files = info!.files.map((f) => f.path);
  // Install into an empty project, from the local npm cache where it can (the registry otherwise).
  app = path.join(work, 'app');
  await run('mkdir', [app]);
  await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'uses-fedtl', private: true, type: 'module' }));
  await run(NPM, ['install', '--prefer-offline', '--no-audit', '--no-fund', path.join(work, info!.filename)], { cwd: app, maxBuffer: 64 * 1024 * 1024 });
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

function fedtl(args: string[]) {
  return run(process.execPath, [path.join(app, 'node_modules', 'fedtl', 'bin', 'fedtl.js'), ...args], { cwd: app, env: { ...process.env, FEDTL_BACKEND: 'wasm' }, maxBuffer: 64 * 1024 * 1024 });
}

describe('the packed fedtl', () => {
  it('ships built JavaScript with type declarations, and no TypeScript sources', () => {
    expect(files).toContain('dist/server/index.js');
    expect(files).toContain('dist/server/index.d.ts');
    expect(files).toContain('dist/scripts/cli.js');
    expect(files).toContain('bin/fedtl.js');
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    expect(files.some((f) => f.startsWith('test/'))).toBe(false);
  });

  it('runs `fedtl --help` and `--version` from the installed package', async () => {
    const help = await fedtl(['--help']);
    expect(help.stdout).toMatch(/Usage: fedtl/);
    expect(help.stdout).toMatch(/coordinator/);
    const manifest = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect((await fedtl(['--version'])).stdout.trim()).toBe(manifest.version);
  });

  it('runs a tiny simulation and writes its report', async () => {
    const out = path.join(app, 'sim');
    const result = await fedtl(['simulate', '--preset', 'mnist-mlp', '--mode', 'virtual', '--clients', '3', '--rounds', '1', '--train-examples', '300', '--test-examples', '100', '--no-baselines', '--out', out]);
    expect(result.stdout).toMatch(/federated .* after 1 rounds/);
    expect((await readdir(out)).sort()).toEqual(['report.html', 'report.json']);
  });

  it("imports { startCoordinator } from 'fedtl/server' in a plain .mjs file", async () => {
    const script = path.join(app, 'use.mjs');
    await writeFile(
      script,
      [
        "import { startCoordinator } from 'fedtl/server';",
        "import { FedtlClient } from 'fedtl/client';",
        "import { resolveConfig } from 'fedtl/simulation';",
        "import { FedAvg } from 'fedtl/shared/strategy';",
        'console.log(typeof startCoordinator, typeof FedtlClient, typeof resolveConfig, new FedAvg({ minClients: 1 }).name);',
      ].join('\n'),
    );
    const result = await run(process.execPath, [script], { cwd: app });
    expect(result.stdout.trim()).toBe('function function function fedavg');
  });
});
