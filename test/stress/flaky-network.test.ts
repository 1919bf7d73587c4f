/**
 * Flaky network: a real FedtlClient downloads a multi-MB base through a loopback proxy that cuts
 * its connection (both directions destroyed, no close handshake) part-way through the download.
 * The client must reconnect, resume from its `.part` file instead of starting over (bytes sent
 * down ≈ the base size, not twice it), load the verified base, become ready and train a round.
 */
import * as tf from '@tensorflow/tfjs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FedtlClient } from '../../client/client.ts';
import type { Coordinator } from '../../server/coordinator.ts';
import { describeBase, startCoordinator } from '../../server/start-coordinator.ts';
import { AllowList } from '../../shared/crypto/allow-list.ts';
import { formatPublicIdentity, generateIdentity, publicIdentity } from '../../shared/crypto/identity.ts';
import { fileSaveHandler, loadBase, writeSidecar } from '../../shared/model/base-loader.ts';
import { FedAvg } from '../../shared/strategy/fed-avg.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { DIGIT_HEAD, digits, disjointParts } from '../support/federation.ts';
import { membersReached, recordingLogger } from '../support/hostile.ts';
import { CuttingProxy, within, writeResult } from './stress-support.ts';

/** Embedding width of the synthetic base: 784 × 2048 float32 ≈ 6.4 MB of weights. */
const EMBEDDING = 2048;

describe('flaky network during the base download', () => {
  let dir = '';
  let coordinator: Coordinator | undefined;
  let proxy: CuttingProxy | undefined;
  let client: FedtlClient | undefined;

  beforeAll(async () => {
    await selectBackend({ log: false });
  });

  afterEach(async () => {
    client?.close();
    await coordinator?.close();
    await proxy?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('resumes a cut download from its .part file, then joins and trains', async () => {
    // Prepare: a real layers base (one dense layer over 784 pixels) saved as a base directory.
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedtl-stress-flaky-'));
    const baseDir = path.join(dir, 'base');
    const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [784], units: EMBEDDING, activation: 'relu' })] });
    await model.save(fileSaveHandler(baseDir));
    model.dispose();
    await writeSidecar(baseDir, { format: 'fedtl-base', version: 1, name: 'stress-dense', kind: 'layers', input: { kind: 'tensor', size: 784 }, embeddingSize: EMBEDDING });
    const base = await loadBase(baseDir);
    const coordinatorIdentity = generateIdentity();
    const clientIdentity = generateIdentity();
    coordinator = await startCoordinator({
      identity: coordinatorIdentity,
      allowList: AllowList.fromText(`${formatPublicIdentity(publicIdentity(clientIdentity))} flaky`),
      base,
      baseDirectory: baseDir,
      headSpec: DIGIT_HEAD,
      strategy: new FedAvg({ minClients: 1 }),
      rounds: 1,
      logger: recordingLogger(),
      loop: { federatedEvaluation: false, roundTimeoutMs: 60_000, waitForClientsMs: 120_000 },
    });
    const descriptor = await describeBase(base, baseDir);
    const totalBytes = descriptor.files.reduce((sum, f) => sum + f.bytes, 0);
    // Cut once, 40% of the way through the base.
    proxy = await CuttingProxy.start(coordinator.port, Math.round(0.4 * totalBytes));
    const pub = publicIdentity(coordinatorIdentity);
    const logger = recordingLogger();
    const cacheDir = path.join(dir, 'client');
    const [train] = disjointParts((await digits()).train, [200]);

    // Execute
    client = new FedtlClient({
      url: proxy.url,
      coordinator: { signingKey: pub.signingKey, boxKey: pub.boxKey },
      identity: clientIdentity,
      data: { train: train! },
      cacheDir,
      backoff: { min: 100, max: 400 },
      logger,
    }).start();
    await membersReached(coordinator.loop, 1);
    const bytesBeforeReady = proxy.bytesDown;
    const history = await within(coordinator.run(), 'the round', 120_000);
    await within(client.done, 'the client to finish', 30_000);

    // Assert: one cut, a reconnection, and about one base's worth of bytes, not two.
    expect(proxy.cuts).toBe(1);
    expect(proxy.connections).toBeGreaterThanOrEqual(2);
    expect(logger.warnings.items.some((w) => /disconnected|handshake step failed/.test(w))).toBe(true);
    expect(bytesBeforeReady).toBeGreaterThan(totalBytes);
    expect(bytesBeforeReady).toBeLessThan(1.25 * totalBytes);
    const cached = await readdir(path.join(cacheDir, 'bases', base.hash));
    expect(cached.filter((name) => name.endsWith('.part'))).toEqual([]);
    expect(cached.sort()).toEqual(descriptor.files.map((f) => f.name).sort());
    expect(history).toHaveLength(1);
    expect(history[0]).toMatchObject({ accepted: 1, examples: 200 });
    const result = { baseBytes: totalBytes, cutAfterBytes: Math.round(0.4 * totalBytes), bytesDownBeforeReady: bytesBeforeReady, ratio: Math.round((bytesBeforeReady / totalBytes) * 1000) / 1000, connections: proxy.connections };
    await writeResult('flaky-network.json', result);
    process.stdout.write(`\n[stress:flaky] ${JSON.stringify(result)}\n`);
    base.dispose();
  });
});
