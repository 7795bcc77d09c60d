// The logger's batching, retry and filtering, driven with fake timers and an injected fetch.

import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { cleanExtras, installGlobalHandlers, Logger, type LoggerOptions } from "./logger";

type Sent = { url: string; init: RequestInit; body: { logs: Array<Record<string, unknown>> } };

function setup(responses: Array<number | Error> = [], options: LoggerOptions = {}) {
  const sent: Sent[] = [];
  const fetch = vi.fn(async (url: string, init: RequestInit) => {
    sent.push({ url, init, body: JSON.parse(String(init.body)) });
    const next = responses.shift() ?? 204;
    if (next instanceof Error) throw next;
    return new Response(null, { status: next, headers: next === 429 ? { "Retry-After": "1" } : {} });
  });
  const logger = new Logger({
    fetch,
    sendBeacon: vi.fn(() => true),
    headers: () => ({ Authorization: "Bearer test" }),
    page: () => "/signals",
    sessionId: () => "tab-1",
    ...options,
  });
  return { logger, fetch, sent };
}

async function settle() {
  // let the awaited fetch promises resolve
  for (let i = 0; i < 5; i += 1) await Promise.resolve();
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("Logger", () => {
  it("flushes when the buffer reaches the flush size", async () => {
    const { logger, sent } = setup([], { flushSize: 3 });
    logger.info("ui", "one");
    logger.info("ui", "two");
    expect(sent).toHaveLength(0);
    logger.warn("trading", "three", { symbol: "BTCUSDT" });
    await settle();
    expect(sent).toHaveLength(1);
    const { url, init, body } = sent[0]!;
    expect(url).toBe("/api/logs");
    expect(init.method).toBe("POST");
    expect(init.keepalive).toBe(true);
    expect((init.headers as Record<string, string>).Authorization).toBe("Bearer test");
    expect(body.logs.map((l) => l.message)).toEqual(["one", "two", "three"]);
    expect(body.logs[2]).toMatchObject({
      level: "warn",
      component: "trading",
      service: "web",
      page: "/signals",
      session_id: "tab-1",
      symbol: "BTCUSDT",
    });
    expect(typeof body.logs[0]!.timestamp).toBe("string");
    expect(logger.pending()).toHaveLength(0);
    logger.dispose();
  });

  it("flushes on the interval", async () => {
    const { logger, sent } = setup([], { flushIntervalMs: 10_000 });
    logger.error("chat", "stream broke");
    await vi.advanceTimersByTimeAsync(9_999);
    expect(sent).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.body.logs[0]!.message).toBe("stream broke");
    logger.dispose();
  });

  it("hands the buffer to sendBeacon on page hide", async () => {
    const beacon = vi.fn((_url: string, _data: Blob) => true);
    const { logger, fetch } = setup([], { sendBeacon: beacon });
    const uninstall = installGlobalHandlers(logger);
    logger.info("ui", "leaving", { route: "/trades" });

    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
    document.dispatchEvent(new Event("visibilitychange"));
    expect(beacon).toHaveBeenCalledTimes(1);
    const [url, blob] = beacon.mock.calls[0]!;
    expect(url).toBe("/api/logs");
    expect(blob.type).toBe("text/plain");
    const body = JSON.parse(await blob.text());
    expect(body.logs).toHaveLength(1);
    expect(body.logs[0]).toMatchObject({ message: "leaving", route: "/trades", component: "ui", level: "info" });
    expect(JSON.stringify(body)).not.toContain("Bearer");
    expect(fetch).not.toHaveBeenCalled();

    logger.info("ui", "again");
    window.dispatchEvent(new Event("pagehide"));
    expect(beacon).toHaveBeenCalledTimes(2);

    uninstall();
    Reflect.deleteProperty(document, "visibilityState");
    logger.dispose();
  });

  it("reports uncaught errors through the global handlers", () => {
    const { logger } = setup();
    const uninstall = installGlobalHandlers(logger);
    window.dispatchEvent(new ErrorEvent("error", { message: "boom", filename: "app.js", lineno: 3 }));
    uninstall();
    expect(logger.pending()[0]).toMatchObject({ level: "error", component: "global", message: "boom", line: 3 });
    logger.dispose();
  });

  it("keeps the lines when sending fails, and caps the buffer", async () => {
    const { logger, sent } = setup([new TypeError("offline"), 503], { flushSize: 2, maxBuffer: 5 });
    logger.info("ui", "a");
    logger.info("ui", "b");
    await settle();
    expect(sent).toHaveLength(1);
    expect(logger.pending().map((l) => l.message)).toEqual(["a", "b"]);

    // After a failure no size-triggered flush until the next interval.
    for (const m of ["c", "d", "e", "f", "g"]) logger.info("ui", m);
    await settle();
    expect(sent).toHaveLength(1);
    expect(logger.pending().map((l) => l.message)).toEqual(["c", "d", "e", "f", "g"]);
    expect(logger.dropped).toBe(2);

    await vi.advanceTimersByTimeAsync(10_000); // 503: kept again
    expect(sent).toHaveLength(2);
    expect(logger.pending()).toHaveLength(5);

    await vi.advanceTimersByTimeAsync(10_000); // 204
    expect(sent).toHaveLength(3);
    expect(sent[2]!.body.logs.map((l) => l.message)).toEqual(["c", "d", "e", "f", "g"]);
    expect(logger.pending()).toHaveLength(0);
    logger.dispose();
  });

  it("backs off after a 429 until the next interval", async () => {
    const { logger, sent } = setup([429], { flushSize: 1 });
    logger.info("ui", "a");
    await settle();
    expect(sent).toHaveLength(1);
    logger.info("ui", "b");
    await settle();
    expect(sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(sent).toHaveLength(2);
    expect(sent[1]!.body.logs.map((l) => l.message)).toEqual(["a", "b"]);
    logger.dispose();
  });

  it("drops a batch the engine refuses instead of retrying it forever", async () => {
    const { logger, sent } = setup([422], { flushSize: 1 });
    logger.info("ui", "bad");
    await settle();
    expect(sent).toHaveLength(1);
    expect(logger.pending()).toHaveLength(0);
    expect(logger.dropped).toBe(1);
    logger.dispose();
  });

  it("splits batches over 100 entries or 64 KiB", async () => {
    const { logger, sent } = setup([], { flushSize: 1000, maxBuffer: 1000 });
    for (let i = 0; i < 250; i += 1) logger.debug("ui", `line ${i}`);
    await logger.flush();
    expect(sent.map((s) => s.body.logs.length)).toEqual([100, 100, 50]);

    sent.length = 0;
    const big = "x".repeat(1000);
    const data = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`f${i}`, big]));
    for (let i = 0; i < 30; i += 1) logger.info("ui", `big ${i}`, data);
    await logger.flush();
    expect(sent.length).toBeGreaterThan(1);
    for (const s of sent) expect(new TextEncoder().encode(String(s.init.body)).length).toBeLessThanOrEqual(64 * 1024);
    expect(sent.flatMap((s) => s.body.logs).map((l) => l.message)).toEqual(Array.from({ length: 30 }, (_, i) => `big ${i}`));
    logger.dispose();
  });
});

