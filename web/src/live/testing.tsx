// Test helpers for pages (used only by tests): a fake live feed behind LiveContext, and a fetch stub routing by path.

import { act } from "@testing-library/react";
import type { ReactNode } from "react";
import { vi } from "vitest";
import type { ServerMessage } from "../api/types";
import type { MessageHandler } from "../hooks/useWebSocket";
import { LiveContext, type LiveValue } from "./LiveProvider";

export function fakeLive() {
  const handlers = new Map<string, Set<MessageHandler>>();
  const value: LiveValue = {
    state: "open",
    nextRetryAt: null,
    closeCode: null,
    resyncCount: 0,
    on: (type, handler) => {
      const set = handlers.get(type) ?? new Set();
      set.add(handler);
      handlers.set(type, set);
      return () => set.delete(handler);
    },
    watchTopic: () => () => {},
  };
  let seq = 1;
  const emit = (type: string, data: unknown) => {
    const message: ServerMessage = { seq: (seq += 1), type, ts: new Date().toISOString(), data };
    act(() => {
      for (const handler of handlers.get(type) ?? []) handler(message);
    });
  };
  const Provider = ({ children }: { children: ReactNode }) => <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
  return { value, emit, Provider };
}

export type Route = (url: URL, init: RequestInit | undefined) => { status?: number; body?: unknown } | undefined;

/** Stub `fetch`: the first route that answers wins; unanswered requests are 404s. */
export function stubFetch(...routes: Route[]) {
  const calls: Array<{ url: URL; init: RequestInit | undefined }> = [];
  const fetch = vi.fn(async (input: string, init?: RequestInit) => {
    const url = new URL(input, "http://localhost");
    calls.push({ url, init });
    for (const route of routes) {
      const answer = route(url, init);
      if (answer) {
        const status = answer.status ?? 200;
        return new Response(status === 204 ? null : JSON.stringify(answer.body ?? {}), {
          status,
          headers: { "Content-Type": "application/json" },
        });
      }
    }
    return new Response(JSON.stringify({ error: { code: "not_found", message: "not found" } }), { status: 404 });
  });
  vi.stubGlobal("fetch", fetch);
  return { fetch, calls };
}
