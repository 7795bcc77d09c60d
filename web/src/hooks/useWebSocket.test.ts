// LiveConnection against a fake WebSocket and fake timers: backoff, resubscribe, routing,
// heartbeats, close codes and resync; and the React hook on top of it.

import { act, renderHook } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { ServerMessage } from "../api/types";
import { LiveConnection, useWebSocket, type LiveConnectionOptions, type SocketLike } from "./useWebSocket";

class FakeSocket implements SocketLike {
  static instances: FakeSocket[] = [];
  readyState = 0;
  sent: Array<Record<string, unknown>> = [];
  closedWith: number | null = null;
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;

  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {
    FakeSocket.instances.push(this);
  }
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close(code = 1000) {
    this.closedWith = code;
    this.readyState = 3;
  }
  // --- driven by the test ---
  open() {
    this.readyState = 1;
    this.onopen?.(new Event("open"));
  }
  receive(message: unknown) {
    const data = typeof message === "string" ? message : JSON.stringify(message);
    this.onmessage?.(new MessageEvent("message", { data }));
  }
  connected() {
    this.open();
    this.receive({ seq: 1, type: "connected", ts: "2026-01-01T00:00:00Z", data: { connection_id: "c1" } });
  }
  serverClose(code: number, reason = "") {
    this.readyState = 3;
    this.onclose?.(new CloseEvent("close", { code, reason }));
  }
}

const last = () => FakeSocket.instances[FakeSocket.instances.length - 1]!;

function make(options: Partial<LiveConnectionOptions> = {}) {
  const randoms: number[] = [];
  const connection = new LiveConnection({
    token: "tok-123",
    url: "ws://engine.test/ws/connect",
    WebSocket: FakeSocket,
    random: () => randoms.shift() ?? 1,
    ...options,
  });
  return { connection, randoms };
}

