// Signals: every alert the webhook received, filtered and paged, with new ones added live.

import { useId, useState } from "react";
import { api } from "../api/client";
import type { Page, Signal } from "../api/types";
import { ErrorNotice, Pager, StatusBadge } from "../components/common";
import { formatAmount, formatTime } from "../lib/format";
import { useResource } from "../lib/useResource";
import { useLive, useLiveEvents } from "../live/LiveProvider";
import { itemOf, mergeById, upsertById } from "../live/merge";
import { FilterForm, filterQuery, matchesFilters, useCursorPages, useHistoryFilters } from "./history";

export const SIGNAL_STATUSES = ["queued", "executing", "executed", "rejected", "skipped", "failed", "logged"] as const;
const PAGE_SIZE = 25;

export function Signals() {
  const { filters, key, apply } = useHistoryFilters(SIGNAL_STATUSES);
  const pages = useCursorPages(key);
  const { resyncCount } = useLive();
  const [announcement, setAnnouncement] = useState("");
  const headingId = useId();

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

  const items = page.data?.items;
  return (
    <div className="stack history-page">
      <h1>Signals</h1>
      <section className="card" aria-labelledby={headingId}>
        <h2 id={headingId} className="visually-hidden">
          Signal history
        </h2>
        <FilterForm key={key} filters={filters} statuses={SIGNAL_STATUSES} onApply={apply} label="Signal" />
        <p role="status" className="visually-hidden">
          {announcement}
        </p>
        <ErrorNotice error={page.error} />
        {page.loading && !items ? (
          <p className="muted">Loading signals…</p>
        ) : items && items.length === 0 ? (
          <p className="empty">{pages.isFirst ? "No signals match these filters." : "No older signals."}</p>
        ) : items ? (
          <div className="table-wrap">
            <table aria-labelledby={headingId} aria-busy={page.loading || undefined}>
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Symbol</th>
                  <th scope="col">Type</th>
                  <th scope="col">Exchange</th>
                  <th scope="col">Status</th>
                  <th scope="col" className="num">Price</th>
                  <th scope="col" className="num">Stop loss</th>
                  <th scope="col" className="num">Take profit</th>
                  <th scope="col">Reason</th>
                </tr>
              </thead>
              <tbody>
                {items.map((s) => (
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
                ))}
              </tbody>
            </table>
          </div>
        ) : null}
        <div className="row pager-row">
          <Pager
            label="Signal"
            hasPrevious={pages.hasPrevious}
            hasNext={Boolean(page.data?.next_cursor)}
            onPrevious={pages.newer}
            onNext={() => page.data?.next_cursor && pages.older(page.data.next_cursor)}
          />
        </div>
      </section>
    </div>
  );
}
