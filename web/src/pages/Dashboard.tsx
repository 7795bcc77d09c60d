// The dashboard: account figures, open positions (with closing), recent trades and the latest
// signals, loaded over REST and kept current by the live feed.

import { useCallback, useEffect, useId, useRef, useState } from "react";
import { Link } from "react-router-dom";
import { api, ApiError, errorMessage } from "../api/client";
import type { AccountSummary, CloseRequested, Page, Position, PriceUpdate, ServerMessage, Signal, Trade } from "../api/types";
import { ErrorNotice, Money, StatusBadge } from "../components/common";
import { sumDecimals } from "../lib/decimal";
import { formatAmount, formatTime, titleCase } from "../lib/format";
import { logger } from "../lib/logger";
import { useResource } from "../lib/useResource";
import { isRecord, itemOf, mergeById, removeById, upsertById } from "../live/merge";
import { useLive, useLiveEvents } from "../live/LiveProvider";
import "./Dashboard.css";

const RECENT_TRADES = 10;
const LIVE_SIGNALS = 20;
const SUMMARY_DEBOUNCE_MS = 500;
const MAX_POSITION_PAGES = 10;

async function loadOpenPositions(signal: AbortSignal): Promise<Position[]> {
  const all: Position[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < MAX_POSITION_PAGES; page += 1) {
    const body: Page<Position> = await api.get<Page<Position>>("/api/positions", { status: "open", limit: 200, cursor }, signal);
    all.push(...body.items);
    cursor = body.next_cursor;
    if (!cursor) break;
  }
  return all;
}

function signalLabel(type: string): string {
  return type.replace(/_/g, " ");
}

interface CloseNotice {
  text: string;
  error: boolean;
}

