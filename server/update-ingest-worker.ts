/**
 * Worker thread of {@link UpdateIngest} (update-ingest.ts): serves the ingest on its parent port
 * (update-ingest-service.ts). Not a public module.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { IngestWorkerSetup } from './update-ingest.ts';
import { serveIngest } from './update-ingest-service.ts';

if (parentPort === null) throw new Error('update-ingest-worker.ts must run as a worker thread');
serveIngest(parentPort, workerData as IngestWorkerSetup);
