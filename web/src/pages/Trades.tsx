// Trades: every order the engine placed, filtered and paged, with fills and state changes
// applied live.

import { useState } from "react";
import { api } from "../api/client";
import type { Page, Trade } from "../api/types";
import { Money, StatusBadge } from "../components/common";
import { formatAmount, formatTime, titleCase } from "../lib/format";
import { useResource } from "../lib/useResource";
import { useLive, useLiveEvents } from "../live/LiveProvider";
import { itemOf, mergeById, upsertById } from "../live/merge";
import { HistoryTable, filterQuery, matchesFilters, useCursorPages, useHistoryFilters } from "./history";

// bot-engine/app/models/trade.py ORDER_STATUSES
export const TRADE_STATUSES = ["pending", "open", "partially_filled", "filled", "canceled", "failed", "unknown"] as const;
const PAGE_SIZE = 25;

export function Trades() {
  const { filters, key, apply } = useHistoryFilters(TRADE_STATUSES);
  const pages = useCursorPages(key);
  const { resyncCount } = useLive();
  const [announcement, setAnnouncement] = useState("");

  const page = useResource(
    (signal) => api.get<Page<Trade>>("/api/trades", { ...filterQuery(filters), limit: PAGE_SIZE, cursor: pages.cursor }, signal),
    [key, pages.cursor, resyncCount],
  );

  useLiveEvents(["trade_executed", "trade_update"], (message) => {
    const item = itemOf<Trade>(message.data);
    if (!item) return;
    page.setData((prev) => {
      if (!prev) return prev;
      if (prev.items.some((t) => t.id === item.id)) return { ...prev, items: mergeById(prev.items, item) };
      // Only the newest page shows new orders; older pages stay as they were read.
      if (!pages.isFirst || !matchesFilters(item, filters)) return prev;
      return { ...prev, items: upsertById(prev.items, item) };
    });
    if (message.type === "trade_executed") setAnnouncement(`Trade ${item.status ?? ""}: ${item.side ?? ""} ${item.symbol ?? ""}`.replace(/\s+/g, " ").trim());
  });

  return (
    <HistoryTable
      title="Trades"
      label="Trade"
      statuses={TRADE_STATUSES}
      filters={filters}
      filterKey={key}
      onApply={apply}
      announcement={announcement}
      page={page}
      pages={pages}
      head={
        <>
          <th scope="col">Time</th>
          <th scope="col">Symbol</th>
          <th scope="col">Side</th>
          <th scope="col">Type</th>
          <th scope="col">Reduce only</th>
          <th scope="col">Status</th>
          <th scope="col" className="num">Quantity</th>
          <th scope="col" className="num">Filled</th>
          <th scope="col" className="num">Avg price</th>
          <th scope="col" className="num">Fee</th>
          <th scope="col" className="num">Realised PnL</th>
          <th scope="col">Order id</th>
        </>
      }
      row={(t: Trade) => {
        const orderId = t.exchange_order_id ?? t.client_order_id;
        return (
          <tr key={t.id}>
            <td>{formatTime(t.executed_at ?? t.created_at)}</td>
            <td>{t.symbol}</td>
            <td>{t.side}</td>
            <td>{titleCase(t.order_type)}</td>
            <td>{t.reduce_only ? "Yes" : "No"}</td>
            <td>
              <StatusBadge status={t.status} />
            </td>
            <td className="num">{formatAmount(t.quantity)}</td>
            <td className="num">{formatAmount(t.filled_quantity)}</td>
            <td className="num">{formatAmount(t.avg_fill_price)}</td>
            <td className="num">
              {formatAmount(t.fee)}
              {t.fee && t.fee_currency ? ` ${t.fee_currency}` : ""}
            </td>
            <td className="num">
              <Money value={t.realized_pnl} signed />
            </td>
            <td className="mono order-id" title={orderId ?? undefined}>
              {orderId ?? "—"}
            </td>
          </tr>
        );
      }}
    />
  );
}
