/**
 * The coordinator's list of admitted clients, kept in a plain text file the operator edits.
 *
 * Format, one client per line:
 * ```
 * # comments start with '#', anywhere on a line; blank lines are ignored
 * fedtl1:<signing key b64>:<box key b64>  hospital-a
 * revoked fedtl1:<signing key b64>:<box key b64>  hospital-b   # key leaked 2024-05-01
 * ```
 * The optional trailing name is one token of `[A-Za-z0-9._@-]{1,64}` used in logs. A client must
 * not be listed twice (revoke by prefixing its existing line with `revoked`, not by adding a
 * second line), so the file never says two things about one key.
 *
 * Parsing is strict: any bad line rejects the whole file with `path:line` in the message. Edits
 * take effect without a restart: by default every lookup stats the file (a few µs) and re-reads
 * it when its mtime, ctime, size or inode changed — more robust than `fs.watch` events, which
 * editors that save by rename make unreliable. A file that becomes invalid (or disappears) keeps
 * the last good list in force and logs one error per bad version, so a half-saved edit can never
 * open the door to everyone or lock everyone out.
 *
 * @example
 * ```ts
 * const allow = AllowList.load('clients.allow');
 * allow.isAllowed(hello.signingKey); // 'allowed' | 'unknown' | 'revoked'
 * openUpdate(bytes, { ..., resolveClient: (id) => allow.resolveClient(id) });
 * ```
 */
import { readFileSync, statSync } from 'node:fs';
import { FedtlError } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { parsePublicIdentity, type PublicIdentity } from './identity.ts';

/** Outcome of an allow-list lookup. */
export type AllowStatus = 'allowed' | 'unknown' | 'revoked';

/** One parsed line of an allow list. */
export interface AllowListEntry extends PublicIdentity {
  readonly status: 'allowed' | 'revoked';
  /** Operator-chosen label, if any. */
  readonly name: string | undefined;
  /** 1-based line in the file, for messages. */
  readonly line: number;
}

/** Options of {@link AllowList.load}. */
export interface AllowListOptions {
  /**
   * Stat the file on every lookup and reload it if it changed. Turn off only if you call
   * {@link AllowList.reload} or {@link AllowList.watch} yourself.
   * @default true
   */
  checkOnAccess?: boolean;
  /** Where reload errors go. @default createLogger('allow-list') */
  logger?: Logger;
}

const REVOKED_MARKER = 'revoked';
const NAME_RE = /^[A-Za-z0-9._@-]{1,64}$/;

/**
 * Parses allow-list text. Throws `CORRUPT_FILE` naming `source:line` for the first bad line.
 * Exported for tests and for a CLI `check` command.
 */
export function parseAllowList(text: string, source: string): AllowListEntry[] {
  const entries: AllowListEntry[] = [];
  const bySigningKey = new Map<string, AllowListEntry>();
  const byClientId = new Map<string, AllowListEntry>();
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const line = index + 1;
    const fail = (what: string, cause?: unknown): never => {
      throw new FedtlError('CORRUPT_FILE', `${source}:${line}: ${what}`, { cause });
    };
    const hash = raw.indexOf('#');
    const content = (hash === -1 ? raw : raw.slice(0, hash)).trim();
    if (content === '') return;
    const tokens = content.split(/\s+/);
    let status: 'allowed' | 'revoked' = 'allowed';
    if (tokens[0] === REVOKED_MARKER) {
      status = 'revoked';
      tokens.shift();
    }
    const [identityText, name, ...extra] = tokens;
    if (identityText === undefined) return fail(`'${REVOKED_MARKER}' must be followed by a public identity (fedtl1:...)`);
    let identity: PublicIdentity;
    try {
      identity = parsePublicIdentity(identityText);
    } catch (error) {
      return fail(error instanceof Error ? error.message : String(error), error);
    }
    if (extra.length > 0) return fail(`unexpected text after the name: '${extra.join(' ')}' (names are one token; use '#' for comments)`);
    if (name !== undefined && !NAME_RE.test(name)) return fail(`name '${name}' must match [A-Za-z0-9._@-]{1,64}`);
    const previous = bySigningKey.get(identity.signingKey) ?? byClientId.get(identity.clientId);
    if (previous !== undefined) {
      return fail(`client ${identity.clientId} is already listed at line ${previous.line}; list each client once (prefix that line with '${REVOKED_MARKER}' to revoke it)`);
    }
    const entry: AllowListEntry = { ...identity, status, name, line };
    bySigningKey.set(identity.signingKey, entry);
    byClientId.set(identity.clientId, entry);
    entries.push(entry);
  });
  return entries;
}

interface Snapshot {
  readonly bySigningKey: ReadonlyMap<string, AllowListEntry>;
  readonly byClientId: ReadonlyMap<string, AllowListEntry>;
  readonly entries: readonly AllowListEntry[];
}

function snapshotOf(entries: AllowListEntry[]): Snapshot {
  return {
    entries,
    bySigningKey: new Map(entries.map((e) => [e.signingKey, e])),
    byClientId: new Map(entries.map((e) => [e.clientId, e])),
  };
}