beforeEach(() => {
  FakeSocket.instances = [];
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("LiveConnection", () => {
  it("authenticates with the bearer subprotocol, never the URL", () => {
    const { connection } = make();
    connection.start();
    expect(last().url).toBe("ws://engine.test/ws/connect");
    expect(last().protocols).toEqual(["bearer", "tok-123"]);
    expect(connection.getSnapshot().state).toBe("connecting");
    last().connected();
    expect(connection.getSnapshot().state).toBe("open");
    connection.close();
  });

  it("reconnects after an unexpected close with growing, capped, jittered delays", () => {
    const { connection, randoms } = make({ baseDelayMs: 500, maxDelayMs: 4000 });
    connection.start();
    const delays: number[] = [];
    const jitter = [0.5, 0.25, 1, 0.5, 1, 0.1];
    for (const r of jitter) {
      randoms.push(r);
      const before = Date.now();
      last().serverClose(1006);
      const snap = connection.getSnapshot();
      expect(snap.state).toBe("reconnecting");
      delays.push(snap.nextRetryAt! - before);
      const count = FakeSocket.instances.length;
      vi.advanceTimersByTime(delays[delays.length - 1]! - 1);
      expect(FakeSocket.instances.length).toBe(count);
      vi.advanceTimersByTime(1);
      expect(FakeSocket.instances.length).toBe(count + 1);
    }
    // ceilings 500, 1000, 2000, 4000, 4000 (capped), 4000
    expect(delays).toEqual([250, 250, 2000, 2000, 4000, 400]);
    connection.close();
  });

  it("resets the backoff once a connection has stayed open", () => {
    const { connection, randoms } = make({ stableAfterMs: 10_000 });
    connection.start();
    randoms.push(1, 1);
    last().serverClose(1006);
    vi.advanceTimersByTime(500);
    last().serverClose(1006);
    expect(connection.getSnapshot().nextRetryAt! - Date.now()).toBe(1000);
    vi.advanceTimersByTime(1000);
    last().connected();
    vi.advanceTimersByTime(10_000);
    randoms.push(1);
    last().serverClose(1001);
    expect(connection.getSnapshot().nextRetryAt! - Date.now()).toBe(500);
    connection.close();
  });

  it("subscribes after connected and resubscribes every topic after a reconnect", () => {
    const { connection } = make();
    connection.addTopic("signals");
    connection.addTopic("positions");
    connection.start();
    last().open();
    expect(last().sent).toEqual([]); // nothing before the server's connected
    last().receive({ seq: 1, type: "connected", ts: "", data: {} });
    expect(last().sent).toEqual([
      { type: "subscribe", topic: "signals" },
      { type: "subscribe", topic: "positions" },
    ]);

    connection.addTopic("prices:BTCUSDT");
    expect(last().sent[2]).toEqual({ type: "subscribe", topic: "prices:BTCUSDT" });
    connection.removeTopic("positions");
    expect(last().sent[3]).toEqual({ type: "unsubscribe", topic: "positions" });

    last().serverClose(1001);
    vi.advanceTimersByTime(30_000);
    const second = last();
    second.open();
    expect(second.sent).toEqual([]);
    second.connected();
    expect(second.sent).toEqual([
      { type: "subscribe", topic: "signals" },
      { type: "subscribe", topic: "prices:BTCUSDT" },
    ]);
    connection.close();
  });

  it("routes messages by type and ignores malformed ones", () => {
    const { connection } = make();
    const signals: ServerMessage[] = [];
    const positions: ServerMessage[] = [];
    const all: string[] = [];
    connection.subscribe("signal_received", (m) => signals.push(m));
    const off = connection.subscribe("position_update", (m) => positions.push(m));
    connection.subscribe("*", (m) => all.push(m.type));
    connection.start();
    last().connected();
    last().receive({ seq: 2, type: "signal_received", ts: "", data: { id: "s1" } });
    last().receive({ seq: 3, type: "position_update", ts: "", data: { id: "p1" } });
    last().receive("not json");
    last().receive([1, 2]);
    last().receive({ seq: 4, notype: true });
    off();
    last().receive({ seq: 5, type: "position_update", ts: "", data: { id: "p2" } });
    expect(signals.map((m) => (m.data as { id: string }).id)).toEqual(["s1"]);
    expect(positions.map((m) => (m.data as { id: string }).id)).toEqual(["p1"]);
    expect(all).toEqual(["connected", "signal_received", "position_update", "position_update"]);
    connection.close();
  });

  it("answers ping with pong", () => {
    const { connection } = make();
    connection.start();
    last().connected();
    last().receive({ seq: 2, type: "ping", ts: "" });
    expect(last().sent).toEqual([{ type: "pong" }]);
    connection.close();
  });

  it("stops on 4001 and calls onUnauthorized", () => {
    const onUnauthorized = vi.fn();
    const { connection } = make({ onUnauthorized });
    connection.start();
    last().connected();
    last().serverClose(4001, "token expired");
    expect(connection.getSnapshot()).toMatchObject({ state: "unauthorized", closeCode: 4001, nextRetryAt: null });
    expect(onUnauthorized).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(120_000);
    window.dispatchEvent(new Event("online"));
    expect(FakeSocket.instances).toHaveLength(1);
  });

  it("stops on 4003 without signing out", () => {
    const onUnauthorized = vi.fn();
    const { connection } = make({ onUnauthorized });
    connection.start();
    last().serverClose(4003);
    expect(connection.getSnapshot().state).toBe("unauthorized");
    expect(onUnauthorized).not.toHaveBeenCalled();
    vi.advanceTimersByTime(120_000);
    expect(FakeSocket.instances).toHaveLength(1);
  });

  it("retries slowly after 4029", () => {
    const { connection, randoms } = make({ slowDelayMs: 30_000 });
    connection.start();
    randoms.push(0);
    last().serverClose(4029);
    expect(connection.getSnapshot().nextRetryAt! - Date.now()).toBe(30_000);
    connection.close();
  });

  it("does not reconnect after its own close()", () => {
    const { connection } = make();
    connection.start();
    const socket = last();
    socket.connected();
    connection.close();
    expect(socket.closedWith).toBe(1000);
    expect(connection.getSnapshot().state).toBe("closed");
    socket.serverClose(1000);
    vi.advanceTimersByTime(120_000);
    expect(FakeSocket.instances).toHaveLength(1);
  });

  it("emits resync after a reconnect and passes the server's resync on", () => {
    const { connection } = make();
    const resyncs: unknown[] = [];
    connection.subscribe("resync", (m) => resyncs.push(m.data));
    connection.start();
    last().connected();
    expect(resyncs).toEqual([]); // the first connection is not a resync
    last().serverClose(1011);
    vi.advanceTimersByTime(30_000);
    last().connected();
    expect(resyncs).toEqual([{ reason: "reconnected" }]);
    last().receive({ seq: 2, type: "resync", ts: "", data: { reason: "feed lost" } });
    expect(resyncs).toEqual([{ reason: "reconnected" }, { reason: "feed lost" }]);
    connection.close();
  });

  it("retries at once when the browser comes back online", () => {
    const { connection, randoms } = make();
    connection.start();
    randoms.push(1);
    last().serverClose(1006);
    vi.advanceTimersByTime(100);
    expect(FakeSocket.instances).toHaveLength(1);
    window.dispatchEvent(new Event("online"));
    expect(FakeSocket.instances).toHaveLength(2);
    expect(connection.getSnapshot().state).toBe("reconnecting");
    connection.close();
  });

  it("gives up on a handshake that never says connected", () => {
    const { connection } = make({ connectTimeoutMs: 5000 });
    connection.start();
    const first = last();
    first.open();
    vi.advanceTimersByTime(5000);
    expect(first.closedWith).toBe(1000);
    expect(connection.getSnapshot().state).toBe("reconnecting");
    connection.close();
  });
});

describe("useWebSocket", () => {
  it("exposes the state and reconnects with a new token", () => {
    const onUnauthorized = vi.fn();
    const { result, rerender, unmount } = renderHook(
      ({ token }) => useWebSocket(token, { url: "ws://x/ws/connect", WebSocket: FakeSocket, topics: ["signals"], onUnauthorized }),
      { initialProps: { token: "a" as string | null } },
    );
    expect(result.current.state).toBe("connecting");
    act(() => last().connected());
    expect(result.current.state).toBe("open");
    expect(last().sent).toEqual([{ type: "subscribe", topic: "signals" }]);

    const first = last();
    rerender({ token: "b" });
    expect(first.closedWith).toBe(1000);
    expect(last().protocols).toEqual(["bearer", "b"]);

    act(() => last().serverClose(4001));
    expect(result.current.state).toBe("unauthorized");
    expect(onUnauthorized).toHaveBeenCalledTimes(1);
    unmount();
  });
});
