// Uses an exported fedtl model the way someone outside fedtl would: stock @tensorflow/tfjs and
// Node built-ins only, with every preprocessing step re-implemented from fedtl-model.json alone.
// Plain JavaScript on purpose: no fedtl import may creep in (the test checks the import list).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';

/** Reads model.json + its weight files and loads them with stock tf.loadLayersModel. */
export async function loadStockModel(dir) {
  const modelJson = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'));
  const weightSpecs = modelJson.weightsManifest.flatMap((group) => group.weights);
  const buffers = [];
  for (const group of modelJson.weightsManifest) for (const file of group.paths) buffers.push(await readFile(path.join(dir, file)));
  const joined = Buffer.concat(buffers);
  const weightData = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength);
  const model = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: modelJson.modelTopology, weightSpecs, weightData }));
  const description = JSON.parse(await readFile(path.join(dir, 'fedtl-model.json'), 'utf8'));
  return { model, description };
}

/** The tokenizer, built from `preprocessing.tokenizer.steps` (nothing about it is hard-coded here). */
export function makeTokenizer(tokenizer) {
  const steps = tokenizer.steps;
  return (text) => {
    let s = text;
    let words = [];
    for (const step of steps) {
      if (step.step === 'lowercase') s = s.toLowerCase();
      else if (step.step === 'replace') s = s.replace(new RegExp(step.pattern, step.flags), step.replacement);
      else if (step.step === 'entities') s = s.replace(new RegExp(step.pattern, step.flags), (m) => (Object.hasOwn(step.map, m) ? step.map[m] : step.otherwise));
      else if (step.step === 'words') words = [...s.matchAll(new RegExp(step.pattern, step.flags))].map((m) => m[0]);
      else if (step.step === 'contractions') words = words.flatMap((w) => contraction(w, step));
      else throw new Error(`unknown tokenizer step ${step.step}`);
    }
    return words;
  };
}

function contraction(word, rule) {
  if (!word.includes("'")) return [word];
  if (word.endsWith(rule.negationSuffix) && word.length > rule.negationSuffix.length) {
    const stem = word.slice(0, -rule.negationSuffix.length);
    return [Object.hasOwn(rule.negationStems, stem) ? rule.negationStems[stem] : stem, rule.negationWord];
  }
  const first = word.indexOf("'");
  const last = word.lastIndexOf("'");
  const suffix = word.slice(last + 1);
  if (first === last && Object.hasOwn(rule.suffixes, suffix)) {
    const replacement = rule.suffixes[suffix];
    return replacement === null ? [word.slice(0, last)] : [word.slice(0, last), replacement];
  }
  return word.split("'").filter((piece) => piece !== '');
}

/** Texts → class probabilities, preprocessing exactly as `fedtl-model.json` describes. */
export async function predictTexts(dir, texts) {
  const { model, description } = await loadStockModel(dir);
  const p = description.preprocessing;
  const vocabulary = JSON.parse(await readFile(path.join(dir, p.vocabularyFile), 'utf8'));
  const ids = new Map();
  for (let id = 2; id < vocabulary.length; id++) ids.set(vocabulary[id], id);
  const tokenize = makeTokenizer(p.tokenizer);
  const flat = new Int32Array(texts.length * p.sequenceLength).fill(p.padId);
  texts.forEach((text, row) => {
    tokenize(text)
      .slice(0, p.sequenceLength)
      .forEach((token, i) => {
        flat[row * p.sequenceLength + i] = ids.get(token) ?? p.oovId;
      });
  });
  const x = tf.tensor2d(flat, [texts.length, p.sequenceLength], 'int32');
  const y = model.predict(x);
  const probabilities = await y.array();
  tf.dispose([x, y]);
  model.dispose();
  return { classNames: description.classNames, probabilities, ids: flat };
}

/** A CSV text (header + rows) → class probabilities, columns picked by the names the export records. */
export async function predictCsv(dir, csvText) {
  const { model, description } = await loadStockModel(dir);
  const columns = description.preprocessing.columns;
  const [header, ...lines] = csvText.trim().split('\n').map((line) => line.split(',').map((cell) => cell.trim()));
  const at = columns.map((name) => {
    const index = header.indexOf(name);
    if (index < 0) throw new Error(`column ${name} missing`);
    return index;
  });
  const x = tf.tensor2d(lines.map((cells) => at.map((i) => Number(cells[i]))), [lines.length, columns.length], 'float32');
  const y = model.predict(x);
  const probabilities = await y.array();
  tf.dispose([x, y]);
  model.dispose();
  return { classNames: description.classNames, probabilities };
}
