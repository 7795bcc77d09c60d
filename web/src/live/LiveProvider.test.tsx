// LiveProvider with a fake socket: the app's topics, resync counting, the header's status text,
// and sign-out on 4001.

import { act, render, screen } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { AuthProvider } from "../auth/AuthContext";
import { ConnectionStatus, connectionText } from "../components/ConnectionStatus";
import type { SocketLike } from "../hooks/useWebSocket";
import { logger } from "../lib/logger";
import { LiveProvider, useLive } from "./LiveProvider";

class FakeSocket implements SocketLike {
  static instances: FakeSocket[] = [];
  readyState = 0;
  sent: unknown[] = [];
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
  close() {
    this.readyState = 3;
  }
  receive(message: unknown) {
    act(() => this.onmessage?.(new MessageEvent("message", { data: JSON.stringify(message) })));
  }
  connected() {
    this.readyState = 1;
    this.receive({ seq: 1, type: "connected", ts: "", data: {} });
  }
  serverClose(code: number) {
    this.readyState = 3;
    act(() => this.onclose?.(new CloseEvent("close", { code })));
  }
}

function Resyncs() {
  return <span data-testid="resyncs">{useLive().resyncCount}</span>;
}

const last = () => FakeSocket.instances[FakeSocket.instances.length - 1]!;

beforeEach(() => {
  FakeSocket.instances = [];
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

function setup() {
  render(
    <AuthProvider>
      <LiveProvider token="tok" options={{ url: "ws://x/ws/connect", WebSocket: FakeSocket, random: () => 1 }}>
        <ConnectionStatus />
        <Resyncs />
      </LiveProvider>
    </AuthProvider>,
  );
}

describe("LiveProvider", () => {
  it("subscribes the app's topics and shows the connection state", () => {
    setup();
    const status = screen.getByRole("status");
    expect(status).toHaveAccessibleName("Real-time connection: Connecting…");
    last().connected();
    expect(status).toHaveAccessibleName("Real-time connection: Live");
    expect(last().sent).toEqual(["signals", "trades", "positions", "prices"].map((topic) => ({ type: "subscribe", topic })));
  });

  it("counts resyncs and reconnects, with a countdown while waiting", () => {
    setup();
    last().connected();
    last().receive({ seq: 2, type: "resync", ts: "", data: { reason: "feed" } });
    expect(screen.getByTestId("resyncs")).toHaveTextContent("1");
    last().serverClose(1006);
    expect(screen.getByRole("status")).toHaveAccessibleName("Real-time connection: Reconnecting in 1 s");
    act(() => {
      vi.advanceTimersByTime(500);
    });
    last().connected();
    expect(screen.getByTestId("resyncs")).toHaveTextContent("2");
  });

  it("signs out on 4001", () => {
    // The auth provider's signOut is the only caller of setUserId(null) here.
    const signedOut = vi.spyOn(logger, "setUserId");
    setup();
    last().serverClose(4001);
    expect(screen.getByRole("status")).toHaveAccessibleName("Real-time connection: Session expired");
    expect(signedOut).toHaveBeenCalledWith(null);
  });
});

describe("connectionText", () => {
  it("names every state", () => {
    expect(connectionText("open", null, null, 0)).toBe("Live");
    expect(connectionText("connecting", null, null, 0)).toBe("Connecting…");
    expect(connectionText("reconnecting", 12_300, 1006, 0)).toBe("Reconnecting in 13 s");
    expect(connectionText("closed", null, 1000, 0)).toBe("Offline");
    expect(connectionText("unauthorized", null, 4001, 0)).toBe("Session expired");
  });
});
