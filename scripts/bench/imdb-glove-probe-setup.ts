/**
 * What the imdb-glove probes (`imdb-glove-probe.ts`, `imdb-glove-federation-probe.ts`) share: their
 * `key=value` arguments, the preset's data and GloVe table, and reviews as bags of token ids.
 */
import { readGloveVectors } from '../../shared/bases/glove.ts';
import { OOV_TOKEN, PAD_TOKEN, Tokenizer } from '../../shared/bases/tokenizer.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { resolveConfig, type SimulationConfig } from '../simulation/presets.ts';
import { loadSimulationData, openSimulationBase } from '../simulation/simulation-data.ts';

/** A numeric `key=value` argument of the command line, or `fallback`. */
export function probeArgs(argv: readonly string[] = process.argv.slice(2)): (key: string, fallback: number) => number {
  const args = new Map(argv.map((a) => a.split('=') as [string, string]));
  return (key, fallback) => (args.has(key) ? Number(args.get(key)) : fallback);
}

/** A review as the distinct token ids it uses (padding dropped) and how often each occurs. */
export interface Doc {
  ids: Int32Array;
  counts: Float32Array;
  label: number;
}

export interface ImdbGloveProbeData {
  config: SimulationConfig;
  train: { texts: string[]; labels: Int32Array };
  test: { texts: string[]; labels: Int32Array };
  /** A copy of the GloVe table, rows × 100. */
  table: Float32Array;
  /** A review as a bag of ids, cut at the sequence length as the base cuts it. */
  docOf: (text: string, label: number) => Doc;
}

/** The preset's split (seeded), its GloVe table and a tokenizer at `sequenceLength` tokens. */
export async function loadImdbGloveProbe(seed: number, sequenceLength: number, vocabularySize = 20_000): Promise<ImdbGloveProbeData> {
  await selectBackend();
  const config = resolveConfig('imdb-glove', { seed });
  const data = await loadSimulationData(config);
  const { base } = await openSimulationBase('glove-100d');
  if (base.input.kind !== 'text' || !base.model) throw new Error('imdb-glove needs a text base');
  if (data.train.examples.kind !== 'text' || data.test.examples.kind !== 'text') throw new Error('imdb-glove needs text data');
  let vocabulary = base.input.vocabulary;
  let table = (base.model.getLayer('glove_embedding').getWeights()[0]!.dataSync() as Float32Array).slice();
  if (vocabularySize !== 20_000) {
    const glove = await readGloveVectors({ vocabularySize });
    vocabulary = [PAD_TOKEN, OOV_TOKEN, ...glove.words];
    table = new Float32Array((glove.words.length + 2) * glove.dimensions);
    table.set(glove.vectors, 2 * glove.dimensions);
  }
  const tokenizer = new Tokenizer(vocabulary, { sequenceLength });
  const docOf = (text: string, label: number): Doc => {
    const counts = new Map<number, number>();
    for (const id of tokenizer.encode(text)) if (id !== 0) counts.set(id, (counts.get(id) ?? 0) + 1);
    return { ids: Int32Array.from(counts.keys()), counts: Float32Array.from(counts.values()), label };
  };
  return {
    config,
    train: { texts: data.train.examples.texts, labels: data.train.labels },
    test: { texts: data.test.examples.texts, labels: data.test.labels },
    table,
    docOf,
  };
}
