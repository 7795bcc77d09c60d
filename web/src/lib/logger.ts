// The dashboard's logger: buffers lines and ships them in batches to the engine's `POST /api/logs`
// (which re-emits them with service=web), so browser errors land next to the engine's own logs.

import { authHeaders } from "../api/client";

export type LogComponent = "ui" | "auth" | "trading" | "chat" | "settings" | "websocket" | "global";
export type LogLevel = "debug" | "info" | "warn" | "error" | "critical";
export type LogData = Record<string, unknown>;
export type LogValue = string | number | boolean | null;

export interface LogEntry {
  timestamp: string;
  level: LogLevel;
  message: string;
  component: LogComponent;
  service: "web";
  page?: string;
  session_id?: string;
  user_id?: string;
  stack_trace?: string;
  [extra: string]: LogValue | undefined;
}

type FetchLike = (input: string, init: RequestInit) => Promise<Response>;
type BeaconLike = (url: string, data: Blob) => boolean;

export interface LoggerOptions {
  endpoint?: string;
  /** Flush as soon as this many lines are waiting. */
  flushSize?: number;
  flushIntervalMs?: number;
  /** Lines kept while the engine cannot take them; the oldest go first. */
  maxBuffer?: number;
  maxBatchEntries?: number;
  maxBatchBytes?: number;
  fetch?: FetchLike;
  sendBeacon?: BeaconLike;
  headers?: () => Record<string, string>;
  /** Also write every line to the console. */
  echo?: boolean;
  now?: () => Date;
  page?: () => string | undefined;
  sessionId?: () => string | undefined;
}

// The engine's limits (bot-engine/app/api/client_logs.py).
const MAX_MESSAGE = 2000;
const MAX_PAGE = 200;
const MAX_STACK = 4000;
const MAX_EXTRA_FIELDS = 20;
const MAX_EXTRA_STRING = 1000;
const NAME = /^[a-z][a-z0-9_]{0,39}$/;
// Names the engine declares or sets itself: an extra under one of them would be refused or
// would overwrite the engine's own field.
const RESERVED = new Set([
  "timestamp", "level", "message", "component", "service", "page", "session_id", "user_id",
  "stack_trace", "env", "event", "request_id", "client_timestamp",
]);
const SENSITIVE_NAME = /token|authorization|secret|password|passphrase|api_?key|cookie|credential/i;
// A JWT, or a bearer credential, wherever it shows up in a string.
const JWT = /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g;
const BEARER = /\bBearer\s+[A-Za-z0-9._~+/=-]{8,}/gi;
const SESSION_KEY = "jadetrade.log_session";

export function redact(text: string): string {
  return text.replace(JWT, "[redacted]").replace(BEARER, "Bearer [redacted]");
}

function truncate(text: string, max: number): string {
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

function snakeCase(name: string): string {
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/[-\s.]+/g, "_")
    .toLowerCase();
}

function scalar(value: unknown): LogValue | undefined {
  if (value === undefined || typeof value === "function" || typeof value === "symbol") return undefined;
  if (value === null || typeof value === "boolean") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "string") return truncate(redact(value), MAX_EXTRA_STRING);
  if (value instanceof Error) return truncate(redact(`${value.name}: ${value.message}`), MAX_EXTRA_STRING);
  try {
    return truncate(redact(JSON.stringify(value) ?? String(value)), MAX_EXTRA_STRING);
  } catch {
    return "[unserialisable]";
  }
}

/** The extra fields the engine accepts: flat scalars under snake_case names, none secret. */
export function cleanExtras(data: LogData | undefined): { fields: Record<string, LogValue>; stack?: string } {
  const fields: Record<string, LogValue> = {};
  let stack: string | undefined;
  if (!data) return { fields };
  let count = 0;
  for (const [rawName, rawValue] of Object.entries(data)) {
    if (SENSITIVE_NAME.test(rawName)) continue;
    if (rawName === "stack_trace" || rawName === "stack") {
      if (typeof rawValue === "string") stack = truncate(redact(rawValue), MAX_STACK);
      continue;
    }
    if (rawValue instanceof Error && rawValue.stack && !stack) stack = truncate(redact(rawValue.stack), MAX_STACK);
    const name = NAME.test(rawName) ? rawName : snakeCase(rawName);
    if (!NAME.test(name) || RESERVED.has(name) || SENSITIVE_NAME.test(name)) continue;
    const value = scalar(rawValue);
    if (value === undefined) continue;
    if (count >= MAX_EXTRA_FIELDS) break;
    fields[name] = value;
    count += 1;
  }
  return stack === undefined ? { fields } : { fields, stack };
}

