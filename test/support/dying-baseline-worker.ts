/**
 * A baseline worker that starts like the real one and then dies at its first job, as a worker
 * killed by the system would: for the pool's tests of a worker lost mid-run.
 */
import { parentPort } from 'node:worker_threads';

const port = parentPort!;
port.postMessage({ type: 'ready' });
port.on('message', () => process.exit(3));
