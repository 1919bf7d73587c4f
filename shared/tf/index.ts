export { selectBackend, isBackendName, BACKEND_NAMES } from './select-backend.ts';
export { registerWasmGradientKernels, WASM_GRADIENT_KERNELS } from './wasm-kernels/index.ts';
export type { BackendName, BackendChoice, SelectBackendOptions } from './select-backend.ts';
