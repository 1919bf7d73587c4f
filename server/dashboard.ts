/**
 * A read-only live dashboard for a coordinator's operator: `GET /dashboard?token=…` serves one
 * self-contained page that follows the federation through a socket.io server of its own (path
 * `/dashboard/socket.io`, namespace `/dashboard`), and `GET /metrics` exposes the same counters to
 * Prometheus (prom-client). Off unless asked for; every route and the socket need the token
 * printed at start.
 *
 * It shows what an operator needs and nothing a client would not want shown: round, phase and
 * deadline, client counts, each client's public id with its last message time and refusals by
 * reason, metrics per round, traffic. No keys, no data, no deltas. The dashboard's socket server
 * is separate from the clients' (which admits only signed hellos), so a browser never meets the
 * client admission path and a client never meets the dashboard.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { Counter, Gauge, Registry } from 'prom-client';
import { Server } from 'socket.io';
import type { ErrorCode } from '../shared/core/errors.ts';
import { DASHBOARD_PAGE } from './dashboard-page.ts';

/** Options of the dashboard. */
export interface DashboardOptions {
  /** Secret the page, its socket and `/metrics` require. @default 24 random bytes, hex */
  token?: string;
  /** Most milliseconds between two pushes of a changed state (rounds push at once). @default 500 */
  intervalMs?: number;
}

/** What a phase of the coordinator is called on the page. Closed set. */
export type DashboardPhase = 'waiting for clients' | 'fit' | 'evaluate' | 'finished' | 'stopped';

/** One client as the dashboard shows it: its public id only. */
export interface DashboardClient {
  id: string;
  status: 'connected' | 'ready' | 'busy' | 'gone';
  /** Milliseconds since the epoch of its last message. */
  lastSeen: number;
  rejections: Partial<Record<ErrorCode, number>>;
}

/** One completed round. */
export interface DashboardRound {
  round: number;
  selected: number;
  accepted: number;
  dropped: number;
  rejected: Partial<Record<ErrorCode, number>>;
  examples: number;
  /** Server-side test accuracy when the coordinator has a test set, else the clients' federated evaluation. */
  accuracy: number | null;
  loss: number | null;
  trainLoss: number | null;
  bytesDown: number;
  bytesUp: number;
  seconds: number;
}

/** Everything the page shows; built by the coordinator on demand. */
export interface DashboardState {
  now: number;
  base: string;
  strategy: string;
  roundsPlanned: number;
  roundsCompleted: number;
  phase: DashboardPhase;
  /** The round in progress, if any. */
  active: { kind: 'fit' | 'evaluate'; round: number; deadline: number; selected: number; answered: number; dropped: number; rejected: Partial<Record<ErrorCode, number>> } | null;
  clients: { connected: number; ready: number; list: DashboardClient[] };
  history: DashboardRound[];
  traffic: { bytesDown: number; bytesUp: number };
  rejections: Partial<Record<ErrorCode, number>>;
  /** Differential privacy budget spent, once a private strategy reports it. */
  privacy: { epsilon: number | null; delta: number | null };
}

const SOCKET_PATH = '/dashboard/socket.io';

function sameToken(given: string | null | undefined, token: string): boolean {
  if (typeof given !== 'string') return false;
  // Hash both sides so the comparison is constant-time whatever the lengths.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
}

function bearer(request: IncomingMessage, url: URL): string | null {
  const header = request.headers.authorization;
  if (typeof header === 'string' && header.startsWith('Bearer ')) return header.slice('Bearer '.length);
  return url.searchParams.get('token');
}

/** The live dashboard of one coordinator. */
export class Dashboard {
  readonly token: string;
  readonly #state: () => DashboardState;
  readonly #io: Server;
  readonly #registry = new Registry();
  readonly #timer: NodeJS.Timeout;
  #last = '';
  #clientScript: Promise<Buffer> | null = null;

