export { registerWasmGradientKernels, WASM_GRADIENT_KERNELS } from './register.ts';
