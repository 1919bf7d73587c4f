/**
 * Class names and CSV feature columns travel in the protocol and are compared in order: a client
 * whose labels mean something else is refused, by the client itself and by the coordinator.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FedtlClient } from '../../client/client.ts';
import { createDataset } from '../../client/data/dataset.ts';
import { Coordinator } from '../../server/coordinator.ts';
import { describeBase, initialHeadWeights } from '../../server/start-coordinator.ts';
import { createUpdateOpener } from '../../server/update-opener.ts';
import { AllowList } from '../../shared/crypto/allow-list.ts';
import { formatPublicIdentity, generateIdentity, publicIdentity, type Identity } from '../../shared/crypto/identity.ts';
import { createIdentityBase } from '../../shared/bases/identity.ts';
import type { HeadSpec } from '../../shared/model/head.ts';
import { FedAvg } from '../../shared/strategy/fed-avg.ts';
import { signReady } from '../../shared/crypto/hello.ts';
import { RawClient, recordingLogger, signedHello, within } from '../support/hostile.ts';

const HEAD: HeadSpec = { hidden: [], activation: 'relu', dropout: 0, classes: 2 };
const BASE = createIdentityBase(2, { name: 'rows-2' });

interface Setup {
  coordinator: Coordinator;
  coordinatorIdentity: Identity;
  clients: Identity[];
}

let open: Setup | null = null;
const dirs: string[] = [];

async function start(options: { classNames?: string[]; featureColumns?: string[]; clients?: number } = {}): Promise<Setup> {
  const coordinatorIdentity = generateIdentity();
  const clients = Array.from({ length: options.clients ?? 3 }, () => generateIdentity());
  const allowList = AllowList.fromText(clients.map((id, i) => `${formatPublicIdentity(publicIdentity(id))} c${i}`).join('\n'));
  const initial = initialHeadWeights(BASE.embeddingSize, HEAD, 1);
  const coordinator = await Coordinator.start({
    identity: coordinatorIdentity,
    admission: { status: (key) => allowList.isAllowed(key) },
    base: { descriptor: await describeBase(BASE, null), directory: null },
    headSpec: HEAD,
    ...(options.classNames ? { classNames: options.classNames } : {}),
    ...(options.featureColumns ? { featureColumns: options.featureColumns } : {}),
    manifest: initial.manifest,
    initialWeights: initial.data,
    strategy: new FedAvg({ minClients: 1 }),
    rounds: 1,
    openUpdate: createUpdateOpener(coordinatorIdentity, (id) => allowList.resolveClient(id)),
    logger: recordingLogger(),
    loop: { federatedEvaluation: false, waitForClientsMs: 20_000 },
  });
  open = { coordinator, coordinatorIdentity, clients };
  return open;
}

async function connect(setup: Setup, i: number): Promise<RawClient> {
  const keys = publicIdentity(setup.coordinatorIdentity);
  const identity = setup.clients[i]!;
  return RawClient.connect(setup.coordinator.url, identity, keys.signingKey, keys.boxKey, (connectionId: string) => signedHello(identity, keys.signingKey, { connectionId }));
}

/** A signed ready with the given names (as a fedtl client sends it). */
async function ready(client: RawClient, names: { classNames?: string[]; featureColumns?: string[] }) {
  return client.call('ready', signReady(client.identity, client.binding, { baseHash: client.welcome.base.hash, examples: 10, validationExamples: 0, ...names }));
}

afterEach(async () => {
  await open?.coordinator.close();
  open = null;
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe('class names in the protocol', () => {
  it('announces the names in the welcome and refuses a client whose names are in another order, showing both lists', async () => {
    // Prepare
    const setup = await start({ classNames: ['cat', 'dog'] });
    const good = await connect(setup, 0);
    const swapped = await connect(setup, 1);
    // Execute
    const accepted = await ready(good, { classNames: ['cat', 'dog'] });
    const refused = await ready(swapped, { classNames: ['dog', 'cat'] });
    // Assert
    expect(good.welcome.classNames).toEqual(['cat', 'dog']);
    expect(accepted).toEqual({ ok: true });
    expect(refused.ok).toBe(false);
    if (refused.ok) return;
    expect(refused.code).toBe('BAD_DATA');
    expect(refused.message).toContain('[dog, cat]');
    expect(refused.message).toContain('[cat, dog]');
    expect(setup.coordinator.loop.memberCount).toBe(1);
    good.close();
    swapped.close();
  });

  it('without configured names, the first ready client fixes them and a later client with other names is refused', async () => {
    const setup = await start();
    const first = await connect(setup, 0);
    const second = await connect(setup, 1);
    expect(first.welcome.classNames).toBeUndefined();
    expect(await ready(first, { classNames: ['no', 'yes'] })).toEqual({ ok: true });
    expect(setup.coordinator.classNames).toEqual(['no', 'yes']);
    const refused = await ready(second, { classNames: ['yes', 'no'] });
    expect(refused.ok).toBe(false);
    // A client connecting now learns the adopted names in its welcome.
    const third = await connect(setup, 2);
    expect(third.welcome.classNames).toEqual(['no', 'yes']);
    for (const c of [first, second, third]) c.close();
  });

  it('refuses feature columns in another order and malformed name lists', async () => {
    const setup = await start({ featureColumns: ['age', 'weight'] });
    const a = await connect(setup, 0);
    const b = await connect(setup, 1);
    const reordered = await ready(a, { featureColumns: ['weight', 'age'] });
    expect(reordered.ok).toBe(false);
    if (!reordered.ok) expect(reordered.message).toMatch(/\[weight, age\].*\[age, weight\]/);
    const malformed = await ready(b, { classNames: ['x', 'x'] });
    expect(malformed.ok).toBe(false);
    if (!malformed.ok) expect(malformed.code).toBe('BAD_MESSAGE');
    a.close();
    b.close();
  });

  it('a fedtl client with swapped class names fails before training, naming both lists', async () => {
    // Prepare: the coordinator says [cat, dog]; the client's data numbers dog as 0.
    const setup = await start({ classNames: ['cat', 'dog'] });
    const dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-names-'));
    dirs.push(dir);
    const rows = new Float32Array(40).map((_, i) => (i % 2 ? 1 : -1) * (1 + (i % 3)));
    const train = createDataset({ name: 'swapped', examples: { kind: 'tensor', rows, rowSize: 2 }, labels: Int32Array.from({ length: 20 }, (_, i) => i % 2), classNames: ['dog', 'cat'] });
    const keys = publicIdentity(setup.coordinatorIdentity);
    const client = new FedtlClient({
      url: setup.coordinator.url,
      coordinator: { signingKey: keys.signingKey, boxKey: keys.boxKey },
      identity: setup.clients[0]!,
      data: { train },
      cacheDir: dir,
      logger: recordingLogger(),
    }).start();
    // Execute + Assert
    const error = await within(client.done.then(() => null, (e: unknown) => e as Error), 'client refusal');
    client.close();
    expect(error?.message).toMatch(/class names differ.*\[dog, cat\].*\[cat, dog\]/);
    expect(setup.coordinator.loop.memberCount).toBe(0);
  });
});
