/**
 * The coordinator: a socket.io server that admits allow-listed clients, serves them the frozen
 * base, and drives the {@link RoundLoop} over their connections.
 *
 * Every handler takes `unknown`, parses it (shared/protocol) and answers with a typed ack; nothing a
 * client sends can throw out of a handler or reach the aggregate without passing the loop's checks.
 */
import { createServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Dashboard, type DashboardClient, type DashboardOptions, type DashboardPhase, type DashboardState } from './dashboard.ts';
import type { AddressInfo } from 'node:net';
import { Server, type Socket } from 'socket.io';
import { availableParallelism } from 'node:os';
import { FedtlError, toFedtlError, type ErrorCode } from '../shared/core/errors.ts';
import { createLogger, type Logger } from '../shared/core/log.ts';
import { verifyClientSignature } from '../shared/crypto/hello.ts';
import { signText } from '../shared/crypto/signatures.ts';
import { decodeKey, encodeKey, type Identity } from '../shared/crypto/identity.ts';
import type { HeadSpec } from '../shared/model/head.ts';
import {
  PROTOCOL_VERSION,
  bytes as parseBytes,
  errorAck,
  evaluationSignedText,
  parseBaseReadRequest,
  parseEvaluationReport,
  parseHello,
  parseReadyReport,
  parseWeightsMissing,
  readySignedText,
  sameNames,
  welcomeSignedText,
  type Ack,
  type BaseDescriptor,
  type BaseReadReply,
  type ClientToServerEvents,
  type EvaluateRequest,
  type FitRequest,
  type ProtocolLimits,
  type ServerToClientEvents,
} from '../shared/protocol/protocol.ts';
import type { Strategy } from '../shared/strategy/strategy.ts';
import type { WeightManifest } from '../shared/weights/flat-weights.ts';
import { AdmissionGate, WindowCounter, admissionParser, connectionIdOf, incomingMessageLimit, type AdmissionLimits } from './admission.ts';
import { BaseChunks } from './base-server.ts';
import { RoundLoop, type RoundLoopOptions, type UpdateOpener } from './round-loop.ts';
import { UpdateIngest, type UpdateIngestOptions } from './update-ingest.ts';
import { SocketSecureAggregation } from './secure-aggregation.ts';
import { parseSecAggUp } from '../shared/protocol/secagg-messages.ts';
import type { RoundRecord } from './round-record.ts';

/** Admission decision for a client's signing key (an allow list that may change while running). */
export type AdmissionStatus = 'allowed' | 'unknown' | 'revoked';
export interface Admission {
  status(signingKey: string): AdmissionStatus;
}

interface SocketData {
  clientId: string;
  signingKey: string;
  boxKey: string;
  helloNonce: string;
  /** Validation examples declared in the signed `ready`; evaluation reports may not count more. null before `ready`. */
  validationExamples: number | null;
  /**
   * Digest of the last weights this connection is known to hold: it answered, with an accepted
   * update or evaluation, a round message that carried them. null on a new connection.
   */
  heldWeights: string | null;
  /** The last round message sent on this connection, to send again in full if the client did not hold the weights it referred to. */
  lastSent: SentRound | null;
}

/** A round message as sent to one connection. */
type RoundMessage = { kind: 'fit'; request: FitRequest } | { kind: 'evaluate'; request: EvaluateRequest };
type SentRound = RoundMessage & { digest: string; referred: boolean; resent: boolean };

type CoordinatorSocket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

