export { selectBackend, isBackendName, BACKEND_NAMES } from './select-backend.ts';
export { isFedtlWasmKernel, registerWasmGradientKernels, WASM_FASTER_KERNELS, WASM_GRADIENT_KERNELS } from './wasm-kernels/index.ts';
export type { KernelReplacement } from './wasm-kernels/index.ts';
export type { BackendName, BackendChoice, SelectBackendOptions } from './select-backend.ts';
