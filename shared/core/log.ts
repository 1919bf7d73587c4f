/**
 * A tiny leveled logger. Everything user-facing goes through it so tests can silence it and the
 * CLI can prefix it; it never receives secrets (callers log public keys and ids only).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

function levelFromEnv(): LogLevel {
  const value = process.env['FEDTL_LOG'];
  if (value === 'debug' || value === 'info' || value === 'warn' || value === 'error' || value === 'silent') return value;
  // Tests run quietly unless asked otherwise.
  return process.env['VITEST'] ? 'warn' : 'info';
}

export function createLogger(scope: string, level: LogLevel = levelFromEnv()): Logger {
  const threshold = ORDER[level];
  const write = (at: LogLevel, message: string): void => {
    if (ORDER[at] < threshold) return;
    const line = `[fedtl:${scope}] ${message}`;
    if (at === 'warn' || at === 'error') process.stderr.write(line + '\n');
    else process.stdout.write(line + '\n');
  };
  return {
    debug: (m) => write('debug', m),
    info: (m) => write('info', m),
    warn: (m) => write('warn', m),
    error: (m) => write('error', m),
  };
}
