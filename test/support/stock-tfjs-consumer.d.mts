// Types of stock-tfjs-consumer.mjs, which stays plain JavaScript so it can import nothing of fedtl.
import type * as tf from '@tensorflow/tfjs';

export function loadStockModel(dir: string): Promise<{ model: tf.LayersModel; description: Record<string, unknown> }>;
export function makeTokenizer(tokenizer: unknown): (text: string) => string[];
export function predictTexts(dir: string, texts: readonly string[]): Promise<{ classNames: string[]; probabilities: number[][]; ids: Int32Array }>;
export function predictCsv(dir: string, csvText: string): Promise<{ classNames: string[]; probabilities: number[][] }>;
