/**
 * Public API of the simulator, for scripts that run many simulations (sweeps over α, C, E, …).
 *
 * @example
 * const config = resolveConfig('imdb-glove', { mode: 'virtual', clients: 100, partition: { scheme: 'dirichlet', alpha: 0.1, beta: 0.5, shardsPerClient: 2 } });
 * const { report } = await runSimulation(config, { outDir: 'runs/alpha-0.1' });
 */
export { runSimulation, summaryLines } from './run-simulation.ts';
export type { SimulationResult, RunSimulationOptions } from './run-simulation.ts';
export { resolveConfig, presetNames, PRESETS } from './presets.ts';
export type { SimulationConfig, SimulationMode, ScratchFeatures } from './presets.ts';
export { renderReportHtml } from './report-html.ts';
export type { SimulationReport } from './report-html.ts';
