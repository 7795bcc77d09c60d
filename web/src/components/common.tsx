// Small shared pieces: money with its sign coloured, status badges, error notices, pagination.

import { ApiError, UNREACHABLE } from "../api/client";
import { decimalSign, formatDecimal } from "../lib/format";

export function Money({ value, places = 2, signed = false, currency }: { value: string | null | undefined; places?: number; signed?: boolean; currency?: string }) {
  const sign = signed ? decimalSign(value) : 0;
  const cls = sign > 0 ? "positive" : sign < 0 ? "negative" : undefined;
  return (
    <span className={cls}>
      {formatDecimal(value, places, signed)}
      {currency && value ? ` ${currency}` : ""}
    </span>
  );
}

const STATUS_TONE: Record<string, string> = {
  executed: "ok",
  filled: "ok",
  open: "info",
  queued: "neutral",
  executing: "info",
  pending: "neutral",
  partially_filled: "info",
  rejected: "bad",
  failed: "bad",
  canceled: "neutral",
  closed: "neutral",
  skipped: "warn",
  logged: "neutral",
};

export function StatusBadge({ status }: { status: string }) {
  return <span className={`badge ${STATUS_TONE[status] ?? "neutral"}`}>{status.replace(/_/g, " ")}</span>;
}

export function ErrorNotice({ error }: { error: Error | null }) {
  if (!error) return null;
  const text = error instanceof ApiError ? `${error.message} (${error.code})` : UNREACHABLE;
  return (
    <p role="alert" className="notice error">
      {text}
    </p>
  );
}

export function Pager({ hasPrevious, hasNext, onPrevious, onNext, label }: { hasPrevious: boolean; hasNext: boolean; onPrevious: () => void; onNext: () => void; label: string }) {
  return (
    <nav className="row" aria-label={`${label} pages`}>
      <button type="button" onClick={onPrevious} disabled={!hasPrevious}>
        Newer
      </button>
      <button type="button" onClick={onNext} disabled={!hasNext}>
        Older
      </button>
    </nav>
  );
}
