/**
 * Public API of `shared/math`: seeded randomness and data partitioning for simulations.
 * Import from here outside this folder; the files behind it are internals.
 */
export { Random, createRandom } from './random.ts';
export type { RandomSeed, MutableArrayLike } from './random.ts';
export { median } from './statistics.ts';
export { partition, summarizePartition, PARTITION_SCHEMES } from './partition.ts';
export type { PartitionOptions, PartitionScheme, PartitionSummary, QuantityModel, SizeStats } from './partition.ts';
