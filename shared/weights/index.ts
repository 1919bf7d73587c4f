export * from './flat-weights.ts';