  /**
   * Attaches the dashboard's socket server to `http` (call before the coordinator's own, so
   * requests it does not own pass on) and returns it; {@link handle} serves the HTTP routes.
   */
  constructor(http: import('node:http').Server | import('node:https').Server, state: () => DashboardState, options: DashboardOptions = {}) {
    this.token = options.token ?? randomBytes(24).toString('hex');
    this.#state = state;
    this.#io = new Server(http, { path: SOCKET_PATH, serveClient: false, maxHttpBufferSize: 4096 });
    const namespace = this.#io.of('/dashboard');
    namespace.use((socket, next) => {
      const auth = socket.handshake.auth as Record<string, unknown>;
      if (sameToken(typeof auth['token'] === 'string' ? auth['token'] : null, this.token)) next();
      else next(new Error('wrong or missing dashboard token'));
    });
    // Read-only: the page listens and never sends; anything it sends is ignored.
    namespace.on('connection', (socket) => socket.emit('state', this.#state()));
    this.#timer = setInterval(() => this.push(false), options.intervalMs ?? 500);
    this.#timer.unref();
    this.#registerMetrics();
  }

  /** The page's address on a coordinator listening at `baseUrl`. */
  url(baseUrl: string): string {
    return `${baseUrl}/dashboard?token=${this.token}`;
  }

  /** Sends the state to every open page if it changed (or always, with `force`). */
  push(force = true): void {
    const state = this.#state();
    const { now: _now, ...comparable } = state;
    const text = JSON.stringify(comparable);
    if (!force && text === this.#last) return;
    this.#last = text;
    this.#io.of('/dashboard').emit('state', state);
  }

  /** Serves `/dashboard`, its socket.io client script and `/metrics`; returns false for any other path. */
  handle(request: IncomingMessage, response: ServerResponse): boolean {
    const url = new URL(request.url ?? '/', 'http://dashboard.invalid');
    const route = url.pathname;
    if (route !== '/dashboard' && route !== '/dashboard/socket.io.min.js' && route !== '/metrics') return false;
    if (request.method !== 'GET') {
      response.writeHead(405, { allow: 'GET' }).end();
      return true;
    }
    if (!sameToken(bearer(request, url), this.token)) {
      response.writeHead(401, { 'content-type': 'text/plain' }).end('the dashboard needs the token printed when the coordinator started (?token=… or Authorization: Bearer …)\n');
      return true;
    }
    const headers = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };
    if (route === '/dashboard') {
      response.writeHead(200, { ...headers, 'content-type': 'text/html; charset=utf-8', 'content-security-policy': "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:" });
      response.end(DASHBOARD_PAGE);
    } else if (route === '/dashboard/socket.io.min.js') {
      void this.#script().then(
        (script) => response.writeHead(200, { ...headers, 'content-type': 'text/javascript' }).end(script),
        () => response.writeHead(500).end(),
      );
    } else {
      void this.#registry.metrics().then(
        (text) => response.writeHead(200, { ...headers, 'content-type': this.#registry.contentType }).end(text),
        () => response.writeHead(500).end(),
      );
    }
    return true;
  }

  /** Stops pushing and closes open pages' connections; the HTTP server stays the coordinator's to close. */
  close(): void {
    clearInterval(this.#timer);
    this.#io.of('/dashboard').disconnectSockets(true);
    this.#io.engine.close();
  }

  /** The browser build of socket.io-client, served from the installed package (no CDN). */
  #script(): Promise<Buffer> {
    const require = createRequire(import.meta.url);
    this.#clientScript ??= readFile(path.join(path.dirname(require.resolve('socket.io-client/package.json')), 'dist', 'socket.io.min.js'));
    return this.#clientScript;
  }

  /** Prometheus metrics, read from the same state on every scrape. */
  #registerMetrics(): void {
    const registers = [this.#registry];
    const state = () => this.#state();
    const gauge = (name: string, help: string, read: (s: DashboardState) => number | null) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const value = read(state());
          if (value !== null) this.set(value);
        },
      });
    gauge('fedtl_rounds_planned', 'Rounds this run is configured for', (s) => s.roundsPlanned);
    gauge('fedtl_rounds_completed', 'Rounds completed', (s) => s.roundsCompleted);
    gauge('fedtl_round_selected_clients', 'Clients selected in the round in progress', (s) => s.active?.selected ?? 0);
    gauge('fedtl_round_answered_clients', 'Clients that answered the round in progress', (s) => s.active?.answered ?? 0);
    gauge('fedtl_round_dropped_clients', 'Clients dropped from the round in progress', (s) => s.active?.dropped ?? 0);
    gauge('fedtl_clients_connected', 'Clients connected', (s) => s.clients.connected);
    gauge('fedtl_clients_ready', 'Clients ready to train', (s) => s.clients.ready);
    gauge('fedtl_accuracy', 'Accuracy after the last completed round', (s) => s.history.at(-1)?.accuracy ?? null);
    gauge('fedtl_loss', 'Loss after the last completed round', (s) => s.history.at(-1)?.loss ?? null);
    gauge('fedtl_privacy_epsilon', 'Differential privacy epsilon spent (NaN without a private strategy)', (s) => s.privacy.epsilon ?? Number.NaN);
    const total = (name: string, help: string, read: (s: DashboardState) => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read(state()));
        },
      });
    total('fedtl_bytes_down_total', 'Bytes of weights sent to clients', (s) => s.traffic.bytesDown);
    total('fedtl_bytes_up_total', 'Bytes of updates received from clients', (s) => s.traffic.bytesUp);
    new Counter({
      name: 'fedtl_rejections_total',
      help: 'Messages refused, by error code',
      labelNames: ['code'],
      registers,
      collect() {
        this.reset();
        for (const [code, count] of Object.entries(state().rejections)) this.inc({ code }, count ?? 0);
      },
    });
  }
}
