// Signals: every alert the webhook received, filtered and paged, with new ones added live.

import { useState } from "react";
import { api } from "../api/client";
import type { Page, Signal } from "../api/types";
import { StatusBadge } from "../components/common";
import { formatAmount, formatTime } from "../lib/format";
import { useResource } from "../lib/useResource";
import { useLive, useLiveEvents } from "../live/LiveProvider";
import { itemOf, mergeById, upsertById } from "../live/merge";
import { HistoryTable, filterQuery, matchesFilters, useCursorPages, useHistoryFilters } from "./history";

export const SIGNAL_STATUSES = ["queued", "executing", "executed", "rejected", "skipped", "failed", "logged"] as const;
const PAGE_SIZE = 25;

export function Signals() {
  const { filters, key, apply } = useHistoryFilters(SIGNAL_STATUSES);
  const pages = useCursorPages(key);
  const { resyncCount } = useLive();
  const [announcement, setAnnouncement] = useState("");

  const page = useResource(
    (signal) => api.get<Page<Signal>>("/api/signals", { ...filterQuery(filters), limit: PAGE_SIZE, cursor: pages.cursor }, signal),
    [key, pages.cursor, resyncCount],
  );

  useLiveEvents(["signal_received", "signal_update"], (message) => {
    const item = itemOf<Signal>(message.data);
    if (!item) return;
    if (message.type === "signal_received") {
      // Only the newest page shows new arrivals; older pages stay as they were read.
      if (!pages.isFirst || !matchesFilters(item, filters)) return;
      page.setData((prev) => (prev ? { ...prev, items: upsertById(prev.items, item) } : prev));
      setAnnouncement(`New signal: ${item.symbol ?? ""} ${(item.signal_type ?? "").replace(/_/g, " ")}`.trim());
    } else {
      page.setData((prev) => (prev ? { ...prev, items: mergeById(prev.items, item) } : prev));
    }
  });

  return (
    <HistoryTable
      title="Signals"
      label="Signal"
      statuses={SIGNAL_STATUSES}
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
          <th scope="col">Type</th>
          <th scope="col">Exchange</th>
          <th scope="col">Status</th>
          <th scope="col" className="num">Price</th>
          <th scope="col" className="num">Stop loss</th>
          <th scope="col" className="num">Take profit</th>
          <th scope="col">Reason</th>
        </>
      }
      row={(s: Signal) => (
        <tr key={s.id}>
          <td>{formatTime(s.created_at)}</td>
          <td>{s.symbol}</td>
          <td>{s.signal_type.replace(/_/g, " ")}</td>
          <td>{s.exchange ?? "—"}</td>
          <td>
            <StatusBadge status={s.status} />
          </td>
          <td className="num">{formatAmount(s.price)}</td>
          <td className="num">{formatAmount(s.suggested_stop_loss)}</td>
          <td className="num">{formatAmount(s.suggested_take_profit)}</td>
          <td className="reason">{s.status_reason ?? ""}</td>
        </tr>
      )}
    />
  );
}
