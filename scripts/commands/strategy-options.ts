/**
 * `--strategy <name>` and every strategy's parameters as flags, shared by `fedtl coordinator` and
 * `fedtl simulate`. Flags and config keys come from the registry (shared/strategy/registry.ts), so
 * a new strategy's parameters appear on both commands without editing them.
 */
import { Option, type Command } from 'commander';
import { allStrategyParams, strategyEntry, strategyNames } from '../../shared/strategy/registry.ts';

/** `server-lr` → `serverLr`: the attribute commander stores a flag under. */
function attributeOf(flag: string): string {
  return flag.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Which strategies take a parameter, with their defaults, for the help text. */
function defaultsText(key: string): string {
  return strategyNames()
    .flatMap((name) => strategyEntry(name).params.filter((p) => p.key === key).map((p) => `${name} ${p.default}`))
    .join(', ');
}

/** Adds `--strategy` and every strategy parameter's flag to `command`. */
export function addStrategyOptions(command: Command, defaultStrategy?: string): Command {
  command.addOption(new Option('--strategy <name>', `aggregation strategy${defaultStrategy ? ` (default ${defaultStrategy})` : ' (default: the preset’s)'}`).choices(strategyNames()));
  for (const param of allStrategyParams()) {
    command.option(`--${param.flag} <x>`, `${param.description} (defaults: ${defaultsText(param.key)})`, (value: string) => Number(value));
  }
  return command;
}

/** The strategy parameters given as flags, by config key (only those given). */
export function strategyParamsFromFlags(flags: Readonly<Record<string, unknown>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const param of allStrategyParams()) {
    const value = flags[attributeOf(param.flag)];
    if (typeof value === 'number') out[param.key] = value;
  }
  return out;
}
