#!/usr/bin/env node
// The fedtl command. In a clone it runs the TypeScript sources through tsx, so there is no build
// step and never a stale build; an installed package ships the built JavaScript (dist/) and no
// sources, and runs that.
import { existsSync } from 'node:fs';

const sources = new URL('../scripts/cli.ts', import.meta.url);
let cli;
if (existsSync(sources)) {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(sources.href);
} else {
  cli = await import('../dist/scripts/cli.js');
}
await cli.main(process.argv);
