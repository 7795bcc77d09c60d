// The engine's live connection (`/ws/connect`, docs/api/websocket.md): authenticates with the
// `bearer` subprotocol, reconnects with capped, jittered backoff, keeps the wanted topics
// subscribed across reconnects, answers heartbeats and routes messages by type.

import { useEffect, useState, useSyncExternalStore } from "react";
import type { ServerMessage } from "../api/types";
import { logger } from "../lib/logger";

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed" | "unauthorized";

export interface ConnectionSnapshot {
  state: ConnectionState;
  /** When the next connection attempt starts (ms since the epoch), while waiting for it. */
  nextRetryAt: number | null;
  /** The close code of the last connection that ended. */
  closeCode: number | null;
}

export type MessageHandler = (message: ServerMessage) => void;

/** The part of the browser's WebSocket this client uses. */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type SocketFactory = new (url: string, protocols: string[]) => SocketLike;

type TimerId = ReturnType<typeof setTimeout>;

export interface LiveConnectionOptions {
  token?: string | null;
  url?: string;
  WebSocket?: SocketFactory;
  setTimeout?: (fn: () => void, ms: number) => TimerId;
  clearTimeout?: (id: TimerId) => void;
  random?: () => number;
  now?: () => number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Delay range after 4029 (too many connections): waiting longer gives other tabs a chance to close. */
  slowDelayMs?: number;
  /** A connection open this long resets the backoff. */
  stableAfterMs?: number;
  /** Give up on a handshake that brings no `connected` within this time. */
  connectTimeoutMs?: number;
  /** Called on close code 4001 (missing, invalid or expired token). */
  onUnauthorized?: () => void;
  /** Listen to `online` and `visibilitychange` to retry at once. */
  watchBrowser?: boolean;
}

const OPEN = 1;
export const CLOSE_NORMAL = 1000;
export const CLOSE_UNAUTHORIZED = 4001;
export const CLOSE_NO_ACCOUNT = 4003;
export const CLOSE_TOO_MANY = 4029;