export interface CoordinatorOptions {
  identity: Identity;
  admission: Admission;
  /** The base clients receive: its descriptor, and the directory its files are read from (null for the identity base). */
  base: { descriptor: BaseDescriptor; directory: string | null };
  headSpec: HeadSpec;
  manifest: WeightManifest;
  initialWeights: Float32Array;
  /**
   * The federation's class names in label order. Clients receive them in the welcome and a client
   * whose names differ (other names, or the same names in another order) is refused at `ready`.
   * @default none: the first ready client's names become the federation's, and later clients must match them
   */
  classNames?: readonly string[];
  /**
   * Feature column names in input order, for CSV data (identity bases). Checked like class names.
   * @default none: the first ready client that reports columns sets them
   */
  featureColumns?: readonly string[];
  strategy: Strategy;
  rounds: number;
  /** Opens sealed updates addressed to this coordinator. */
  openUpdate: UpdateOpener;
  /**
   * Opens sealed updates on worker threads instead, with the same keys and limits as `openUpdate`
   * (server/update-ingest.ts); startCoordinator sets it by the head's size. @default null (`openUpdate` on the event loop)
   */
  ingest?: Omit<UpdateIngestOptions, 'identity'> | null;
  /** Port to listen on; 0 picks a free one. @default 0 */
  port?: number;
  /** @default '127.0.0.1' */
  host?: string;
  /** Bytes per base chunk. @default 1 MiB */
  chunkBytes?: number;
  /** Largest difference between a hello's timestamp and this coordinator's clock, in ms. @default 300000 */
  helloMaxAgeMs?: number;
  /** Limits of the admission path (unadmitted connections, admission timeout, refused hellos); see server/admission.ts. */
  admissionLimits?: AdmissionLimits;
  /** Serve HTTPS/WSS with this PEM certificate chain and key instead of plain HTTP. @default null */
  tls?: { cert: string | Buffer; key: string | Buffer } | null;
  /**
   * A live read-only dashboard at `/dashboard` and Prometheus metrics at `/metrics`, both behind a
   * token (see server/dashboard.ts); its address is logged at start. @default off
   */
  dashboard?: DashboardOptions | boolean;
  /** Messages one client may send per second, averaged over 10 s, before it is cut off. @default 200 */
  maxMessagesPerSecond?: number;
  logger?: Logger;
  loop?: Partial<Pick<RoundLoopOptions, 'roundTimeoutMs' | 'evaluateTimeoutMs' | 'federatedEvaluation' | 'waitForClientsMs' | 'maxRoundAttempts' | 'checkpointDir' | 'seed' | 'evaluateGlobal' | 'onRound' | 'trainable' | 'earlyStopping' | 'iterateAveraging'>>;
}

const RATE_WINDOW_MS = 10_000;
/** Events a client may send; `satisfies` makes adding an event to the protocol without listing it here a type error. */
const KNOWN_EVENTS: ReadonlySet<unknown> = new Set(Object.keys({ ready: true, 'base:read': true, update: true, evaluation: true, 'weights:missing': true, secagg: true } satisfies Record<keyof ClientToServerEvents, true>));
/** What a request that refers to held weights carries in place of them. */
const NO_WEIGHTS = new Uint8Array(0);

export class Coordinator {
  readonly loop: RoundLoop;
  readonly #options: CoordinatorOptions;
  readonly #log: Logger;
  readonly #http: HttpServer;
  readonly #io: Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;
  readonly #limits: ProtocolLimits;
  readonly #gate: AdmissionGate;
  /** Messages per client in the current rate window, kept across reconnections. */
  readonly #messageCounts = new WindowCounter(RATE_WINDOW_MS);
  readonly #sockets = new Map<string, CoordinatorSocket>();
  readonly #signingKey: string;
  /** Class names and feature columns of the federation: configured, or adopted from the first ready client. */
  #classNames: string[] | undefined;
  readonly #dashboard: Dashboard | undefined;
  /** Per client id: last message time and refusals by reason (dashboard only). */
  readonly #seen = new Map<string, { lastSeen: number; rejections: Partial<Record<ErrorCode, number>> }>();
  #stopped = false;
  #featureColumns: string[] | undefined;
  /** Secure aggregation over these sockets, when the strategy is wrapped in it. */
  readonly #secagg: SocketSecureAggregation | undefined;
  /** Worker threads opening updates, if configured. */
  readonly #ingest: UpdateIngest | null;
  /** The base's files as served, read once on the first chunk request. */
  #baseChunks: BaseChunks | undefined;

