// Risk settings: the limits every entry is checked against and the notifications wanted. Only
// the fields the user changed are sent, decimals as the text typed; the engine's 422 is the
// one authority on ranges and precision, shown on the field it names.

import { useEffect, useId, useRef, useState, type FormEvent } from "react";
import { ApiError, api } from "../api/client";
import type { RiskSettings as Settings, RiskSettingsUpdate } from "../api/types";
import { ErrorNotice } from "../components/common";
import { plainDecimal, formatTime } from "../lib/format";
import { logger } from "../lib/logger";
import { useResource } from "../lib/useResource";
import "./RiskSettings.css";

type NumberKey =
  | "max_position_size_usd"
  | "max_leverage"
  | "max_open_positions"
  | "max_daily_trades"
  | "max_daily_loss_percent"
  | "max_portfolio_exposure_percent"
  | "default_risk_per_trade_percent";
type FlagKey = "require_stop_loss" | "notify_on_trade" | "notify_on_stop_loss" | "notify_on_daily_loss_limit";
type FieldKey = NumberKey | FlagKey;

interface NumberField {
  key: NumberKey;
  label: string;
  hint: string;
  integer: boolean;
}

const NUMBER_FIELDS: NumberField[] = [
  {
    key: "max_position_size_usd",
    label: "Max position size (USD)",
    hint: "The largest notional value one position may have. More than 0, up to 1,000,000,000,000, at most 2 decimals.",
    integer: false,
  },
  {
    key: "max_leverage",
    label: "Max leverage",
    hint: "The highest leverage an alert may ask for. A whole number from 1 to 125.",
    integer: true,
  },
  {
    key: "max_open_positions",
    label: "Max open positions",
    hint: "How many positions may be open at once. A whole number from 0 to 1,000; 0 blocks every entry.",
    integer: true,
  },
  {
    key: "max_daily_trades",
    label: "Max daily trades",
    hint: "How many entries may be placed per day (from 00:00 UTC). A whole number from 0 to 100,000.",
    integer: true,
  },
  {
    key: "max_daily_loss_percent",
    label: "Max daily loss (%)",
    hint: "Entries stop for the day once the day's realised loss reaches this share of equity. More than 0, up to 100, at most 2 decimals.",
    integer: false,
  },
  {
    key: "max_portfolio_exposure_percent",
    label: "Max portfolio exposure (%)",
    hint: "The most of your equity all open positions together may represent. More than 0, up to 100, at most 2 decimals.",
    integer: false,
  },
  {
    key: "default_risk_per_trade_percent",
    label: "Risk per trade (%)",
    hint: "The share of equity an entry risks between its price and its stop loss, used when the alert gives no size. More than 0, up to 100, at most 2 decimals.",
    integer: false,
  },
];

const FLAG_FIELDS: Array<{ key: FlagKey; label: string; hint: string }> = [
  {
    key: "require_stop_loss",
    label: "Require a stop loss on every entry",
    hint: "Entries whose alert has no stop_loss are rejected.",
  },
  { key: "notify_on_trade", label: "Notify on every trade", hint: "A notification for each order that is executed." },
  { key: "notify_on_stop_loss", label: "Notify when a stop loss triggers", hint: "A notification when a position is closed by its stop." },
  {
    key: "notify_on_daily_loss_limit",
    label: "Notify when the daily loss limit is reached",
    hint: "A notification when entries stop for the day because of the loss limit.",
  },
];

const FIELD_KEYS = new Set<string>([...NUMBER_FIELDS.map((f) => f.key), ...FLAG_FIELDS.map((f) => f.key)]);

type FormValues = Record<NumberKey, string> & Record<FlagKey, boolean>;

function toForm(settings: Settings): FormValues {
  return {
    max_position_size_usd: settings.max_position_size_usd,
    max_leverage: String(settings.max_leverage),
    max_open_positions: String(settings.max_open_positions),
    max_daily_trades: String(settings.max_daily_trades),
    max_daily_loss_percent: settings.max_daily_loss_percent,
    max_portfolio_exposure_percent: settings.max_portfolio_exposure_percent,
    default_risk_per_trade_percent: settings.default_risk_per_trade_percent,
    require_stop_loss: settings.require_stop_loss,
    notify_on_trade: settings.notify_on_trade,
    notify_on_stop_loss: settings.notify_on_stop_loss,
    notify_on_daily_loss_limit: settings.notify_on_daily_loss_limit,
  };
}