/** A live, file-backed allow list. See the module doc for the file format and reload rules. */
export class AllowList {
  readonly path: string | undefined;
  private snapshot: Snapshot;
  /** Stat signature of the last file version we tried, good or bad. */
  private seen: string | undefined;
  private readonly checkOnAccess: boolean;
  private readonly logger: Logger;
  private timer: NodeJS.Timeout | undefined;
  /** Number of successful loads; lets callers notice a reload. */
  private loads = 0;

  private constructor(path: string | undefined, entries: AllowListEntry[], seen: string | undefined, options: AllowListOptions) {
    this.path = path;
    this.snapshot = snapshotOf(entries);
    this.seen = seen;
    this.checkOnAccess = path !== undefined && (options.checkOnAccess ?? true);
    this.logger = options.logger ?? createLogger('allow-list');
    this.loads = 1;
  }

  /** Reads and parses `path`. Throws on a missing or invalid file: a first load has no last good list to fall back on. */
  static load(path: string, options: AllowListOptions = {}): AllowList {
    // Stat before reading: if the file changes in between, the next lookup sees a new signature.
    let seen: string;
    try {
      seen = statSignature(path);
    } catch (error) {
      throw new FedtlError('BAD_CONFIG', `cannot read allow list ${path}: ${(error as Error).message}`, { cause: error });
    }
    const entries = parseAllowList(readText(path), path);
    return new AllowList(path, entries, seen, options);
  }

  /** An in-memory list (tests, simulations); never reloads. */
  static fromText(text: string, source = '<allow list>', options: AllowListOptions = {}): AllowList {
    return new AllowList(undefined, parseAllowList(text, source), undefined, options);
  }

  /** Status of a client by its base64 Ed25519 signing key. */
  isAllowed(signingKey: string): AllowStatus {
    this.maybeRefresh();
    return this.snapshot.bySigningKey.get(signingKey)?.status ?? 'unknown';
  }

  /** Status of a client by its client id. */
  statusOf(clientId: string): AllowStatus {
    this.maybeRefresh();
    return this.snapshot.byClientId.get(clientId)?.status ?? 'unknown';
  }

  /**
   * Public keys of an allowed client, for `openUpdate`'s `resolveClient`: `undefined` if
   * unknown, throws `REVOKED_CLIENT` if revoked (so the rejection says why).
   */
  resolveClient(clientId: string): PublicIdentity | undefined {
    this.maybeRefresh();
    const entry = this.snapshot.byClientId.get(clientId);
    if (entry === undefined) return undefined;
    if (entry.status === 'revoked') {
      throw new FedtlError('REVOKED_CLIENT', `client ${clientId}${entry.name ? ` (${entry.name})` : ''} has been revoked`);
    }
    return { clientId: entry.clientId, signingKey: entry.signingKey, boxKey: entry.boxKey };
  }

  /** All entries of the list in force, in file order. */
  entries(): readonly AllowListEntry[] {
    this.maybeRefresh();
    return this.snapshot.entries;
  }

  /** How many times a valid file was loaded (1 after {@link AllowList.load}). */
  get loadCount(): number {
    return this.loads;
  }

  /**
   * Re-reads the file now. Returns `true` if a new list is in force; on a missing or invalid
   * file logs the error, keeps the last good list and returns `false`.
   */
  reload(): boolean {
    if (this.path === undefined) return false;
    const path = this.path;
    let seen: string | undefined;
    try {
      seen = statSignature(path);
      const entries = parseAllowList(readText(path), path);
      this.snapshot = snapshotOf(entries);
      this.seen = seen;
      this.loads++;
      return true;
    } catch (error) {
      // Remember the bad version so it is reported once, not on every lookup.
      this.seen = seen ?? 'missing';
      const message = error instanceof Error ? error.message : String(error);
      this.logger.error(`allow list ${path} not reloaded, keeping the previous ${this.snapshot.entries.length} entries: ${message}`);
      return false;
    }
  }

  /** Reloads if the file's stat signature changed since the last attempt; returns whether a new list is in force. */
  refreshIfChanged(): boolean {
    if (this.path === undefined) return false;
    let current: string;
    try {
      current = statSignature(this.path);
    } catch {
      current = 'missing';
    }
    if (current === this.seen) return false;
    return this.reload();
  }

  /**
   * Also poll the file every `intervalMs`, for processes that want revocations applied even
   * between lookups (e.g. to drop connected clients). The timer does not keep the process alive.
   */
  watch(options: { /** @default 1000 */ intervalMs?: number } = {}): void {
    if (this.path === undefined || this.timer !== undefined) return;
    this.timer = setInterval(() => this.refreshIfChanged(), options.intervalMs ?? 1000);
    this.timer.unref();
  }

  /** Stops {@link AllowList.watch}. */
  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private maybeRefresh(): void {
    if (this.checkOnAccess) this.refreshIfChanged();
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new FedtlError('BAD_CONFIG', `cannot read allow list ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/** Changes whenever the file is rewritten in place (mtime/ctime/size) or replaced by rename (ino). */
function statSignature(path: string): string {
  const s = statSync(path, { bigint: true });
  return `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
}