  private constructor(options: CoordinatorOptions, ingest: UpdateIngest | null) {
    this.#ingest = ingest;
    this.#options = options;
    if (options.classNames && options.classNames.length !== options.headSpec.classes) {
      throw new FedtlError('BAD_CONFIG', `${options.classNames.length} class names [${options.classNames.join(', ')}] for a head with ${options.headSpec.classes} classes; give as many names as --classes`);
    }
    this.#classNames = options.classNames ? [...options.classNames] : undefined;
    this.#featureColumns = options.featureColumns ? [...options.featureColumns] : undefined;
    this.#log = options.logger ?? createLogger('coordinator');
    this.#signingKey = encodeKey(options.identity.signing.publicKey);
    const chunkBytes = options.chunkBytes ?? 1024 * 1024;
    // An envelope is the float32 delta plus a small header; allow generous framing room.
    const maxUpdateBytes = options.manifest.parameterCount * 4 + 64 * 1024;
    // Clients send nothing larger than an update (base chunks travel the other way), so the
    // incoming limit, which bounds what an unadmitted peer can make the coordinator buffer, is sized from it.
    this.#limits = { maxUpdateBytes, chunkBytes, maxMessageBytes: incomingMessageLimit(maxUpdateBytes) };
    this.#gate = new AdmissionGate({
      coordinatorSigningKey: this.#signingKey,
      status: (signingKey) => options.admission.status(signingKey),
      limits: { ...options.admissionLimits, ...(options.helloMaxAgeMs !== undefined ? { helloMaxAgeMs: options.helloMaxAgeMs } : {}) },
      logger: this.#log,
    });
    this.loop = new RoundLoop({
      ...options.loop,
      onRound: (record, weights) => {
        options.loop?.onRound?.(record, weights);
        // Every completed round reaches open dashboards at once, not at the next tick.
        this.#dashboard?.push();
      },
      strategy: options.strategy,
      headSpec: options.headSpec,
      manifest: options.manifest,
      initialWeights: options.initialWeights,
      baseHash: options.base.descriptor.hash,
      rounds: options.rounds,
      openUpdate: options.openUpdate,
      ingest,
      sign: (text) => this.#sign(text),
      logger: this.#log,
    });
    this.#secagg = options.strategy instanceof SocketSecureAggregation ? options.strategy : undefined;
    this.#secagg?.attach({
      send: (id, message) => {
        const socket = this.#sockets.get(id);
        if (!socket || !this.#stillAllowed(socket)) return false;
        socket.emit('secagg', message);
        return true;
      },
      resolveClient: (id) => {
        const data = this.#sockets.get(id)?.data;
        return data && { signingKey: decodeKey(data.signingKey, 'signing key'), boxKey: decodeKey(data.boxKey, 'box key') };
      },
    });
    // Requests that neither socket server owns: the dashboard's routes, or 404.
    const onRequest = (request: IncomingMessage, response: ServerResponse) => {
      if (this.#dashboard?.handle(request, response)) return;
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    };
    this.#http = options.tls ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, onRequest) : createServer(onRequest);
    if (options.dashboard) this.#dashboard = new Dashboard(this.#http, () => this.#dashboardState(), options.dashboard === true ? {} : options.dashboard);
    this.#io = new Server(this.#http, {
      // Set from the head's size so a legitimate update never hits socket.io's 1 MB default,
      // while anything larger is cut off by the transport before it is buffered.
      maxHttpBufferSize: this.#limits.maxMessageBytes,
      serveClient: false,
      // Spelled out although it is socket.io's default: base chunks and sealed updates look random,
      // so compressing them would spend CPU on both sides for nothing (and hold a zlib context per
      // connection).
      perMessageDeflate: false,
      pingInterval: 10_000,
      pingTimeout: 20_000,
      // The gate closes late hellos itself, with a code; socket.io's own timer is only a backstop.
      connectTimeout: this.#gate.limits.admissionTimeoutMs + 1_000,
      parser: admissionParser,
    });
    this.#io.engine.on('connection', (connection: Parameters<AdmissionGate['onConnection']>[0]) => this.#gate.onConnection(connection));
    this.#io.use((socket, next) => {
      try {
        const admitted = this.#gate.admit(socket.conn, connectionIdOf(socket.conn), socket.handshake.auth);
        (socket as CoordinatorSocket).data = { ...admitted, validationExamples: null, heldWeights: null, lastSent: null };
        next();
      } catch (thrown) {
        const error = toFedtlError(thrown, 'BAD_MESSAGE');
        const refusal = new Error(error.message) as Error & { data: { code: ErrorCode } };
        refusal.data = { code: error.code };
        next(refusal);
      }
    });
    this.#io.on('connection', (socket) => this.#onConnection(socket as CoordinatorSocket));
  }

  /** Starts listening; resolves once the port is bound. */
  static async start(options: CoordinatorOptions): Promise<Coordinator> {
    const workers = options.ingest ? options.ingest.workers ?? availableParallelism() : 0;
    if (!Number.isSafeInteger(workers) || workers < 0) throw new FedtlError('BAD_CONFIG', `ingest workers must be a non-negative integer, got ${workers}`);
    const ingest = options.ingest && workers > 0 ? await UpdateIngest.start({ ...options.ingest, workers, identity: options.identity }) : null;
    const coordinator = new Coordinator(options, ingest);
    const resumed = await coordinator.loop.resume();
    if (resumed >= options.rounds) coordinator.#log.info(`the checkpoint already holds all ${options.rounds} rounds: this run is finished`);
    else if (resumed > 0) coordinator.#log.info(`continuing at round ${resumed + 1}`);
    const port = options.port ?? 0;
    const host = options.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      coordinator.#http.once('error', (error: NodeJS.ErrnoException) => {
        if (error.code === 'EADDRINUSE') reject(new FedtlError('BAD_CONFIG', `port ${port} on ${host} is already in use (another coordinator?); choose another port (--port <n>, or --port 0 for any free one)`, { cause: error }));
        else if (error.code === 'EACCES') reject(new FedtlError('BAD_CONFIG', `not allowed to listen on port ${port} on ${host} (ports below 1024 need privileges); choose another port (--port <n>)`, { cause: error }));
        else reject(error);
      });
      coordinator.#http.listen(port, host, () => resolve());
    });
    coordinator.#log.info(`listening on ${coordinator.url} (protocol v${PROTOCOL_VERSION}, base ${options.base.descriptor.name} ${options.base.descriptor.hash.slice(0, 12)})`);
    if (coordinator.#dashboard) coordinator.#log.info(`dashboard: ${coordinator.dashboardUrl} (metrics: ${coordinator.url}/metrics with the same token)`);
    return coordinator;
  }

  get port(): number {
    return (this.#http.address() as AddressInfo).port;
  }

  get url(): string {
    return `${this.#options.tls ? 'https' : 'http'}://${this.#options.host ?? '127.0.0.1'}:${this.port}`;
  }

  /** Connections waiting for admission now. */
  get admissionStats(): { unadmitted: number } {
    return { unadmitted: this.#gate.unadmitted };
  }

  get limits(): ProtocolLimits {
    return this.#limits;
  }

  /** The federation's class names in label order (configured or adopted from the first ready client); undefined until known. */
  get classNames(): readonly string[] | undefined {
    return this.#classNames;
  }

  /** The federation's feature columns (CSV data), when known. */
  get featureColumns(): readonly string[] | undefined {
    return this.#featureColumns;
  }

  /** The dashboard's address with its token, when the dashboard is on. */
  get dashboardUrl(): string | null {
    return this.#dashboard ? this.#dashboard.url(this.url) : null;
  }

  /** What the dashboard shows: counts, public client ids and per-round metrics; never keys, data or deltas. */
  #dashboardState(): DashboardState {
    const loop = this.loop;
    const active = loop.activeRound;
    const history = loop.history;
    const rejections: Partial<Record<ErrorCode, number>> = {};
    const add = (into: Partial<Record<ErrorCode, number>>, from: Partial<Record<ErrorCode, number>>) => {
      for (const [code, n] of Object.entries(from) as [ErrorCode, number][]) into[code] = (into[code] ?? 0) + n;
    };
    for (const seen of this.#seen.values()) add(rejections, seen.rejections);
    const list: DashboardClient[] = [...this.#seen].map(([id, seen]) => ({ id, status: loop.clients.status(id) ?? (this.#sockets.has(id) ? 'connected' : 'gone'), lastSeen: seen.lastSeen, rejections: { ...seen.rejections } }));
    let phase: DashboardPhase = active ? active.kind : 'waiting for clients';
    if (loop.completedRounds >= this.#options.rounds) phase = 'finished';
    else if (this.#stopped) phase = 'stopped';
    return {
      now: Date.now(),
      base: this.#options.base.descriptor.name,
      strategy: this.#options.strategy.name,
      roundsPlanned: this.#options.rounds,
      roundsCompleted: loop.completedRounds,
      phase,
      active,
      clients: { connected: this.#sockets.size, ready: loop.clients.readyCount, list },
      history: history.map((r) => ({
        round: r.round,
        selected: r.selected,
        accepted: r.accepted,
        dropped: r.dropped,
        rejected: { ...r.rejected },
        examples: r.examples,
        accuracy: r.serverAccuracy ?? r.evalAccuracy,
        loss: r.serverLoss ?? r.evalLoss,
        trainLoss: r.trainLoss,
        bytesDown: r.bytesDown,
        bytesUp: r.bytesUp,
        seconds: r.seconds,
      })),
      traffic: { bytesDown: history.reduce((s, r) => s + r.bytesDown, 0), bytesUp: history.reduce((s, r) => s + r.bytesUp, 0) },
      rejections,
      privacy: { epsilon: null, delta: null },
    };
  }

  /** Per client, for the dashboard: when it last sent anything, and what of it was refused. */
  #noteMessage(clientId: string, refused?: ErrorCode): void {
    const seen = this.#seen.get(clientId) ?? { lastSeen: 0, rejections: {} };
    seen.lastSeen = Date.now();
    if (refused) seen.rejections[refused] = (seen.rejections[refused] ?? 0) + 1;
    this.#seen.set(clientId, seen);
  }

  /** Runs all rounds and tells clients the run is over. */
  async run(): Promise<readonly RoundRecord[]> {
    const history = await this.loop.run();
    // Stopped early (close()): the run is not over, and clients should reconnect to a restart.
    if (this.loop.completedRounds >= this.#options.rounds) this.#io.emit('finished', { rounds: this.loop.completedRounds, reason: 'all rounds complete' });
    return history;
  }

  /** Stops the loop, disconnects every client and closes the port. */
  async close(): Promise<void> {
    this.#stopped = true;
    this.loop.stop();
    this.#dashboard?.close();
    this.#io.disconnectSockets(true);
    await new Promise<void>((resolve) => {
      void this.#io.close(() => resolve());
    });
    await this.#ingest?.close();
  }

  #sign(text: string): string {
    return encodeKey(signText(text, this.#options.identity.signing.secretKey));
  }

  #onConnection(socket: CoordinatorSocket): void {
    const { clientId } = socket.data;
    // One live connection per identity: a reconnecting client replaces its stale socket.
    const previous = this.#sockets.get(clientId);
    if (previous && previous.id !== socket.id) {
      this.#log.info(`client ${clientId} connected again; closing its previous connection`);
      previous.emit('problem', { code: 'DUPLICATE_UPDATE', message: 'a newer connection with this identity replaced this one' });
      previous.disconnect(true);
    }
    this.#sockets.set(clientId, socket);
    this.loop.clients.connect(clientId);
    this.#log.info(`client ${clientId} connected (${this.#sockets.size} connected)`);
    const descriptor = this.#options.base.descriptor;
    socket.emit('welcome', {
      protocolVersion: PROTOCOL_VERSION,
      clientId,
      signature: this.#sign(welcomeSignedText(socket.data.signingKey, socket.data.helloNonce, descriptor)),
      base: descriptor,
      headSpec: this.#options.headSpec,
      manifest: this.#options.manifest,
      limits: this.#limits,
      ...(this.#classNames ? { classNames: this.#classNames } : {}),
      ...(this.#featureColumns ? { featureColumns: this.#featureColumns } : {}),
    });

    // Every inbound packet counts against the rate limit, whatever its event name or arguments
    // (unknown events and ack-less calls included), and unknown events are answered, not ignored.
    socket.use(([event], next) => {
      this.#noteMessage(socket.data.clientId);
      if (!this.#withinRate(socket)) return;
      if (!KNOWN_EVENTS.has(event)) {
        socket.emit('problem', { code: 'BAD_MESSAGE', message: `unknown event ${JSON.stringify(String(event).slice(0, 64))}` });
        return;
      }
      next();
    });

    socket.on('ready', (message: unknown, ack: unknown) => {
      this.#handle(socket, ack, () => {
        this.#checkStillAllowed(socket);
        const ready = parseReadyReport(message);
        verifyClientSignature(readySignedText(this.#signingKey, socket.data.helloNonce, ready), ready.signature, socket.data.signingKey, 'ready');
        if (ready.baseHash !== descriptor.hash) throw new FedtlError('HASH_MISMATCH', `client loaded base ${ready.baseHash.slice(0, 12)}, the federation uses ${descriptor.hash.slice(0, 12)}`);
        this.#checkNames(ready.classNames, ready.featureColumns);
        this.loop.addParticipant(
          {
            clientId,
            sendFit: (request, digest) => this.#sendRound(socket, { kind: 'fit', request }, digest),
            sendEvaluate: (request, digest) => this.#sendRound(socket, { kind: 'evaluate', request }, digest),
          },
          ready.examples,
        );
        socket.data.validationExamples = ready.validationExamples;
        this.#log.info(`client ${clientId} ready with ${ready.examples} examples (${this.loop.memberCount} ready)`);
        return { ok: true };
      });
    });

    socket.on('base:read', (request: unknown, ack: unknown) => {
      if (typeof ack !== 'function') {
        socket.emit('problem', { code: 'BAD_MESSAGE', message: 'base:read needs an acknowledgement callback for its reply' });
        return;
      }
      const reply = ack as (reply: BaseReadReply) => void;
      void (async () => {
        try {
          this.#checkStillAllowed(socket);
          if (this.#options.base.directory === null) throw new FedtlError('BAD_MESSAGE', 'this base has no files to download');
          const parsed = parseBaseReadRequest(request, this.#limits.chunkBytes);
          this.#baseChunks ??= new BaseChunks(this.#options.base.directory, descriptor);
          reply({ ok: true, bytes: await this.#baseChunks.read(parsed) });
        } catch (thrown) {
          reply(errorAck(toFedtlError(thrown, 'BAD_MESSAGE')));
        }
      })();
    });

    socket.on('update', (sealed: unknown, ack: unknown) => {
      this.#handle(socket, ack, () => {
        this.#checkStillAllowed(socket);
        // Read before the update is taken: accepting the last one settles the round.
        const roundId = this.loop.activeRoundId;
        const noted = (ack: Ack): Ack => {
          if (ack.ok && roundId) this.#noteHeld(socket, roundId);
          return ack;
        };
        const ack = this.loop.ingestUpdate(clientId, parseBytes(sealed, 'update', this.#limits.maxUpdateBytes));
        return ack instanceof Promise ? ack.then(noted) : noted(ack);
      });
    });

    socket.on('evaluation', (report: unknown, ack: unknown) => {
      this.#handle(socket, ack, () => {
        this.#checkStillAllowed(socket);
        const evaluation = parseEvaluationReport(report);
        verifyClientSignature(evaluationSignedText(this.#signingKey, socket.data.helloNonce, evaluation), evaluation.signature, socket.data.signingKey, 'evaluation');
        const declared = socket.data.validationExamples;
        if (declared === null) throw new FedtlError('BAD_MESSAGE', 'evaluation before ready');
        if (evaluation.examples > declared) {
          throw new FedtlError('OUT_OF_RANGE', `evaluation counts ${evaluation.examples} examples, but this client declared a validation split of ${declared} in ready`);
        }
        const ack = this.loop.receiveEvaluation(clientId, evaluation);
        if (ack.ok) this.#noteHeld(socket, evaluation.roundId);
        return ack;
      });
    });

    socket.on('weights:missing', (message: unknown, ack: unknown) => {
      this.#handle(socket, ack, () => {
        this.#checkStillAllowed(socket);
        const missing = parseWeightsMissing(message);
        const sent = socket.data.lastSent;
        if (!sent || sent.request.roundId !== missing.roundId || this.loop.activeRoundId !== missing.roundId) {
          throw new FedtlError('STALE_ROUND', `weights:missing for ${missing.roundId}, which is not the round running for this client`);
        }
        if (!sent.referred || sent.digest !== missing.weightsDigest) throw new FedtlError('BAD_MESSAGE', `the ${sent.kind} request of ${missing.roundId} did not refer to weights ${missing.weightsDigest.slice(0, 12)}`);
        // Once per message: a client cannot make the coordinator send the same weights again and again.
        if (sent.resent) throw new FedtlError('BAD_MESSAGE', `the ${sent.kind} request of ${missing.roundId} was already sent again in full`);
        sent.resent = true;
        this.#emitRound(socket, sent, null);
        this.loop.countResent(sent.request.weights.byteLength);
        this.#log.info(`client ${clientId} did not hold weights ${sent.digest.slice(0, 12)}; sent round ${sent.request.round}'s ${sent.kind} request again in full`);
        return { ok: true };
      });
    });

    socket.on('secagg', (message: unknown, ack: unknown) => {
      this.#handle(socket, ack, () => {
        this.#checkStillAllowed(socket);
        if (!this.#secagg) throw new FedtlError('BAD_MESSAGE', 'this coordinator does not run secure aggregation');
        const { roundId, bytes } = parseSecAggUp(message, this.#limits.maxUpdateBytes);
        this.#secagg.receive(clientId, roundId, bytes);
        return { ok: true };
      });
    });

    socket.on('disconnect', (reason) => {
      if (this.#sockets.get(clientId) === socket) {
        this.#sockets.delete(clientId);
        this.#secagg?.dropped(clientId);
        this.loop.removeParticipant(clientId);
      }
      this.#log.info(`client ${clientId} disconnected (${reason})`);
    });
  }

  /**
   * Sends a round message, referring to the weights by digest when this connection is known to
   * hold them (they went down once, in its last answered message); returns the weight bytes sent.
   * A key revoked while its client is idle must not keep receiving the global head.
   */
  #sendRound(socket: CoordinatorSocket, message: RoundMessage, digest: string): number {
    if (!this.#stillAllowed(socket)) return 0;
    const referred = socket.data.heldWeights === digest;
    socket.data.lastSent = { ...message, digest, referred, resent: false };
    this.#emitRound(socket, message, referred ? digest : null);
    const control = message.kind === 'fit' ? (message.request.control?.byteLength ?? 0) : 0;
    return (referred ? 0 : message.request.weights.byteLength) + control;
  }

  /** Emits a round message in full, or (`digest` given) with a reference in place of its weights. */
  #emitRound(socket: CoordinatorSocket, message: RoundMessage, digest: string | null): void {
    if (message.kind === 'fit') socket.emit('fit', digest ? { ...message.request, weights: NO_WEIGHTS, weightsDigest: digest } : message.request);
    else socket.emit('evaluate', digest ? { ...message.request, weights: NO_WEIGHTS, weightsDigest: digest } : message.request);
  }

  /** The client answered `roundId` and was accepted: it verified, and holds, the weights that message named. */
  #noteHeld(socket: CoordinatorSocket, roundId: string): void {
    const sent = socket.data.lastSent;
    if (sent && sent.request.roundId === roundId) socket.data.heldWeights = sent.digest;
  }

  /**
   * A client whose labels or columns mean something else would poison the aggregate silently:
   * names are compared in order, and the first client to report them fixes them when the
   * operator did not. A client that reports no names is accepted (it cannot be checked).
   */
  #checkNames(classNames: readonly string[] | undefined, featureColumns: readonly string[] | undefined): void {
    if (classNames) {
      if (classNames.length > this.#options.headSpec.classes) {
        throw new FedtlError('BAD_DATA', `the client's data has ${classNames.length} classes [${classNames.join(', ')}]; the federation's head has ${this.#options.headSpec.classes}`);
      }
      if (this.#classNames && !sameNames(classNames, this.#classNames)) {
        throw new FedtlError('BAD_DATA', `class names differ: the client numbers its labels [${classNames.join(', ')}], the federation [${this.#classNames.join(', ')}]; start the client with --class-names ${this.#classNames.join(',')}`);
      }
    }
    if (featureColumns && this.#featureColumns && !sameNames(featureColumns, this.#featureColumns)) {
      throw new FedtlError('BAD_DATA', `feature columns differ: the client's data has [${featureColumns.join(', ')}], the federation's [${this.#featureColumns.join(', ')}]`);
    }
    if (classNames && !this.#classNames && classNames.length === this.#options.headSpec.classes) {
      this.#classNames = [...classNames];
      this.#log.info(`class names [${classNames.join(', ')}] taken from the first ready client`);
    }
    if (featureColumns && !this.#featureColumns) {
      this.#featureColumns = [...featureColumns];
      this.#log.info(`feature columns [${featureColumns.join(', ')}] taken from the first ready client`);
    }
  }

  /** A key revoked while connected loses its connection at its next message. */
  #checkStillAllowed(socket: CoordinatorSocket): void {
    const status = this.#options.admission.status(socket.data.signingKey);
    if (status !== 'allowed') {
      setImmediate(() => socket.disconnect(true));
      throw new FedtlError(status === 'revoked' ? 'REVOKED_CLIENT' : 'UNKNOWN_CLIENT', 'this client key is no longer allowed; disconnecting');
    }
  }

  /** Before sending it anything: is the client still allowed? If not, tell it and drop it. */
  #stillAllowed(socket: CoordinatorSocket): boolean {
    try {
      this.#checkStillAllowed(socket);
      return true;
    } catch (thrown) {
      const error = toFedtlError(thrown);
      this.#log.warn(`client ${socket.data.clientId}: ${error.code}; not sending it the round`);
      socket.emit('problem', { code: error.code, message: error.message });
      return false;
    }
  }

  #withinRate(socket: CoordinatorSocket): boolean {
    const data = socket.data;
    // Counted per client, not per connection: reconnecting does not start a new window.
    const count = this.#messageCounts.increment(data.clientId);
    const limit = (this.#options.maxMessagesPerSecond ?? 200) * (RATE_WINDOW_MS / 1000);
    if (count > limit) {
      this.#log.warn(`client ${data.clientId} sent over ${limit} messages in ${RATE_WINDOW_MS / 1000} s; disconnecting`);
      socket.emit('problem', { code: 'RATE_LIMITED', message: `more than ${limit} messages in ${RATE_WINDOW_MS / 1000} s` });
      socket.disconnect(true);
      return false;
    }
    return true;
  }

  /** Runs a handler, answering its ack with the result or a typed error; never throws. */
  #handle(socket: CoordinatorSocket, ack: unknown, handler: () => Ack | Promise<Ack>): void {
    const reply = typeof ack === 'function' ? (ack as (reply: Ack) => void) : (result: Ack) => {
      if (!result.ok) socket.emit('problem', { code: result.code, message: result.message });
    };
    const refused = (thrown: unknown): Ack => {
      const error = toFedtlError(thrown, 'BAD_MESSAGE');
      this.#log.warn(`client ${socket.data.clientId}: ${error.code}: ${error.message}`);
      return errorAck(error);
    };
    const answer = (result: Ack): void => {
      if (!result.ok) this.#noteMessage(socket.data.clientId, result.code);
      reply(result);
    };
    let result: Ack | Promise<Ack>;
    try {
      result = handler();
    } catch (thrown) {
      result = refused(thrown);
    }
    // Updates opened on worker threads answer later (server/update-ingest.ts).
    if (result instanceof Promise) void result.catch(refused).then(answer);
    else answer(result);
  }
}