const DECIMAL_TEXT = /^[+-]?(\d+(\.\d*)?|\.\d+)$/;
const INTEGER_TEXT = /^[+-]?\d+$/;

/** The same number written two ways ("100" and "100.00") is not a change. */
function canonical(text: string): string {
  const plain = plainDecimal(text.trim().replace(/^\+/, "").replace(/\.$/, ""));
  const [whole = "0", fraction = ""] = plain.split(".");
  const trimmed = fraction.replace(/0+$/, "");
  return trimmed ? `${whole}.${trimmed}` : whole;
}

/** What the user typed, as the engine should get it: a decimal stays text, an integer is a JSON number when exact. */
function outgoing(field: NumberField, text: string): string | number {
  const value = text.trim();
  if (field.integer) {
    const parsed = Number.parseInt(value, 10);
    return Number.isSafeInteger(parsed) ? parsed : value;
  }
  return value;
}

/** The field a 422 names: `max_leverage`, or a path ending in it (`body.max_leverage`). */
function knownField(field: string | null): FieldKey | null {
  if (!field) return null;
  if (FIELD_KEYS.has(field)) return field as FieldKey;
  const last = field.split(".").pop() ?? "";
  return FIELD_KEYS.has(last) ? (last as FieldKey) : null;
}

export function RiskSettings() {
  const resource = useResource((signal) => api.get<Settings>("/api/risk-settings", undefined, signal), []);
  const { data: loaded, setData } = resource;
  const [values, setValues] = useState<FormValues | null>(null);
  const [errors, setErrors] = useState<Partial<Record<FieldKey, string>>>({});
  const [topError, setTopError] = useState<string | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);
  const [focusField, setFocusField] = useState<FieldKey | null>(null);
  const inputs = useRef<Partial<Record<FieldKey, HTMLInputElement | null>>>({});
  const baseId = useId();

  useEffect(() => {
    if (loaded) setValues(toForm(loaded));
  }, [loaded]);

  useEffect(() => {
    if (!focusField) return;
    inputs.current[focusField]?.focus();
    setFocusField(null);
  }, [focusField]);

  const idFor = (key: FieldKey) => `${baseId}-${key}`;

  function changes(current: FormValues, original: Settings): RiskSettingsUpdate {
    const originalForm = toForm(original);
    const update: Record<string, string | number | boolean> = {};
    for (const field of NUMBER_FIELDS) {
      if (canonical(current[field.key]) !== canonical(originalForm[field.key])) update[field.key] = outgoing(field, current[field.key]);
    }
    for (const field of FLAG_FIELDS) {
      if (current[field.key] !== originalForm[field.key]) update[field.key] = current[field.key];
    }
    // Decimal fields travel as strings (the engine parses them exactly), so the wire shape is
    // looser than the read type.
    return update as RiskSettingsUpdate;
  }

  function validate(current: FormValues): Partial<Record<FieldKey, string>> {
    const found: Partial<Record<FieldKey, string>> = {};
    for (const field of NUMBER_FIELDS) {
      const text = current[field.key].trim();
      if (text === "") found[field.key] = `${field.label}: enter a value.`;
      else if (!(field.integer ? INTEGER_TEXT : DECIMAL_TEXT).test(text))
        found[field.key] = field.integer ? `${field.label}: enter a whole number.` : `${field.label}: enter a number, such as 12.5.`;
    }
    return found;
  }

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!values || !loaded || saving) return;
    setStatus(null);
    setTopError(null);
    const invalid = validate(values);
    setErrors(invalid);
    const first = NUMBER_FIELDS.find((field) => invalid[field.key]);
    if (first) {
      setFocusField(first.key);
      return;
    }
    const update = changes(values, loaded);
    const fields = Object.keys(update);
    if (fields.length === 0) {
      setStatus("Nothing to save: no setting was changed.");
      return;
    }
    setSaving(true);
    try {
      const saved = await api.put<Settings>("/api/risk-settings", update);
      setData(saved);
      setValues(toForm(saved));
      setStatus("Risk settings saved.");
      logger.info("settings", "risk settings saved", { fields: fields.join(",") });
    } catch (exc) {
      if (exc instanceof ApiError) {
        const key = knownField(exc.field);
        logger.warn("settings", "risk settings refused", { status: exc.status, code: exc.code, field: exc.field ?? "" });
        if (key) {
          setErrors({ [key]: exc.fieldMessage });
          setFocusField(key);
        } else {
          setTopError(exc.message);
        }
      } else {
        logger.warn("settings", "risk settings not saved", { code: "network" });
        setTopError("The engine could not be reached. Your changes are still in the form.");
      }
    } finally {
      setSaving(false);
    }
  }

  function reset() {
    if (!loaded) return;
    setValues(toForm(loaded));
    setErrors({});
    setTopError(null);
    setStatus(null);
  }

  function describedBy(key: FieldKey): string {
    return errors[key] ? `${idFor(key)}-error ${idFor(key)}-hint` : `${idFor(key)}-hint`;
  }

  return (
    <section className="stack risk-settings" aria-labelledby={`${baseId}-title`}>
      <h1 id={`${baseId}-title`}>Risk settings</h1>
      <p className="muted">
        Every entry is checked against these limits before an order is placed; exits are always allowed.
      </p>
      {resource.loading && !values && (
        <p role="status" className="muted">
          Loading risk settings…
        </p>
      )}
      <ErrorNotice error={values ? null : resource.error} />
      {values && (
        <form className="card" onSubmit={(event) => void submit(event)} noValidate>
          {topError && (
            <p role="alert" className="notice error">
              {topError}
            </p>
          )}
          <fieldset className="risk-group">
            <legend>Limits</legend>
            <div className="risk-grid">
              {NUMBER_FIELDS.map((field) => {
                const id = idFor(field.key);
                return (
                  <div className="field" key={field.key}>
                    <label htmlFor={id}>{field.label}</label>
                    <input
                      id={id}
                      ref={(element) => {
                        inputs.current[field.key] = element;
                      }}
                      name={field.key}
                      type="text"
                      inputMode={field.integer ? "numeric" : "decimal"}
                      autoComplete="off"
                      spellCheck={false}
                      value={values[field.key]}
                      onChange={(event) => {
                        const text = event.target.value;
                        setValues((current) => (current ? { ...current, [field.key]: text } : current));
                      }}
                      aria-invalid={errors[field.key] ? true : undefined}
                      aria-describedby={describedBy(field.key)}
                    />
                    <p id={`${id}-hint`} className="hint">
                      {field.hint}
                    </p>
                    {errors[field.key] && (
                      <p id={`${id}-error`} className="field-error">
                        {errors[field.key]}
                      </p>
                    )}
                  </div>
                );
              })}
            </div>
          </fieldset>
          <fieldset className="risk-group">
            <legend>Checks and notifications</legend>
            {FLAG_FIELDS.map((field) => {
              const id = idFor(field.key);
              return (
                <div className="field" key={field.key}>
                  <div className="check">
                    <input
                      id={id}
                      ref={(element) => {
                        inputs.current[field.key] = element;
                      }}
                      name={field.key}
                      type="checkbox"
                      checked={values[field.key]}
                      onChange={(event) => {
                        const checked = event.target.checked;
                        setValues((current) => (current ? { ...current, [field.key]: checked } : current));
                      }}
                      aria-invalid={errors[field.key] ? true : undefined}
                      aria-describedby={describedBy(field.key)}
                    />
                    <label htmlFor={id}>{field.label}</label>
                  </div>
                  <p id={`${id}-hint`} className="hint">
                    {field.hint}
                  </p>
                  {errors[field.key] && (
                    <p id={`${id}-error`} className="field-error">
                      {errors[field.key]}
                    </p>
                  )}
                </div>
              );
            })}
          </fieldset>
          <div className="row">
            <button type="submit" className="primary" disabled={saving}>
              Save
            </button>
            <button type="button" onClick={reset} disabled={saving}>
              Reset
            </button>
            {loaded && <span className="muted">Last changed {formatTime(loaded.updated_at)}</span>}
          </div>
          <p role="status" className={status === "Risk settings saved." ? "notice success risk-status" : "risk-status"}>
            {status}
          </p>
        </form>
      )}
    </section>
  );
}
