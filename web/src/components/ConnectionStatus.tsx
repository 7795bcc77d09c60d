// The live connection's state in the header: a coloured dot and a word, with a countdown while
// waiting to reconnect.

import { useEffect, useState } from "react";
import { useLive } from "../live/LiveProvider";
import "./ConnectionStatus.css";

export function connectionText(state: string, nextRetryAt: number | null, closeCode: number | null, now: number): string {
  switch (state) {
    case "open":
      return "Live";
    case "connecting":
      return "Connecting…";
    case "reconnecting":
      if (nextRetryAt === null) return "Connecting…";
      return `Reconnecting in ${Math.max(1, Math.ceil((nextRetryAt - now) / 1000))} s`;
    case "unauthorized":
      return closeCode === 4003 ? "No engine account" : "Session expired";
    default:
      return "Offline";
  }
}

const TONE: Record<string, string> = { open: "ok", connecting: "info", reconnecting: "warn", unauthorized: "bad", closed: "off" };

export function ConnectionStatus() {
  const { state, nextRetryAt, closeCode } = useLive();
  const [now, setNow] = useState(() => Date.now());

  // Tick only while counting down.
  useEffect(() => {
    if (nextRetryAt === null) return;
    setNow(Date.now());
    const id = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(id);
  }, [nextRetryAt]);

  const text = connectionText(state, nextRetryAt, closeCode, now);
  return (
    <span role="status" className={`connection ${TONE[state] ?? "off"}`} aria-label={`Real-time connection: ${text}`}>
      <span className="connection-dot" aria-hidden="true" />
      <span className="connection-text">{text}</span>
    </span>
  );
}
