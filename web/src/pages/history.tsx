// What the Signals and Trades pages share: the page frame (`HistoryTable`), filters kept in the URL and validated before any
// request, cursor paging with a way back, and the test of whether a live item belongs on the page.

import { useId, useRef, useState, type FormEvent, type ReactNode } from "react";
import { useSearchParams } from "react-router-dom";
import type { Query } from "../api/client";
import type { Page } from "../api/types";
import { ErrorNotice, Pager } from "../components/common";
import type { Resource } from "../lib/useResource";
import "./history.css";

export interface HistoryFilters {
  symbol: string;
  status: string;
  /** `datetime-local` values (local time, no zone), as typed. */
  from: string;
  to: string;
}

export type FilterErrors = Partial<Record<keyof HistoryFilters, string>>;

const SYMBOL = /^[A-Za-z0-9:._\-/!]+$/;
const MAX_SYMBOL = 40;

/** The filters in the URL's query, so a reload or a shared link keeps them. */
export function useHistoryFilters(statuses: readonly string[]): { filters: HistoryFilters; key: string; apply: (next: HistoryFilters) => void } {
  const [params, setParams] = useSearchParams();
  const status = params.get("status") ?? "";
  const filters: HistoryFilters = {
    symbol: params.get("symbol") ?? "",
    status: statuses.includes(status) ? status : "",
    from: params.get("from") ?? "",
    to: params.get("to") ?? "",
  };
  const key = JSON.stringify(filters);
  const apply = (next: HistoryFilters) => {
    const query = new URLSearchParams();
    const symbol = next.symbol.trim();
    if (symbol) query.set("symbol", symbol);
    if (next.status) query.set("status", next.status);
    if (next.from) query.set("from", next.from);
    if (next.to) query.set("to", next.to);
    setParams(query);
  };
  return { filters, key, apply };
}

