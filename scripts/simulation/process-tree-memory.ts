/**
 * Resident memory of this process and every process it started (process-mode clients, their own
 * children), so a simulation's peak RSS covers the whole run and not only the coordinator.
 *
 * Read from Linux's /proc: `/proc/<pid>/status` (VmRSS) and `/proc/<pid>/task/<tid>/children`.
 * Elsewhere only this process is counted, and {@link processTreeMemoryCoversChildren} says so.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** True when child processes are counted (Linux /proc is readable). */
export const processTreeMemoryCoversChildren = ((): boolean => {
  try {
    readFileSync(`/proc/${process.pid}/status`, 'latin1');
    return true;
  } catch {
    return false;
  }
})();

function residentBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
  return match ? Number(match[1]) * 1024 : 0;
}

function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'latin1').trim();
    if (text) for (const child of text.split(/\s+/)) children.push(Number(child));
  }
  return children;
}

/** RSS in bytes of this process plus all its descendants (this process alone without /proc). */
export function processTreeRssBytes(): number {
  if (!processTreeMemoryCoversChildren) return process.memoryUsage().rss;
  let total = 0;
  const queue = [process.pid];
  const seen = new Set<number>();
  while (queue.length > 0) {
    const pid = queue.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    // A child may exit between the listing and the read: it then holds no memory.
    try {
      total += pid === process.pid ? process.memoryUsage().rss : residentBytes(pid);
      queue.push(...childrenOf(pid));
    } catch {
      continue;
    }
  }
  return total;
}
