// A destructive action behind an inline confirmation: the button turns into a short warning with
// "Yes, …" and Cancel. Focus moves to Cancel when the step opens and back to the button when it
// is cancelled. The page decides which one is open, so at most one is.

import { useEffect, useRef, type ReactNode } from "react";

export function ConfirmAction({
  label,
  ariaLabel,
  groupLabel,
  warning,
  confirmLabel,
  open,
  busy,
  onOpen,
  onCancel,
  onConfirm,
}: {
  label: string;
  ariaLabel: string;
  groupLabel: string;
  warning: ReactNode;
  confirmLabel: string;
  open: boolean;
  busy: boolean;
  onOpen: () => void;
  onCancel: () => void;
  onConfirm: () => void;
}) {
  const trigger = useRef<HTMLButtonElement>(null);
  const cancel = useRef<HTMLButtonElement>(null);
  const cancelled = useRef(false);

  useEffect(() => {
    if (open) cancel.current?.focus();
    else if (cancelled.current) {
      cancelled.current = false;
      trigger.current?.focus();
    }
  }, [open]);

  if (!open) {
    return (
      <button type="button" className="danger" ref={trigger} aria-label={ariaLabel} onClick={onOpen}>
        {label}
      </button>
    );
  }
  return (
    <span className="row confirm" role="group" aria-label={groupLabel}>
      <span>{warning}</span>
      <button type="button" className="danger" disabled={busy} onClick={onConfirm}>
        {confirmLabel}
      </button>
      <button
        type="button"
        ref={cancel}
        disabled={busy}
        onClick={() => {
          cancelled.current = true;
          onCancel();
        }}
      >
        Cancel
      </button>
    </span>
  );
}