export function defaultUrl(): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/connect`;
}

function isMessage(value: unknown): value is ServerMessage {
  return typeof value === "object" && value !== null && !Array.isArray(value) && typeof (value as { type?: unknown }).type === "string";
}

export class LiveConnection {
  private socket: SocketLike | null = null;
  private token: string | null;
  private started = false;
  private attempt = 0;
  private everConnected = false;
  private authenticated = false;
  private retryTimer: TimerId | null = null;
  private stableTimer: TimerId | null = null;
  private handshakeTimer: TimerId | null = null;
  private readonly topics = new Map<string, number>();
  private readonly handlers = new Map<string, Set<MessageHandler>>();
  private readonly stateListeners = new Set<() => void>();
  private snapshot: ConnectionSnapshot = { state: "closed", nextRetryAt: null, closeCode: null };
  private readonly o: Required<Omit<LiveConnectionOptions, "token" | "onUnauthorized" | "url" | "WebSocket">> & {
    url: () => string;
    WebSocket: () => SocketFactory;
  };
  private readonly onUnauthorized: (() => void) | undefined;
  private unwatch: (() => void) | null = null;

  constructor(options: LiveConnectionOptions = {}) {
    this.token = options.token ?? null;
    this.onUnauthorized = options.onUnauthorized;
    this.o = {
      url: () => options.url ?? defaultUrl(),
      WebSocket: () => options.WebSocket ?? (globalThis.WebSocket as unknown as SocketFactory),
      setTimeout: options.setTimeout ?? ((fn, ms) => setTimeout(fn, ms)),
      clearTimeout: options.clearTimeout ?? ((id) => clearTimeout(id)),
      random: options.random ?? Math.random,
      now: options.now ?? Date.now,
      baseDelayMs: options.baseDelayMs ?? 500,
      maxDelayMs: options.maxDelayMs ?? 30_000,
      slowDelayMs: options.slowDelayMs ?? 30_000,
      stableAfterMs: options.stableAfterMs ?? 10_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 15_000,
      watchBrowser: options.watchBrowser ?? true,
    };
  }

  // --- React-facing state -------------------------------------------------------------------

  getSnapshot = (): ConnectionSnapshot => this.snapshot;

  onStateChange = (listener: () => void): (() => void) => {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  };

  private setState(state: ConnectionState, patch: Partial<ConnectionSnapshot> = {}): void {
    const next = { ...this.snapshot, nextRetryAt: null, ...patch, state };
    const same = next.state === this.snapshot.state && next.nextRetryAt === this.snapshot.nextRetryAt && next.closeCode === this.snapshot.closeCode;
    if (same) return;
    this.snapshot = next;
    for (const listener of [...this.stateListeners]) listener();
  }

  // --- Lifecycle ----------------------------------------------------------------------------

  /** Connect (if there is a token) and keep connected until `close()`. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.attempt = 0;
    if (this.o.watchBrowser && typeof window !== "undefined" && !this.unwatch) this.unwatch = this.watchBrowser();
    this.connect("connecting");
  }

  /** Close for good: code 1000, no reconnect. */
  close(): void {
    this.started = false;
    this.clearTimers();
    this.unwatch?.();
    this.unwatch = null;
    this.dropSocket(CLOSE_NORMAL, "client closed");
    this.setState("closed");
  }

  /** A new token reconnects at once; `null` disconnects. */
  setToken(token: string | null): void {
    if (token === this.token) return;
    this.token = token;
    if (!this.started) return;
    this.clearTimers();
    this.dropSocket(CLOSE_NORMAL, "new token");
    this.attempt = 0;
    this.everConnected = false;
    this.connect("connecting");
  }

  private connect(state: "connecting" | "reconnecting"): void {
    this.retryTimer = null;
    if (!this.token) {
      this.setState("closed");
      return;
    }
    const Socket = this.o.WebSocket();
    let socket: SocketLike;
    try {
      // The token rides in the subprotocol list, never in the URL, so no proxy logs it.
      socket = new Socket(this.o.url(), ["bearer", this.token]);
    } catch (exc) {
      logger.warn("websocket", "could not open the connection", { error: exc instanceof Error ? exc.message : String(exc) });
      this.scheduleRetry(null);
      return;
    }
    this.socket = socket;
    this.authenticated = false;
    this.setState(state, { closeCode: this.snapshot.closeCode });
    socket.onmessage = (event) => {
      if (this.socket === socket) this.receive(event.data);
    };
    socket.onclose = (event) => {
      if (this.socket === socket) this.closed(event.code, event.reason);
    };
    socket.onerror = () => {
      // a close event always follows; that is where the retry is decided
    };
    socket.onopen = null;
    this.handshakeTimer = this.o.setTimeout(() => {
      this.handshakeTimer = null;
      if (this.socket !== socket || this.authenticated) return;
      logger.warn("websocket", "no connected message in time", { timeout_ms: this.o.connectTimeoutMs });
      this.dropSocket(CLOSE_NORMAL, "handshake timeout");
      this.scheduleRetry(null);
    }, this.o.connectTimeoutMs);
  }

  private dropSocket(code: number, reason: string): void {
    const socket = this.socket;
    this.socket = null;
    this.authenticated = false;
    if (!socket) return;
    socket.onmessage = null;
    socket.onclose = null;
    socket.onerror = null;
    socket.onopen = null;
    try {
      socket.close(code, reason);
    } catch {
      // already closing
    }
  }

  private closed(code: number, reason: string): void {
    this.socket = null;
    this.authenticated = false;
    this.clearTimers();
    if (!this.started) {
      this.setState("closed", { closeCode: code });
      return;
    }
    if (code === CLOSE_UNAUTHORIZED || code === CLOSE_NO_ACCOUNT) {
      // Retrying with the same token cannot succeed.
      logger.warn("websocket", code === CLOSE_UNAUTHORIZED ? "token refused" : "no engine account", { code });
      this.started = false;
      this.unwatch?.();
      this.unwatch = null;
      this.setState("unauthorized", { closeCode: code });
      if (code === CLOSE_UNAUTHORIZED) this.onUnauthorized?.();
      return;
    }
    this.scheduleRetry(code, reason);
  }

  /** Full jitter: a random delay up to the capped exponential, so many tabs do not retry in step. */
  nextDelay(code: number | null): number {
    if (code === CLOSE_TOO_MANY) return this.o.slowDelayMs + this.o.random() * this.o.slowDelayMs;
    const ceiling = Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** this.attempt);
    return this.o.random() * ceiling;
  }

  private scheduleRetry(code: number | null, reason = ""): void {
    const delay = Math.round(this.nextDelay(code));
    this.attempt += 1;
    logger.warn("websocket", "connection lost; reconnecting", { code, reason: reason || null, attempt: this.attempt, retry_in_ms: delay });
    this.setState("reconnecting", { nextRetryAt: this.o.now() + delay, closeCode: code ?? this.snapshot.closeCode });
    this.retryTimer = this.o.setTimeout(() => this.connect("reconnecting"), delay);
  }

  /** Skip the wait (the browser is back online, or the tab is visible again). */
  retryNow(): void {
    if (!this.started || this.retryTimer === null) return;
    this.o.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.connect("reconnecting");
  }

  private clearTimers(): void {
    for (const timer of [this.retryTimer, this.stableTimer, this.handshakeTimer]) {
      if (timer !== null) this.o.clearTimeout(timer);
    }
    this.retryTimer = this.stableTimer = this.handshakeTimer = null;
  }

  private watchBrowser(): () => void {
    const onOnline = () => this.retryNow();
    const onVisible = () => {
      if (document.visibilityState === "visible") this.retryNow();
    };
    window.addEventListener("online", onOnline);
    document.addEventListener("visibilitychange", onVisible);
    return () => {
      window.removeEventListener("online", onOnline);
      document.removeEventListener("visibilitychange", onVisible);
    };
  }

  // --- Messages -----------------------------------------------------------------------------

  private receive(raw: unknown): void {
    let message: unknown;
    try {
      message = typeof raw === "string" ? JSON.parse(raw) : null;
    } catch {
      message = null;
    }
    if (!isMessage(message)) {
      logger.warn("websocket", "ignored a malformed message", { length: typeof raw === "string" ? raw.length : null });
      return;
    }
    switch (message.type) {
      case "ping":
        this.send({ type: "pong" });
        return;
      case "connected":
        this.onConnected(message);
        break;
      case "error": {
        const data = (message.data ?? {}) as { code?: unknown; message?: unknown };
        logger.warn("websocket", "the engine refused a message", { code: String(data.code ?? ""), detail: String(data.message ?? "") });
        break;
      }
      default:
        break;
    }
    this.emit(message);
  }

  private onConnected(message: ServerMessage): void {
    const reconnected = this.everConnected;
    this.authenticated = true;
    this.everConnected = true;
    if (this.handshakeTimer !== null) this.o.clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    const data = (message.data ?? {}) as { connection_id?: unknown };
    logger.info("websocket", reconnected ? "reconnected" : "connected", {
      connection_id: typeof data.connection_id === "string" ? data.connection_id : null,
      attempt: this.attempt,
    });
    this.setState("open", { closeCode: null });
    this.stableTimer = this.o.setTimeout(() => {
      this.stableTimer = null;
      this.attempt = 0;
    }, this.o.stableAfterMs);
    // A new connection has no subscriptions: ask again for everything wanted.
    for (const topic of this.topics.keys()) this.send({ type: "subscribe", topic });
    if (reconnected) {
      // Events sent while we were away are lost: tell the pages to re-read REST.
      this.emit({ seq: 0, type: "resync", ts: new Date(this.o.now()).toISOString(), data: { reason: "reconnected" } });
    }
  }

  private emit(message: ServerMessage): void {
    for (const key of [message.type, "*"]) {
      const set = this.handlers.get(key);
      if (!set) continue;
      for (const handler of [...set]) {
        try {
          handler(message);
        } catch (exc) {
          logger.error("websocket", "a message handler failed", { type: message.type, error: exc instanceof Error ? exc.message : String(exc) });
        }
      }
    }
  }

  /** Send if authenticated; messages before `connected` would race the server's token check. */
  send(body: Record<string, unknown>): boolean {
    const socket = this.socket;
    if (!socket || !this.authenticated || socket.readyState !== OPEN) return false;
    socket.send(JSON.stringify(body));
    return true;
  }

  /** Listen to one message type (`"*"` for all); returns the function that stops listening. */
  subscribe(type: string, handler: MessageHandler): () => void {
    let set = this.handlers.get(type);
    if (!set) {
      set = new Set();
      this.handlers.set(type, set);
    }
    set.add(handler);
    return () => {
      set.delete(handler);
    };
  }

  /** Want a topic (counted: two users of one topic need two removals). */
  addTopic(topic: string): void {
    const count = this.topics.get(topic) ?? 0;
    this.topics.set(topic, count + 1);
    if (count === 0) this.send({ type: "subscribe", topic });
  }

  removeTopic(topic: string): void {
    const count = this.topics.get(topic) ?? 0;
    if (count <= 0) return;
    if (count === 1) {
      this.topics.delete(topic);
      this.send({ type: "unsubscribe", topic });
    } else {
      this.topics.set(topic, count - 1);
    }
  }

  wantedTopics(): string[] {
    return [...this.topics.keys()];
  }
}

export interface UseWebSocketOptions extends Omit<LiveConnectionOptions, "token" | "onUnauthorized"> {
  onUnauthorized?: () => void;
  topics?: readonly string[];
}

export interface UseWebSocket extends ConnectionSnapshot {
  connection: LiveConnection;
  subscribe: (type: string, handler: MessageHandler) => () => void;
}

/**
 * One LiveConnection for the component's lifetime; the token can change under it. Options other
 * than `onUnauthorized` and `topics` are read once.
 */
export function useWebSocket(token: string | null, options: UseWebSocketOptions = {}): UseWebSocket {
  const [callbacks] = useState(() => ({ onUnauthorized: options.onUnauthorized }));
  callbacks.onUnauthorized = options.onUnauthorized;
  const [connection] = useState(
    () => new LiveConnection({ ...options, token, onUnauthorized: () => callbacks.onUnauthorized?.() }),
  );
  const snapshot = useSyncExternalStore(connection.onStateChange, connection.getSnapshot, connection.getSnapshot);

  useEffect(() => {
    connection.setToken(token);
  }, [connection, token]);

  const topicKey = (options.topics ?? []).join("\n");
  useEffect(() => {
    const topics = topicKey ? topicKey.split("\n") : [];
    for (const topic of topics) connection.addTopic(topic);
    return () => {
      for (const topic of topics) connection.removeTopic(topic);
    };
  }, [connection, topicKey]);

  useEffect(() => {
    connection.start();
    return () => connection.close();
  }, [connection]);

  return { ...snapshot, connection, subscribe: (type, handler) => connection.subscribe(type, handler) };
}