describe("cleanExtras", () => {
  it("keeps flat scalars under valid names and drops or converts the rest", () => {
    const { fields, stack } = cleanExtras({
      symbol: "BTCUSDT",
      count: 3,
      ok: true,
      nothing: null,
      gone: undefined,
      retryInMs: 500,
      "Bad-Name!": 1,
      _private: 1,
      nested: { a: 1 },
      list: [1, 2],
      error: new Error("kaput"),
      infinite: Number.POSITIVE_INFINITY,
      long: "y".repeat(5000),
      event: "reserved",
      level: "reserved",
      stack_trace: "at foo()",
    });
    expect(fields).toMatchObject({
      symbol: "BTCUSDT",
      count: 3,
      ok: true,
      nothing: null,
      retry_in_ms: 500,
      nested: '{"a":1}',
      list: "[1,2]",
      error: "Error: kaput",
      infinite: "Infinity",
    });
    expect(fields).not.toHaveProperty("gone");
    expect(fields).not.toHaveProperty("_private");
    expect(fields).not.toHaveProperty("event");
    expect(fields).not.toHaveProperty("level");
    expect(Object.keys(fields).every((k) => /^[a-z][a-z0-9_]{0,39}$/.test(k))).toBe(true);
    expect((fields.long as string).length).toBeLessThanOrEqual(1000);
    expect(stack).toBe("at foo()");
  });

  it("never keeps secrets", () => {
    const { fields } = cleanExtras({
      token: "abc",
      access_token: "abc",
      Authorization: "Bearer abcdefghijkl",
      api_secret: "s",
      password: "p",
      api_key: "k",
      apiKey: "k",
      note: "sent Bearer abcdefghijklmnop and eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
    });
    expect(Object.keys(fields)).toEqual(["note"]);
    expect(fields.note).not.toContain("abcdefghijklmnop");
    expect(fields.note).not.toContain("eyJhbGci");
  });

  it("keeps at most 20 extra fields", () => {
    const data = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`f${i}`, i]));
    expect(Object.keys(cleanExtras(data).fields)).toHaveLength(20);
  });

  it("redacts tokens in messages and truncates them", () => {
    const logger = new Logger({ fetch: vi.fn(), page: () => "/", sessionId: () => "s" });
    logger.info("auth", "header was Bearer abcdefghijklmnopqrstuvwxyz");
    logger.info("ui", "z".repeat(3000));
    logger.info("ui", "");
    const [first, second, third] = logger.pending();
    expect(first!.message).toBe("header was Bearer [redacted]");
    expect(second!.message.length).toBe(2000);
    expect(third!.message.length).toBeGreaterThan(0);
    logger.dispose();
  });
});
