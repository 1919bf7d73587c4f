export { selectBackend, isBackendName, BACKEND_NAMES } from './select-backend.ts';
export type { BackendName, BackendChoice, SelectBackendOptions } from './select-backend.ts';