function instant(local: string): Date | null {
  if (!local) return null;
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function validateFilters(filters: HistoryFilters): FilterErrors {
  const errors: FilterErrors = {};
  const symbol = filters.symbol.trim();
  if (symbol.length > MAX_SYMBOL) errors.symbol = `Symbol must be at most ${MAX_SYMBOL} characters.`;
  else if (symbol && !SYMBOL.test(symbol)) errors.symbol = "Symbol may contain only letters, digits and : . _ - /";
  const from = instant(filters.from);
  const to = instant(filters.to);
  if (filters.from && !from) errors.from = "Enter a valid date and time.";
  if (filters.to && !to) errors.to = "Enter a valid date and time.";
  if (from && to && from.getTime() >= to.getTime()) errors.from = "From must be earlier than To.";
  return errors;
}

/** The engine's query parameters (`since`/`until` as ISO instants). */
export function filterQuery(filters: HistoryFilters): Query {
  return {
    symbol: filters.symbol.trim() || undefined,
    status: filters.status || undefined,
    since: instant(filters.from)?.toISOString(),
    until: instant(filters.to)?.toISOString(),
  };
}

/** Whether an item that arrived live would be in the filtered list (the engine's own rules). */
export function matchesFilters(item: { symbol?: string; status?: string; created_at?: string }, filters: HistoryFilters): boolean {
  const symbol = filters.symbol.trim().toUpperCase();
  if (symbol && (item.symbol ?? "").toUpperCase() !== symbol) return false;
  if (filters.status && item.status !== filters.status) return false;
  const created = item.created_at ? new Date(item.created_at).getTime() : Number.NaN;
  const from = instant(filters.from);
  const to = instant(filters.to);
  if ((from || to) && Number.isNaN(created)) return false;
  if (from && created < from.getTime()) return false;
  if (to && created >= to.getTime()) return false;
  return true;
}

export function statusLabel(status: string): string {
  return status.replace(/_/g, " ");
}

export function FilterForm({ filters, statuses, onApply, label }: { filters: HistoryFilters; statuses: readonly string[]; onApply: (next: HistoryFilters) => void; label: string }) {
  const [draft, setDraft] = useState(filters);
  const [errors, setErrors] = useState<FilterErrors>({});
  const base = useId();
  const refs = useRef<Partial<Record<keyof HistoryFilters, HTMLInputElement | HTMLSelectElement | null>>>({});
  const id = (field: keyof HistoryFilters) => `${base}-${field}`;

  function submit(event: FormEvent) {
    event.preventDefault();
    const found = validateFilters(draft);
    setErrors(found);
    const first = (["symbol", "status", "from", "to"] as const).find((field) => found[field]);
    if (first) {
      refs.current[first]?.focus();
      return;
    }
    onApply(draft);
  }

  const describe = (field: keyof HistoryFilters) => (errors[field] ? `${id(field)}-error` : undefined);
  const fieldError = (field: keyof HistoryFilters) =>
    errors[field] ? (
      <p id={`${id(field)}-error`} className="field-error">
        {errors[field]}
      </p>
    ) : null;
  const set = (field: keyof HistoryFilters) => (event: { target: { value: string } }) => setDraft((d) => ({ ...d, [field]: event.target.value }));

  return (
    <form className="filters history-filters" onSubmit={submit} noValidate aria-label={`${label} filters`}>
      <div className="field">
        <label htmlFor={id("symbol")}>Symbol</label>
        <input
          id={id("symbol")}
          ref={(el) => {
            refs.current.symbol = el;
          }}
          type="text"
          value={draft.symbol}
          onChange={set("symbol")}
          placeholder="BTCUSDT"
          autoComplete="off"
          spellCheck={false}
          aria-invalid={errors.symbol ? true : undefined}
          aria-describedby={describe("symbol")}
        />
        {fieldError("symbol")}
      </div>
      <div className="field">
        <label htmlFor={id("status")}>Status</label>
        <select
          id={id("status")}
          ref={(el) => {
            refs.current.status = el;
          }}
          value={draft.status}
          onChange={set("status")}
        >
          <option value="">Any</option>
          {statuses.map((status) => (
            <option key={status} value={status}>
              {statusLabel(status)}
            </option>
          ))}
        </select>
      </div>
      <div className="field">
        <label htmlFor={id("from")}>From</label>
        <input
          id={id("from")}
          ref={(el) => {
            refs.current.from = el;
          }}
          type="datetime-local"
          value={draft.from}
          onChange={set("from")}
          aria-invalid={errors.from ? true : undefined}
          aria-describedby={describe("from")}
        />
        {fieldError("from")}
      </div>
      <div className="field">
        <label htmlFor={id("to")}>To</label>
        <input
          id={id("to")}
          ref={(el) => {
            refs.current.to = el;
          }}
          type="datetime-local"
          value={draft.to}
          onChange={set("to")}
          aria-invalid={errors.to ? true : undefined}
          aria-describedby={describe("to")}
        />
        {fieldError("to")}
      </div>
      <div className="field history-actions">
        <button type="submit" className="primary">
          Apply
        </button>
      </div>
    </form>
  );
}

/**
 * Cursor paging: `next_cursor` goes to older items, a stack of the cursors already used comes
 * back. A new `resetKey` (other filters) starts again at the newest page.
 */
export function useCursorPages(resetKey: string) {
  const [state, setState] = useState<{ key: string; stack: Array<string | null>; cursor: string | null }>({ key: resetKey, stack: [], cursor: null });
  const current = state.key === resetKey ? state : { key: resetKey, stack: [], cursor: null };
  if (current !== state) setState(current);
  return {
    cursor: current.cursor,
    isFirst: current.cursor === null,
    hasPrevious: current.stack.length > 0,
    older: (next: string) => setState((s) => ({ key: s.key, stack: [...s.stack, s.cursor], cursor: next })),
    newer: () =>
      setState((s) => {
        if (s.stack.length === 0) return s;
        return { key: s.key, stack: s.stack.slice(0, -1), cursor: s.stack[s.stack.length - 1] ?? null };
      }),
  };
}

/**
 * The frame of a history page: its heading, the filters, a live-region announcement, the
 * loading / empty / error states, the table with the page's own columns, and the pager.
 */
export function HistoryTable<T extends { id: string }>({
  title,
  label,
  statuses,
  filters,
  filterKey,
  onApply,
  announcement,
  page,
  pages,
  head,
  row,
}: {
  title: string;
  /** Singular noun for names: "Signal" → "Signal filters", "Signal pages". */
  label: string;
  statuses: readonly string[];
  filters: HistoryFilters;
  filterKey: string;
  onApply: (next: HistoryFilters) => void;
  announcement: string;
  page: Resource<Page<T>>;
  pages: ReturnType<typeof useCursorPages>;
  head: ReactNode;
  row: (item: T) => ReactNode;
}) {
  const headingId = useId();
  const noun = title.toLowerCase();
  const items = page.data?.items;
  const next = page.data?.next_cursor;
  return (
    <div className="stack history-page">
      <h1>{title}</h1>
      <section className="card" aria-labelledby={headingId}>
        <h2 id={headingId} className="visually-hidden">
          {label} history
        </h2>
        <FilterForm key={filterKey} filters={filters} statuses={statuses} onApply={onApply} label={label} />
        <p role="status" className="visually-hidden">
          {announcement}
        </p>
        <ErrorNotice error={page.error} />
        {page.loading && !items ? (
          <p className="muted">Loading {noun}…</p>
        ) : items && items.length === 0 ? (
          <p className="empty">{pages.isFirst ? `No ${noun} match these filters.` : `No older ${noun}.`}</p>
        ) : items ? (
          <div className="table-wrap">
            <table aria-labelledby={headingId} aria-busy={page.loading || undefined}>
              <thead>
                <tr>{head}</tr>
              </thead>
              <tbody>{items.map(row)}</tbody>
            </table>
          </div>
        ) : null}
        <div className="row pager-row">
          <Pager
            label={label}
            hasPrevious={pages.hasPrevious}
            hasNext={Boolean(next)}
            onPrevious={pages.newer}
            onNext={() => next && pages.older(next)}
          />
        </div>
      </section>
    </div>
  );
}
