import { describe, expect, it } from 'vitest';
import { clientOrder, clientRows, clientSize, groupByClient } from '../../../scripts/simulation/client-shards.ts';

describe('client shards', () => {
  // Prepare: 5 rows of 2 values (row r holds [r, 10 r]), labels r % 2, three clients.
  const features = { values: Float32Array.from([0, 0, 1, 10, 2, 20, 3, 30, 4, 40]), rows: 5, cols: 2 };
  const labels = Int32Array.from([0, 1, 0, 1, 0]);
  const parts = [Int32Array.from([1, 3]), Int32Array.from([4]), Int32Array.from([0, 2])];

  it('groups each client’s rows contiguously, in the partition’s order', () => {
    const shards = groupByClient(clientOrder(parts), features, labels);
    expect(Array.from(shards.offsets)).toEqual([0, 2, 3, 5]);
    expect(Array.from(shards.features.values)).toEqual([1, 10, 3, 30, 4, 40, 0, 0, 2, 20]);
    expect(Array.from(shards.labels)).toEqual([1, 1, 0, 0, 0]);
    expect(shards.count).toBe(3);
    expect([0, 1, 2].map((i) => clientSize(shards, i))).toEqual([2, 1, 2]);
  });

  it('hands out a client’s rows as views, not copies', () => {
    const shards = groupByClient(clientOrder(parts), features, labels);
    const client = clientRows(shards, 2);
    expect(client.features.rows).toBe(2);
    expect(Array.from(client.features.values)).toEqual([0, 0, 2, 20]);
    expect(Array.from(client.labels)).toEqual([0, 0]);
    expect(client.features.values.buffer).toBe(shards.features.values.buffer);
    expect(client.labels.buffer).toBe(shards.labels.buffer);
  });

  it('refuses an index outside the matrix and a client that does not exist', () => {
    expect(() => groupByClient(clientOrder([Int32Array.from([5])]), features, labels)).toThrow(/outside the 5 training rows/);
    expect(() => groupByClient(clientOrder(parts), features, labels.subarray(0, 4))).toThrow(/5 feature rows but 4 labels/);
    const shards = groupByClient(clientOrder(parts), features, labels);
    expect(() => clientRows(shards, 3)).toThrow(/outside \[0, 3\)/);
  });
});
