#!/usr/bin/env node
// The fedtl command. Sources are TypeScript run through tsx, so a clone works without a build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../scripts/cli.ts');
await main(process.argv);
