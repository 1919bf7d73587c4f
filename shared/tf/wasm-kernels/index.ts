export { isFedtlWasmKernel, registerWasmGradientKernels, WASM_FASTER_KERNELS, WASM_GRADIENT_KERNELS } from './register.ts';
export type { KernelReplacement } from './register.ts';
