import { describe, expect, it } from 'vitest';
import { clientOrder, clientRows, clientSize, groupByClient, trainingParts } from '../../../scripts/simulation/client-shards.ts';
import { clientSeed } from '../../../client/client-round.ts';
import { validationSplit } from '../../../client/data/split.ts';

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

  describe('training rows with a validation fraction', () => {
    // 3 clients of 40 rows each over 4 classes, in a scrambled partition.
    const labels = Int32Array.from({ length: 120 }, (_, i) => (i * 7) % 4);
    const parts = [0, 1, 2].map((c) => Int32Array.from({ length: 40 }, (_, k) => (k * 3 + c * 41) % 120));

    it('trains on every row of each part at fraction 0', () => {
      expect(trainingParts(parts, labels, 4, 0, 5)).toEqual(parts);
    });

    it('keeps out exactly the rows a socket or process client holds back from the same part', () => {
      const train = trainingParts(parts, labels, 4, 0.25, 5);
      parts.forEach((part, i) => {
        // What a `fedtl client` (process mode) or an in-process socket client does with its own rows, in part order.
        const ownLabels = Int32Array.from(part, (row) => labels[row]!);
        const split = validationSplit(ownLabels, 4, 0.25, clientSeed(5, i))!;
        expect(split.test.length).toBeGreaterThan(0);
        expect(train[i]!.length).toBe(part.length - split.test.length);
        expect([...train[i]!].sort((a, b) => a - b)).toEqual([...split.train].map((k) => part[k]!).sort((a, b) => a - b));
      });
    });

    it('refuses a fraction of 1 or more', () => {
      expect(() => trainingParts(parts, labels, 4, 1, 5)).toThrow(/validation fraction must be in \[0, 1\)/);
    });
  });
});
