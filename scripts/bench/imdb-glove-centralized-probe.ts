/**
 * A probe of imdb-glove's centralized feature-extraction baseline (`centralizedBaseline`, the head
 * alone on frozen GloVe features): its accuracy with the rows in the simulation's client-by-client
 * order and in the data's own order, so a baseline that depends on the order of its rows shows.
 *
 * Usage: node --import tsx scripts/bench/imdb-glove-centralized-probe.ts [seed=42] [learningRate=0.02]
 */
import { selectBackend } from '../../shared/tf/select-backend.ts';
import { partition } from '../../shared/math/partition.ts';
import { resolveConfig } from '../simulation/presets.ts';
import { featuresOf, loadSimulationData, openSimulationBase, simulationCache } from '../simulation/simulation-data.ts';
import { clientOrder, groupByClient, trainingParts } from '../simulation/client-shards.ts';
import { centralizedBaseline } from '../simulation/baselines.ts';

await selectBackend();
const seed = Number(process.argv[2] ?? 42);
const lr = Number(process.argv[3] ?? 0.02);
const config = resolveConfig('imdb-glove', { seed, learningRate: lr });
const data = await loadSimulationData(config);
const { base } = await openSimulationBase(config.base);
const cache = simulationCache();
const test = await featuresOf(base, data.test, cache);
const train = await featuresOf(base, data.train, cache);
const parts = partition(data.train.labels, { scheme: config.partition.scheme, numClients: config.clients, seed, numClasses: 2, alpha: config.partition.alpha, beta: config.partition.beta, shardsPerClient: config.partition.shardsPerClient });
const order = clientOrder(trainingParts(parts, data.train.labels, 2, 0, seed));
const shards = groupByClient(order, train, data.train.labels);
const input = { head: config.head, trainFeatures: shards.features, trainLabels: shards.labels, testFeatures: test, testLabels: data.test.labels, batchSize: config.batchSize, learningRate: lr, optimizer: config.optimizer, seed };
const client = await centralizedBaseline(input, config.centralizedEpochs);
const own = await centralizedBaseline({ ...input, trainFeatures: train, trainLabels: data.train.labels }, config.centralizedEpochs);
console.log(`seed ${seed} lr ${lr}: client order ${(client.accuracy * 100).toFixed(1)} %, data order ${(own.accuracy * 100).toFixed(1)} %`);
process.exit(0);
