/**
 * A process that writes checkpoints of a large head round after round, forever, printing
 * `saved <round>` after each; a fault test kills it with SIGKILL mid-write. The weights of round r
 * are {@link headOfRound}(r), so a reader can tell which round it got and that it is whole.
 *
 * Run: `node --import tsx test/support/checkpoint-writer.ts <directory> <parameters> <first round>`.
 */
import { saveCheckpoint } from '../../server/checkpoint.ts';

/** Head of round `round`: every value differs per round and position. */
export function headOfRound(round: number, parameters: number): Float32Array {
  const out = new Float32Array(parameters);
  for (let i = 0; i < parameters; i++) out[i] = round + i / parameters;
  return out;
}

async function main(): Promise<void> {
  const [directory, parametersText, firstText] = process.argv.slice(2);
  if (!directory || !parametersText || !firstText) throw new Error('usage: checkpoint-writer.ts <directory> <parameters> <first round>');
  const parameters = Number(parametersText);
  for (let round = Number(firstText); ; round++) {
    await saveCheckpoint(directory, {
      round,
      runId: 'killed-writer',
      baseHash: 'b'.repeat(64),
      headSpec: { hidden: [], activation: 'relu', dropout: 0, classes: 10 },
      manifest: { parameterCount: parameters, entries: [{ name: 'dense/kernel', shape: [parameters / 10, 10], offset: 0, length: parameters }] },
      weights: headOfRound(round, parameters),
      history: [],
    });
    process.stdout.write(`saved ${round}\n`);
  }
}

if (process.argv[1]?.endsWith('checkpoint-writer.ts')) void main();