function defaultSessionId(): string | undefined {
  try {
    let id = sessionStorage.getItem(SESSION_KEY);
    if (!id) {
      id = typeof crypto !== "undefined" && "randomUUID" in crypto ? crypto.randomUUID() : Math.random().toString(36).slice(2);
      sessionStorage.setItem(SESSION_KEY, id);
    }
    return id.slice(0, 64);
  } catch {
    return undefined;
  }
}

function defaultPage(): string | undefined {
  return typeof location !== "undefined" ? truncate(location.pathname, MAX_PAGE) : undefined;
}

const encoder = new TextEncoder();
const bytes = (text: string) => encoder.encode(text).length;

export class Logger {
  private buffer: LogEntry[] = [];
  private timer: ReturnType<typeof setInterval> | null = null;
  /** Set by a failure or a 429: no size-triggered flush until the next interval. */
  private holdUntilTick = false;
  private pausedUntil = 0;
  private userId: string | null = null;
  private readonly endpoint: string;
  private readonly flushSize: number;
  private readonly flushIntervalMs: number;
  private readonly maxBuffer: number;
  private readonly maxBatchEntries: number;
  private readonly maxBatchBytes: number;
  private readonly options: LoggerOptions;
  /** Lines lost to the buffer cap or refused by the engine. */
  dropped = 0;

  constructor(options: LoggerOptions = {}) {
    this.options = options;
    this.endpoint = options.endpoint ?? "/api/logs";
    this.flushSize = options.flushSize ?? 20;
    this.flushIntervalMs = options.flushIntervalMs ?? 10_000;
    this.maxBuffer = options.maxBuffer ?? 200;
    this.maxBatchEntries = Math.min(options.maxBatchEntries ?? 100, 100);
    this.maxBatchBytes = Math.min(options.maxBatchBytes ?? 64 * 1024, 64 * 1024);
  }

  debug(component: LogComponent, message: string, data?: LogData): void {
    this.log("debug", component, message, data);
  }
  info(component: LogComponent, message: string, data?: LogData): void {
    this.log("info", component, message, data);
  }
  warn(component: LogComponent, message: string, data?: LogData): void {
    this.log("warn", component, message, data);
  }
  error(component: LogComponent, message: string, data?: LogData): void {
    this.log("error", component, message, data);
  }

  setUserId(id: string | null): void {
    this.userId = id;
  }

  /** Lines waiting to be sent (a copy). */
  pending(): LogEntry[] {
    return [...this.buffer];
  }

  log(level: LogLevel, component: LogComponent, message: string, data?: LogData): void {
    const { fields, stack } = cleanExtras(data);
    const entry: LogEntry = {
      ...fields,
      timestamp: (this.options.now?.() ?? new Date()).toISOString(),
      level,
      message: truncate(redact(message || "(no message)"), MAX_MESSAGE),
      component,
      service: "web",
    };
    const page = (this.options.page ?? defaultPage)();
    if (page) entry.page = truncate(page, MAX_PAGE);
    const session = (this.options.sessionId ?? defaultSessionId)();
    if (session) entry.session_id = session;
    if (this.userId) entry.user_id = this.userId;
    if (stack) entry.stack_trace = stack;

    if (this.options.echo) this.echo(entry);
    this.buffer.push(entry);
    this.cap();
    this.ensureTimer();
    if (this.buffer.length >= this.flushSize && !this.holdUntilTick) void this.flush();
  }

  /** Send everything waiting with `fetch`; lines the engine could not take stay for a retry. */
  async flush(): Promise<void> {
    if (this.buffer.length === 0) return;
    if (this.now() < this.pausedUntil) return;
    const taken = this.buffer.splice(0, this.buffer.length);
    const batches = this.batches(taken);
    const failed: LogEntry[] = [];
    for (let i = 0; i < batches.length; i += 1) {
      const batch = batches[i] ?? [];
      const outcome = await this.post(batch);
      if (outcome === "retry") {
        // This batch and everything after it wait for the next interval.
        for (const rest of batches.slice(i)) failed.push(...rest);
        this.holdUntilTick = true;
        break;
      }
      if (outcome === "refused") this.dropped += batch.length;
    }
    if (failed.length) {
      this.buffer = [...failed, ...this.buffer];
      this.cap();
    }
  }

  /** On page hide: hand everything to `sendBeacon`, which outlives the page (but sends no headers). */
  flushBeacon(): void {
    if (this.buffer.length === 0) return;
    const beacon = this.options.sendBeacon ?? defaultBeacon();
    if (!beacon) {
      void this.flush();
      return;
    }
    const taken = this.buffer.splice(0, this.buffer.length);
    const kept: LogEntry[] = [];
    for (const batch of this.batches(taken)) {
      let queued = false;
      try {
        queued = beacon(this.endpoint, new Blob([JSON.stringify({ logs: batch })], { type: "text/plain" }));
      } catch {
        queued = false;
      }
      if (!queued) kept.push(...batch);
    }
    if (kept.length) {
      this.buffer = [...kept, ...this.buffer];
      this.cap();
    }
  }

