import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { processTreeMemoryCoversChildren, processTreeRssBytes } from '../../../scripts/simulation/process-tree-memory.ts';

describe('processTreeRssBytes', () => {
  it.runIf(processTreeMemoryCoversChildren)('counts a child process’s resident memory', async () => {
    // Prepare: a child that touches 150 MB and says so, then waits to be killed.
    const child = spawn(process.execPath, ['-e', "const b = Buffer.alloc(150 * 1024 * 1024, 1); process.stdout.write('ready'); setInterval(() => b[0]++, 1000);"], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await once(child.stdout!, 'data');
      // Execute
      const tree = processTreeRssBytes();
      const own = process.memoryUsage().rss;
      // Assert: the tree holds at least the child's 150 MB beyond this process.
      expect(tree - own).toBeGreaterThan(140 * 1024 * 1024);
    } finally {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    // Once the child is gone, only this process (and whatever vitest runs beside it) remains.
    expect(processTreeRssBytes() - process.memoryUsage().rss).toBeLessThan(140 * 1024 * 1024);
  });

  it('counts at least this process', () => {
    expect(processTreeRssBytes()).toBeGreaterThanOrEqual(process.memoryUsage().rss * 0.9);
  });
});
