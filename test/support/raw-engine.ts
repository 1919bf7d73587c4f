/**
 * A peer that speaks engine.io/socket.io frames by hand over a WebSocket, for tests of what an
 * unadmitted connection can make the coordinator do: it can send any frame (a half-announced
 * binary event, a second CONNECT, an oversized frame) at any moment, from any loopback address.
 */
import WebSocket from 'ws';
import { within } from './hostile.ts';

export class RawEngineConnection {
  readonly ws: WebSocket;
  /** Text frames received, engine.io packet type first (`0` open, `4` message, …). */
  readonly received: string[] = [];
  readonly closed: Promise<number>;
  readonly opened: Promise<string>;
  #isClosed = false;

  private constructor(url: string, localAddress?: string) {
    const wsUrl = `${url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`;
    this.ws = new WebSocket(wsUrl, localAddress ? { localAddress } : {});
    this.closed = new Promise((resolve) =>
      this.ws.once('close', (code) => {
        this.#isClosed = true;
        resolve(code);
      }),
    );
    this.ws.on('error', () => undefined);
    this.opened = new Promise((resolve, reject) => {
      this.ws.on('message', (data, isBinary) => {
        if (isBinary) return;
        const text = String(data);
        this.received.push(text);
        // Answer engine.io pings so only the coordinator's own rules close the connection.
        if (text === '2') this.ws.send('3');
        if (text.startsWith('0')) resolve((JSON.parse(text.slice(1)) as { sid: string }).sid);
      });
      this.ws.once('close', () => reject(new Error('closed before the engine.io open packet')));
    });
    this.opened.catch(() => undefined);
  }

  /** Opens a WebSocket and waits for engine.io's open packet; resolves with the connection. */
  static async open(url: string, localAddress?: string): Promise<RawEngineConnection> {
    const connection = new RawEngineConnection(url, localAddress);
    await within(connection.opened, 'the engine.io open packet');
    return connection;
  }

  /** Like {@link open} but for connections the coordinator may refuse at once: resolves after open or close. */
  static async attempt(url: string, localAddress?: string): Promise<RawEngineConnection> {
    const connection = new RawEngineConnection(url, localAddress);
    await within(Promise.race([connection.opened.catch(() => ''), connection.closed]), 'open or close');
    return connection;
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** A socket.io packet (`40{...}` CONNECT, `451-[...]` binary event, …) inside an engine.io message. */
  sendPacket(packet: string): void {
    this.ws.send(`4${packet}`);
  }

  sendBinary(bytes: Uint8Array): void {
    this.ws.send(bytes);
  }

  /** socket.io CONNECT_ERROR packets received, parsed. */
  get connectErrors(): Array<{ message: string; data?: { code?: string } }> {
    return this.received.filter((t) => t.startsWith('44')).map((t) => JSON.parse(t.slice(2)) as { message: string; data?: { code?: string } });
  }

  /** Resolves with the close code once the coordinator closes the connection (guarded by `ms`). */
  waitClosed(ms = 5_000): Promise<number> {
    return within(this.closed, 'the coordinator to close the connection', ms);
  }

  close(): void {
    this.ws.terminate();
  }
}
