// One live connection for the whole app: the topics every page needs, a way for pages to listen
// to message types, and a counter that tells pages to re-read REST after a gap in the feed.

import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import type { ServerMessage } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { useWebSocket, type ConnectionState, type MessageHandler, type UseWebSocketOptions } from "../hooks/useWebSocket";

export interface LiveValue {
  state: ConnectionState;
  nextRetryAt: number | null;
  closeCode: number | null;
  /** Listen to one message type; returns the function that stops listening. */
  on: (type: string, handler: MessageHandler) => () => void;
  /** Grows on every reconnect and `resync`: reload REST state in an effect that depends on it. */
  resyncCount: number;
  /** Want an extra topic such as `prices:BTCUSDT` (counted); returns the function that releases it. */
  watchTopic: (topic: string) => () => void;
}

export const APP_TOPICS = ["signals", "trades", "positions", "prices"] as const;

const noop = () => () => {};
const OFFLINE: LiveValue = { state: "closed", nextRetryAt: null, closeCode: null, on: noop, resyncCount: 0, watchTopic: noop };

/** Exported so tests can provide a fake feed. */
export const LiveContext = createContext<LiveValue>(OFFLINE);

export function LiveProvider({ token, children, options }: { token: string | null; children: ReactNode; options?: UseWebSocketOptions }) {
  const { signOut } = useAuth();
  const live = useWebSocket(token, { ...options, topics: APP_TOPICS, onUnauthorized: signOut });
  const { connection } = live;
  const [resyncCount, setResyncCount] = useState(0);

  useEffect(() => connection.subscribe("resync", () => setResyncCount((n) => n + 1)), [connection]);

  const on = useCallback((type: string, handler: MessageHandler) => connection.subscribe(type, handler), [connection]);
  const watchTopic = useCallback(
    (topic: string) => {
      connection.addTopic(topic);
      return () => connection.removeTopic(topic);
    },
    [connection],
  );

  const value = useMemo<LiveValue>(
    () => ({ state: live.state, nextRetryAt: live.nextRetryAt, closeCode: live.closeCode, on, resyncCount, watchTopic }),
    [live.state, live.nextRetryAt, live.closeCode, on, resyncCount, watchTopic],
  );
  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}

export function useLive(): LiveValue {
  return useContext(LiveContext);
}

/**
 * Run `handler` for every message of the given types while mounted. The latest handler is used
 * without re-subscribing, so it may close over fresh state.
 */
export function useLiveEvents(types: readonly string[], handler: (message: ServerMessage) => void): void {
  const { on } = useLive();
  const [ref] = useState(() => ({ current: handler }));
  ref.current = handler;
  const key = types.join(",");
  useEffect(() => {
    const offs = key.split(",").map((type) => on(type, (message) => ref.current(message)));
    return () => offs.forEach((off) => off());
  }, [on, key, ref]);
}