  /** Stop the interval (tests, or a logger that is thrown away). */
  dispose(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Split into batches of at most `maxBatchEntries` lines and `maxBatchBytes` of JSON. */
  batches(entries: LogEntry[]): LogEntry[][] {
    const overhead = bytes('{"logs":[]}');
    const out: LogEntry[][] = [];
    let current: LogEntry[] = [];
    let size = overhead;
    for (const entry of entries) {
      const entrySize = bytes(JSON.stringify(entry)) + 1; // the comma
      if (overhead + entrySize > this.maxBatchBytes) {
        this.dropped += 1; // one line alone is over the engine's limit
        continue;
      }
      if (current.length >= this.maxBatchEntries || size + entrySize > this.maxBatchBytes) {
        out.push(current);
        current = [];
        size = overhead;
      }
      current.push(entry);
      size += entrySize;
    }
    if (current.length) out.push(current);
    return out;
  }

  private async post(batch: LogEntry[]): Promise<"ok" | "retry" | "refused"> {
    const send = this.options.fetch ?? ((input: string, init: RequestInit) => globalThis.fetch(input, init));
    const headers = { "Content-Type": "application/json", ...(this.options.headers ?? (() => authHeaders()))() };
    try {
      const response = await send(this.endpoint, {
        method: "POST",
        headers,
        body: JSON.stringify({ logs: batch }),
        keepalive: true,
      });
      if (response.ok) return "ok";
      if (response.status === 429) {
        const after = Number.parseInt(response.headers?.get("Retry-After") ?? "", 10);
        if (Number.isFinite(after)) this.pausedUntil = this.now() + after * 1000;
        return "retry";
      }
      // A 4xx other than 429 means the batch itself is wrong: sending it again would fail again.
      if (response.status >= 400 && response.status < 500) return "refused";
      return "retry";
    } catch {
      return "retry";
    }
  }

  private tick(): void {
    this.holdUntilTick = false;
    void this.flush();
  }

  private ensureTimer(): void {
    if (this.timer === null) this.timer = setInterval(() => this.tick(), this.flushIntervalMs);
  }

  private cap(): void {
    const over = this.buffer.length - this.maxBuffer;
    if (over > 0) {
      this.buffer.splice(0, over);
      this.dropped += over;
    }
  }

  private now(): number {
    return (this.options.now?.() ?? new Date()).getTime();
  }

  private echo(entry: LogEntry): void {
    const method = entry.level === "critical" ? "error" : entry.level;
    console[method](`[${entry.component}] ${entry.message}`, entry);
  }
}

function defaultBeacon(): BeaconLike | null {
  if (typeof navigator === "undefined" || typeof navigator.sendBeacon !== "function") return null;
  return (url, data) => navigator.sendBeacon(url, data);
}

export const logger = new Logger({ echo: import.meta.env.DEV && import.meta.env.MODE !== "test" });

let installed: (() => void) | null = null;

/**
 * Report uncaught errors and rejections, and hand the buffer to sendBeacon when the page is
 * hidden (the last moment a closing tab can still send). Returns a function that undoes it.
 */
export function installGlobalHandlers(target: Logger = logger): () => void {
  if (installed && target === logger) return installed;
  const onError = (event: ErrorEvent) => {
    const stack = event.error instanceof Error ? event.error.stack : undefined;
    target.error("global", event.message || "uncaught error", {
      source: event.filename || null,
      line: event.lineno || null,
      column: event.colno || null,
      stack_trace: stack,
    });
  };
  const onRejection = (event: PromiseRejectionEvent) => {
    const reason: unknown = event.reason;
    const message = reason instanceof Error ? reason.message : typeof reason === "string" ? reason : "unhandled rejection";
    target.error("global", `unhandled rejection: ${message}`, {
      error_name: reason instanceof Error ? reason.name : typeof reason,
      stack_trace: reason instanceof Error ? reason.stack : undefined,
    });
  };
  const onVisibility = () => {
    if (document.visibilityState === "hidden") target.flushBeacon();
  };
  const onPageHide = () => target.flushBeacon();

  window.addEventListener("error", onError);
  window.addEventListener("unhandledrejection", onRejection);
  document.addEventListener("visibilitychange", onVisibility);
  window.addEventListener("pagehide", onPageHide);
  const uninstall = () => {
    window.removeEventListener("error", onError);
    window.removeEventListener("unhandledrejection", onRejection);
    document.removeEventListener("visibilitychange", onVisibility);
    window.removeEventListener("pagehide", onPageHide);
    if (installed === uninstall) installed = null;
  };
  if (target === logger) installed = uninstall;
  return uninstall;
}
