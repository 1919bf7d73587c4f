/**
 * The `fedtl` command as users run it: real child processes, real files, a real coordinator and
 * client talking over loopback. Waits on process output, never on sleeps.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'fedtl.js');

interface Run {
  child: ChildProcessWithoutNullStreams;
  output: () => string;
  exit: Promise<number | null>;
  /** Resolves with the first match of `pattern` in stdout+stderr. */
  waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>;
}

function run(args: string[]): Run {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, FEDTL_LOG: 'info' } });
  let text = '';
  const listeners = new Set<() => void>();
  const append = (chunk: Buffer) => {
    text += chunk.toString();
    for (const listener of listeners) listener();
  };
  child.stdout.on('data', append);
  child.stderr.on('data', append);
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const waitFor = (pattern: RegExp, timeoutMs = 60_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const match = text.match(pattern);
        if (match) {
          listeners.delete(check);
          clearTimeout(timer);
          resolve(match);
        }
      };
      const timer = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`timed out waiting for ${pattern}; output so far:\n${text}`));
      }, timeoutMs);
      listeners.add(check);
      check();
    });
  return { child, output: () => text, exit, waitFor };
}

describe('fedtl command line', () => {
  let dir = '';

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-cli-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keygen writes an owner-only identity, prints its public key, and refuses to overwrite it', async () => {
    const file = path.join(dir, 'k.key');
    const first = run(['keygen', '--out', file]);
    expect(await first.exit).toBe(0);
    expect(first.output()).toMatch(/^fedtl1:[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$/m);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const again = run(['keygen', '--out', file]);
    expect(await again.exit).toBe(2);
    expect(again.output()).toMatch(/exists|force/i);
  });

  it('exits non-zero with a clear message on misconfiguration', async () => {
    const noIdentity = run(['coordinator', '--allow', 'x', '--classes', '2']);
    expect(await noIdentity.exit).toBe(2);
    expect(noIdentity.output()).toMatch(/needs --identity.*keygen/);
    const badKey = run(['client', '--url', 'http://127.0.0.1:1', '--coordinator-key', 'not-a-key', '--identity', 'x', '--data-type', 'imdb']);
    expect(await badKey.exit).toBe(2);
    expect(badKey.output()).toMatch(/fedtl1/);
    const badBackend = run(['--backend', 'gpu', 'keygen', '--out', path.join(dir, 'never.key')]);
    expect(await badBackend.exit).not.toBe(0);
    expect(badBackend.output()).toMatch(/must be one of tensorflow, wasm, cpu/);
  });

  it('stops a coordinator at start (exit 2) on a config file with a wrong type, naming the key', async () => {
    const wrongType = path.join(dir, 'wrong-type.json');
    await writeFile(wrongType, JSON.stringify({ identity: 'x', allow: 'y', classes: 2, lr: '0.01' }));
    const typed = run(['coordinator', '--config', wrongType]);
    expect(await typed.exit).toBe(2);
    expect(typed.output()).toMatch(/wrong-type\.json: "lr": Invalid input: expected number, received string/);
    // Unknown keys and strategy parameters are refused the same way (test/scripts/coordinator-config.test.ts).
  });

  it('runs a coordinator and a client from the command line to an exported model, and predicts with it', async () => {
    // Prepare: identities, allow list, and a tiny CSV a "hospital" holds.
    const coordinatorKey = path.join(dir, 'coordinator.key');
    const clientKey = path.join(dir, 'client.key');
    expect(await run(['keygen', '--out', coordinatorKey]).exit).toBe(0);
    const keygen = run(['keygen', '--out', clientKey]);
    expect(await keygen.exit).toBe(0);
    const clientPublic = keygen.output().match(/^fedtl1:\S+$/m)![0];
    await writeFile(path.join(dir, 'clients.allow'), `${clientPublic} hospital-a\n`);
    const rows = ['f1,f2,label'];
    for (let i = 0; i < 60; i++) rows.push(i % 2 ? `${1 + (i % 5) / 10},${2 - (i % 3) / 10},yes` : `${-1 - (i % 5) / 10},${-2 + (i % 3) / 10},no`);
    await writeFile(path.join(dir, 'data.csv'), rows.join('\n') + '\n');

    // Execute: coordinator on a free port, then the client pinned to its key.
    const out = path.join(dir, 'run');
    const coordinator = run([
      'coordinator', '--identity', coordinatorKey, '--allow', path.join(dir, 'clients.allow'), '--base', 'identity-2',
      '--classes', '2', '--class-names', 'no,yes', '--rounds', '2', '--min-clients', '1', '--lr', '0.1', '--port', '0', '--out', out,
    ]);
    const key = (await coordinator.waitFor(/^(fedtl1:\S+)$/m))[1]!;
    const url = (await coordinator.waitFor(/listening on (http:\/\/\S+)/))[1]!;
    const client = run([
      'client', '--url', url, '--coordinator-key', key, '--identity', clientKey, '--data', path.join(dir, 'data.csv'),
      '--data-type', 'csv', '--class-names', 'no,yes', '--cache', path.join(dir, 'cache'),
    ]);

    // Assert: both finish cleanly, the client saw its updates accepted, the coordinator exported a model.
    expect(await client.exit).toBe(0);
    expect(client.output()).toMatch(/round 2: update accepted/);
    expect(await coordinator.exit).toBe(0);
    expect(coordinator.output()).toMatch(/round 2\/2 · 1\/1 clients · 54 examples/);
    const history = JSON.parse(await readFile(path.join(out, 'history.json'), 'utf8')) as unknown[];
    expect(history).toHaveLength(2);
    const sidecar = JSON.parse(await readFile(path.join(out, 'model', 'fedtl-model.json'), 'utf8')) as { classNames: string[] };
    expect(sidecar.classNames).toEqual(['no', 'yes']);
    await writeFile(path.join(dir, 'new.csv'), 'f1,f2\n1.2,1.9\n-1.3,-2.1\n');
    const predicted = run(['predict', '--model', path.join(out, 'model'), '--csv', path.join(dir, 'new.csv')]);
    expect(await predicted.exit).toBe(0);
    expect(predicted.output()).toMatch(/^yes\t.*row 1\t\(no \d+\.\d%, yes \d+\.\d%\)$/m);
    expect(predicted.output()).toMatch(/^no\t.*row 2\t/m);
  });

  it('runs `coordinator --secure-aggregation` with two command-line clients to a finished run', async () => {
    const sa = path.join(dir, 'secagg');
    await mkdir(sa, { recursive: true });
    const coordinatorKey = path.join(sa, 'coordinator.key');
    expect(await run(['keygen', '--out', coordinatorKey]).exit).toBe(0);
    const lines: string[] = [];
    for (const name of ['a', 'b']) {
      const keygen = run(['keygen', '--out', path.join(sa, `${name}.key`)]);
      expect(await keygen.exit).toBe(0);
      lines.push(`${keygen.output().match(/^fedtl1:\S+$/m)![0]} hospital-${name}`);
    }
    await writeFile(path.join(sa, 'clients.allow'), lines.join('\n') + '\n');
    const out = path.join(sa, 'run');
    const coordinator = run([
      'coordinator', '--identity', coordinatorKey, '--allow', path.join(sa, 'clients.allow'), '--base', 'identity-2', '--secure-aggregation',
      '--classes', '2', '--class-names', 'no,yes', '--rounds', '2', '--min-clients', '2', '--lr', '0.1', '--port', '0', '--out', out,
    ]);
    const key = (await coordinator.waitFor(/^(fedtl1:\S+)$/m))[1]!;
    const url = (await coordinator.waitFor(/listening on (http:\/\/\S+)/))[1]!;
    const clients = ['a', 'b'].map((name) =>
      run(['client', '--url', url, '--coordinator-key', key, '--identity', path.join(sa, `${name}.key`), '--data', path.join(dir, 'data.csv'),
        '--data-type', 'csv', '--class-names', 'no,yes', '--cache', path.join(sa, `cache-${name}`)]),
    );
    for (const client of clients) expect(await client.exit).toBe(0);
    expect(await coordinator.exit).toBe(0);
    expect(coordinator.output()).toMatch(/round 2\/2 · 2\/2 clients/);
    const history = JSON.parse(await readFile(path.join(out, 'history.json'), 'utf8')) as { serverLoss: number | null; evalLoss: number | null }[];
    expect(history).toHaveLength(2);
  });

  it('reads a prediction CSV by header name, refuses unknown columns, and says a finished run is finished', async () => {
    const out = path.join(dir, 'run');
    const coordinatorKey = path.join(dir, 'coordinator.key');

    // The export records its columns; a file with them in another order is read by header name.
    const described = JSON.parse(await readFile(path.join(out, 'model', 'fedtl-model.json'), 'utf8')) as { preprocessing: { columns: string[] }; provenance: { extra: { run: unknown } } };
    expect(described.preprocessing.columns).toEqual(['f1', 'f2']);
    expect(described.provenance.extra.run).toEqual({ status: 'complete', roundsDone: 2, roundsPlanned: 2 });
    await writeFile(path.join(dir, 'reordered.csv'), 'f2,f1\n1.9,1.2\n-2.1,-1.3\n');
    const reordered = run(['predict', '--model', path.join(out, 'model'), '--csv', path.join(dir, 'reordered.csv'), '--json']);
    expect(await reordered.exit).toBe(0);
    const json = JSON.parse(reordered.output()) as { className: string; probabilities: Record<string, number> }[];
    expect(json.map((r) => r.className)).toEqual(['yes', 'no']);
    expect(Object.keys(json[0]!.probabilities)).toEqual(['no', 'yes']);
    await writeFile(path.join(dir, 'wrong-columns.csv'), 'f1,f3\n1.2,1.9\n');
    const wrongColumns = run(['predict', '--model', path.join(out, 'model'), '--csv', path.join(dir, 'wrong-columns.csv')]);
    expect(await wrongColumns.exit).toBe(2);
    expect(wrongColumns.output()).toMatch(/missing \[f2\]; not expected \[f3\]/);

    // Running the finished run again says so instead of "continuing".
    const again = run([
      'coordinator', '--identity', coordinatorKey, '--allow', path.join(dir, 'clients.allow'), '--base', 'identity-2',
      '--classes', '2', '--class-names', 'no,yes', '--rounds', '2', '--min-clients', '1', '--port', '0', '--out', out,
    ]);
    expect(await again.exit).toBe(0);
    expect(again.output()).toMatch(/holds a finished run: 2 of 2 rounds done/);
    expect(again.output()).not.toMatch(/continuing at round/);
  });

  it('on Ctrl-C mid-run exits 130 and marks the export partial', async () => {
    const coordinatorKey = path.join(dir, 'coordinator.key');
    const out = path.join(dir, 'run-interrupted');
    const coordinator = run([
      'coordinator', '--identity', coordinatorKey, '--allow', path.join(dir, 'clients.allow'), '--base', 'identity-2',
      '--classes', '2', '--rounds', '100000', '--min-clients', '1', '--port', '0', '--out', out,
    ]);
    const key = (await coordinator.waitFor(/^(fedtl1:\S+)$/m))[1]!;
    const url = (await coordinator.waitFor(/listening on (http:\/\/\S+)/))[1]!;
    const client = run(['client', '--url', url, '--coordinator-key', key, '--identity', path.join(dir, 'client.key'), '--data', path.join(dir, 'data.csv'), '--data-type', 'csv', '--cache', path.join(dir, 'cache')]);
    await coordinator.waitFor(/round 2\/100000/);
    coordinator.child.kill('SIGINT');
    expect(await coordinator.exit).toBe(130);
    const done = Number(coordinator.output().match(/interrupted after (\d+) of 100000 rounds; PARTIAL model/)![1]);
    const sidecar = JSON.parse(await readFile(path.join(out, 'model', 'fedtl-model.json'), 'utf8')) as { provenance: { extra: { run: unknown } } };
    expect(sidecar.provenance.extra.run).toEqual({ status: 'partial', roundsDone: done, roundsPlanned: 100000 });
    client.child.kill('SIGINT');
    expect(await client.exit).toBe(130);
  });

  it('stops a DP coordinator at its privacy budget with the model it has, and refuses to start again once the budget is spent', async () => {
    // q = 1 (one admitted client), z = 2: ε after 1, 2, 3 rounds at δ = 1e-5 is 2.17, 3.19, 4.01, so a budget of 3.5 allows 2.
    const out = path.join(dir, 'run-dp');
    const args = [
      'coordinator', '--identity', path.join(dir, 'coordinator.key'), '--allow', path.join(dir, 'clients.allow'), '--base', 'identity-2',
      '--classes', '2', '--rounds', '10', '--min-clients', '1', '--port', '0', '--out', out, '--dp-clip', '1', '--dp-noise-multiplier', '2', '--dp-budget', '3.5',
    ];
    const coordinator = run(args);
    const key = (await coordinator.waitFor(/^(fedtl1:\S+)$/m))[1]!;
    const url = (await coordinator.waitFor(/listening on (http:\/\/\S+)/))[1]!;
    const client = run(['client', '--url', url, '--coordinator-key', key, '--identity', path.join(dir, 'client.key'), '--data', path.join(dir, 'data.csv'), '--data-type', 'csv', '--cache', path.join(dir, 'cache')]);
    expect(await coordinator.exit).toBe(0);
    expect(coordinator.output()).toMatch(/round 1\/10 .*ε 2\.168 this round, 2\.168 in all \(δ 0\.00001\)/);
    expect(coordinator.output()).toMatch(/privacy budget reached: round 3 would raise ε from 3\.190 to 4\.012, over the budget ε = 3\.5/);
    expect(coordinator.output()).toMatch(/stopped by the privacy budget after 2 of 10 rounds; model/);
    const history = JSON.parse(await readFile(path.join(out, 'history.json'), 'utf8')) as { privacy: { epsilonTotal: number } }[];
    expect(history.map((r) => Number(r.privacy.epsilonTotal.toFixed(3)))).toEqual([2.168, 3.19]);
    const sidecar = JSON.parse(await readFile(path.join(out, 'model', 'fedtl-model.json'), 'utf8')) as { provenance: { extra: { run: unknown } } };
    expect(sidecar.provenance.extra.run).toEqual({ status: 'partial', roundsDone: 2, roundsPlanned: 10 });
    client.child.kill('SIGINT');
    await client.exit;
    // The same run again: the checkpoint's 2 rounds already cost what the budget allows.
    const again = run(args);
    expect(await again.exit).toBe(2);
    expect(again.output()).toMatch(/privacy budget ε = 3\.5 is already spent: 2 round\(s\) cost ε = 3\.190/);
  });

  it('names the busy port and exits 2; a client with a missing --data path fails before connecting', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as AddressInfo).port;
    const coordinator = run([
      'coordinator', '--identity', path.join(dir, 'coordinator.key'), '--allow', path.join(dir, 'clients.allow'), '--base', 'identity-2',
      '--classes', '2', '--port', String(port), '--out', path.join(dir, 'run-busy'),
    ]);
    expect(await coordinator.exit).toBe(2);
    blocker.close();
    expect(coordinator.output()).toMatch(new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use.*--port`));
    expect(coordinator.output()).not.toMatch(/EADDRINUSE/);

    const key = run(['keygen', '--out', path.join(dir, 'lonely.key')]);
    expect(await key.exit).toBe(0);
    const client = run(['client', '--url', 'http://127.0.0.1:1', '--coordinator-key', key.output().match(/^fedtl1:\S+$/m)![0], '--identity', path.join(dir, 'lonely.key'), '--data', path.join(dir, 'nowhere.csv'), '--data-type', 'csv']);
    expect(await client.exit).toBe(2);
    expect(client.output()).toMatch(/--data .*nowhere\.csv does not exist/);
    expect(client.output()).not.toMatch(/cannot connect/);
  });

  it('shuts a waiting coordinator down cleanly on SIGTERM', async () => {
    const coordinatorKey = path.join(dir, 'coordinator.key');
    const coordinator = run([
      'coordinator', '--identity', coordinatorKey, '--allow', path.join(dir, 'clients.allow'), '--base', 'identity-2',
      '--classes', '2', '--rounds', '2', '--port', '0', '--out', path.join(dir, 'run-sigterm'),
    ]);
    await coordinator.waitFor(/waiting for clients/);
    coordinator.child.kill('SIGTERM');
    expect(await coordinator.exit, coordinator.output()).toBe(143);
    expect(coordinator.output()).toMatch(/SIGTERM received, shutting down/);
  });
});