export function Dashboard() {
  const { resyncCount } = useLive();
  const summary = useResource((signal) => api.get<AccountSummary>("/api/account/summary", undefined, signal), [resyncCount]);
  const positions = useResource(loadOpenPositions, [resyncCount]);
  const trades = useResource(
    (signal) => api.get<Page<Trade>>("/api/trades", { limit: RECENT_TRADES }, signal).then((page) => page.items),
    [resyncCount],
  );
  const signals = useResource(
    (signal) => api.get<Page<Signal>>("/api/signals", { limit: LIVE_SIGNALS }, signal).then((page) => page.items),
    [resyncCount],
  );

  const [confirming, setConfirming] = useState<string | null>(null);
  const [closing, setClosing] = useState<ReadonlySet<string>>(new Set());
  const [notice, setNotice] = useState<CloseNotice | null>(null);
  const [focusClose, setFocusClose] = useState<string | null>(null);

  // Many events arrive together (fill, stop orders, position): one summary reload for the burst.
  const summaryTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const reloadSummary = summary.reload;
  const scheduleSummary = useCallback(() => {
    if (summaryTimer.current !== null) clearTimeout(summaryTimer.current);
    summaryTimer.current = setTimeout(() => {
      summaryTimer.current = null;
      reloadSummary();
    }, SUMMARY_DEBOUNCE_MS);
  }, [reloadSummary]);
  useEffect(
    () => () => {
      if (summaryTimer.current !== null) clearTimeout(summaryTimer.current);
    },
    [],
  );

  const positionsRef = useRef(positions.data);
  positionsRef.current = positions.data;
  const closingRef = useRef(closing);
  closingRef.current = closing;

  useLiveEvents(["position_update"], (message: ServerMessage) => {
    const item = itemOf<Position>(message.data);
    if (!item) return;
    const known = positionsRef.current?.find((p) => p.id === item.id);
    // A re-mark at a new price changes only the unrealised PnL, which is summed here already.
    const structural = !known || item.status !== known.status || (item.quantity !== undefined && item.quantity !== known.quantity);
    if (item.status === "closed") {
      positions.setData((prev) => (prev ? removeById(prev, item.id) : prev));
      if (closingRef.current.has(item.id)) {
        setClosing((prev) => {
          const next = new Set(prev);
          next.delete(item.id);
          return next;
        });
        const who = known ?? item;
        setNotice({ text: `${who.symbol ?? ""} ${who.side ?? ""} position closed.`.trim(), error: false });
      }
    } else {
      positions.setData((prev) => (prev ? upsertById(prev, item) : prev));
    }
    if (structural) scheduleSummary();
  });

  useLiveEvents(["price_update"], (message) => {
    const data = message.data as Partial<PriceUpdate> | undefined;
    if (!isRecord(data) || typeof data.symbol !== "string" || typeof data.price !== "string") return;
    const { symbol, exchange, price } = data;
    positions.setData((prev) =>
      prev?.some((p) => p.symbol === symbol && p.exchange === exchange)
        ? prev.map((p) => (p.symbol === symbol && p.exchange === exchange ? { ...p, current_price: price } : p))
        : prev,
    );
  });

  useLiveEvents(["trade_executed", "trade_update"], (message) => {
    const item = itemOf<Trade>(message.data);
    if (!item) return;
    trades.setData((prev) => (prev ? upsertById(prev, item, RECENT_TRADES) : prev));
    scheduleSummary();
  });

  useLiveEvents(["signal_received", "signal_update"], (message) => {
    const item = itemOf<Signal>(message.data);
    if (!item) return;
    signals.setData((prev) => {
      if (!prev) return prev;
      return message.type === "signal_received" ? upsertById(prev, item, LIVE_SIGNALS) : mergeById(prev, item);
    });
  });

  // Put keyboard focus back on the row's Close button after cancelling.
  useEffect(() => {
    if (!focusClose) return;
    document.getElementById(`close-${focusClose}`)?.focus();
    setFocusClose(null);
  }, [focusClose]);

  async function confirmClose(position: Position) {
    setConfirming(null);
    setClosing((prev) => new Set(prev).add(position.id));
    try {
      const answer = await api.post<CloseRequested>(`/api/positions/${encodeURIComponent(position.id)}/close`);
      setNotice({ text: `${position.symbol} ${position.side}: ${answer.message}`, error: false });
      logger.info("trading", "close requested", { position_id: position.id, symbol: position.symbol });
    } catch (exc) {
      setClosing((prev) => {
        const next = new Set(prev);
        next.delete(position.id);
        return next;
      });
      const text = errorMessage(exc);
      setNotice({ text: `${position.symbol} ${position.side}: ${text}`, error: true });
      if (exc instanceof ApiError && exc.status === 409) positions.reload();
      else logger.warn("trading", "close failed", { position_id: position.id, error: text });
    }
  }

  const open = positions.data;
  const unrealised = open ? sumDecimals(open.map((p) => p.unrealized_pnl)) : (summary.data?.unrealized_pnl ?? null);
  const s = summary.data;
  const pending = summary.loading && !s;

  const positionsHeading = useId();
  const tradesHeading = useId();
  const signalsHeading = useId();
  const statsHeading = useId();

  return (
    <div className="stack dashboard">
      <h1>Dashboard</h1>

      <section aria-labelledby={statsHeading}>
        <h2 id={statsHeading} className="visually-hidden">
          Account
        </h2>
        <ErrorNotice error={summary.error} />
        <div className="grid cols-4 stats">
          <div className="card">
            <p className="stat-label">Equity</p>
            <p className="stat-value">{pending ? "…" : s?.equity ? <Money value={s.equity} /> : "—"}</p>
            {s && !s.equity && <p className="hint">{s.exchange} does not report equity.</p>}
          </div>
          <div className="card">
            <p className="stat-label">Today's PnL</p>
            <p className="stat-value">{pending ? "…" : <Money value={s?.realized_pnl_today} signed />}</p>
            {s && <p className="hint">{s.trades_today === 1 ? "1 trade today" : `${s.trades_today} trades today`}</p>}
          </div>
          <div className="card">
            <p className="stat-label">Unrealised PnL</p>
            <p className="stat-value">{pending && !open ? "…" : <Money value={unrealised} signed />}</p>
          </div>
          <div className="card">
            <p className="stat-label">Open positions</p>
            <p className="stat-value">{open ? open.length : pending ? "…" : (s?.open_positions ?? "—")}</p>
          </div>
        </div>
      </section>

      <section className="card" aria-labelledby={positionsHeading}>
        <h2 id={positionsHeading}>Open positions</h2>
        <div role="status" className="close-status">
          {notice && <p className={notice.error ? "notice error" : "notice success"}>{notice.text}</p>}
        </div>
        <ErrorNotice error={positions.error} />
        {positions.loading && !open ? (
          <p className="muted">Loading positions…</p>
        ) : open && open.length === 0 ? (
          <p className="empty">
            No open positions. Send an alert to your webhook URL (see <Link to="/webhook">Webhook</Link>) to open one.
          </p>
        ) : open ? (
          <div className="table-wrap">
            <table aria-labelledby={positionsHeading}>
              <thead>
                <tr>
                  <th scope="col">Symbol</th>
                  <th scope="col">Side</th>
                  <th scope="col" className="num">Quantity</th>
                  <th scope="col" className="num">Entry</th>
                  <th scope="col" className="num">Price</th>
                  <th scope="col" className="num">Unrealised PnL</th>
                  <th scope="col" className="num">Stop loss</th>
                  <th scope="col" className="num">Take profit</th>
                  <th scope="col">Opened</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {open.map((p) => {
                  const label = `${p.symbol} ${p.side} position`;
                  const labelId = `position-${p.id}`;
                  return (
                    <tr key={p.id}>
                      <td id={labelId}>
                        <strong>{p.symbol}</strong> <span className="muted">{p.exchange}</span>
                      </td>
                      <td className={p.side === "long" ? "positive" : p.side === "short" ? "negative" : undefined}>{p.side}</td>
                      <td className="num">{formatAmount(p.quantity)}</td>
                      <td className="num">{formatAmount(p.entry_price)}</td>
                      <td className="num">{formatAmount(p.current_price)}</td>
                      <td className="num">
                        <Money value={p.unrealized_pnl} signed />
                      </td>
                      <td className="num">{formatAmount(p.stop_loss)}</td>
                      <td className="num">{formatAmount(p.take_profit)}</td>
                      <td>{formatTime(p.opened_at)}</td>
                      <td className="actions">
                        {closing.has(p.id) ? (
                          <span className="muted">Closing…</span>
                        ) : confirming === p.id ? (
                          <span className="row">
                            <button type="button" className="danger" autoFocus aria-describedby={labelId} onClick={() => void confirmClose(p)}>
                              Confirm close
                            </button>
                            <button
                              type="button"
                              aria-describedby={labelId}
                              onClick={() => {
                                setConfirming(null);
                                setFocusClose(p.id);
                              }}
                            >
                              Cancel
                            </button>
                          </span>
                        ) : (
                          <button type="button" id={`close-${p.id}`} aria-label={`Close ${label}`} onClick={() => setConfirming(p.id)}>
                            Close
                          </button>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        ) : null}
      </section>

      <div className="dashboard-lower">
        <section className="card" aria-labelledby={tradesHeading}>
          <h2 id={tradesHeading}>Recent trades</h2>
          <ErrorNotice error={trades.error} />
          {trades.loading && !trades.data ? (
            <p className="muted">Loading trades…</p>
          ) : trades.data && trades.data.length === 0 ? (
            <p className="empty">No trades yet. Orders appear here as soon as they are placed.</p>
          ) : trades.data ? (
            <div className="table-wrap">
              <table aria-labelledby={tradesHeading}>
                <thead>
                  <tr>
                    <th scope="col">Time</th>
                    <th scope="col">Symbol</th>
                    <th scope="col">Side</th>
                    <th scope="col">Type</th>
                    <th scope="col">Status</th>
                    <th scope="col" className="num">Quantity</th>
                    <th scope="col" className="num">Avg price</th>
                    <th scope="col" className="num">Fee</th>
                    <th scope="col" className="num">Realised PnL</th>
                  </tr>
                </thead>
                <tbody>
                  {trades.data.map((t) => (
                    <tr key={t.id}>
                      <td>{formatTime(t.executed_at ?? t.created_at)}</td>
                      <td>{t.symbol}</td>
                      <td>{t.side}</td>
                      <td>{titleCase(t.order_type)}</td>
                      <td>
                        <StatusBadge status={t.status} />
                      </td>
                      <td className="num">{formatAmount(t.quantity)}</td>
                      <td className="num">{formatAmount(t.avg_fill_price)}</td>
                      <td className="num">
                        {formatAmount(t.fee)}
                        {t.fee && t.fee_currency ? ` ${t.fee_currency}` : ""}
                      </td>
                      <td className="num">
                        <Money value={t.realized_pnl} signed />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : null}
        </section>

        <section className="card" aria-labelledby={signalsHeading}>
          <h2 id={signalsHeading}>Live signals</h2>
          <ErrorNotice error={signals.error} />
          {signals.loading && !signals.data ? (
            <p className="muted">Loading signals…</p>
          ) : null}
          <ol className="signal-list" aria-live="polite" aria-labelledby={signalsHeading}>
            {signals.data?.map((sig) => (
              <li key={sig.id} className="signal-item">
                <div className="row signal-head">
                  <strong>{sig.symbol}</strong>
                  <span>{signalLabel(sig.signal_type)}</span>
                  <StatusBadge status={sig.status} />
                  {sig.created_at && (
                    <time className="muted signal-time" dateTime={sig.created_at}>
                      {formatTime(sig.created_at)}
                    </time>
                  )}
                </div>
                {sig.status_reason && <p className="signal-reason">{sig.status_reason}</p>}
              </li>
            ))}
          </ol>
          {signals.data && signals.data.length === 0 && (
            <p className="empty">No signals yet. Alerts sent to your webhook appear here as they arrive.</p>
          )}
        </section>
      </div>
    </div>
  );
}
