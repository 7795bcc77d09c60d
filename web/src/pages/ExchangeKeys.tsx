// Exchange keys: the user's Binance and Bybit API keys, masked, with adding and removing. A key's
// secret only ever travels to the engine, once; it is cleared from the form whatever the answer.

import { useEffect, useId, useRef, useState, type FormEvent } from "react";
import { api, ApiError, errorCode, errorMessage } from "../api/client";
import type { ExchangeKey, ExchangeKeyIn } from "../api/types";
import { ConfirmAction } from "../components/ConfirmAction";
import { ErrorNotice } from "../components/common";
import { formatTime, titleCase } from "../lib/format";
import { logger } from "../lib/logger";
import { useResource } from "../lib/useResource";
import "./ExchangeKeys.css";

type FormField = "exchange" | "mode" | "label" | "api_key" | "api_secret" | "passphrase";
const FORM_FIELDS = new Set<string>(["exchange", "mode", "label", "api_key", "api_secret", "passphrase"]);

const EXCHANGES = ["binance", "bybit"] as const;

function keyName(key: ExchangeKey): string {
  return key.label?.trim() || key.api_key_hint;
}

function Permissions({ value }: { value: ExchangeKey["permissions"] }) {
  const allowed = [value.can_read && "read", value.can_trade && "trade"].filter(Boolean).join(", ");
  return (
    <span>
      {allowed || "none"}
      {value.can_withdraw && (
        <>
          {" "}
          <span className="badge bad">can withdraw</span>
        </>
      )}
    </span>
  );
}

function KeyStatus({ item }: { item: ExchangeKey }) {
  if (!item.is_active) return <span className="badge neutral">removed</span>;
  return item.is_valid ? <span className="badge ok">valid</span> : <span className="badge bad">invalid</span>;
}

export function ExchangeKeys() {
  const keys = useResource((signal) => api.get<ExchangeKey[]>("/api/exchange-keys", undefined, signal), []);
  const [exchange, setExchange] = useState<string>("binance");
  const [mode, setMode] = useState<string>("live");
  const [label, setLabel] = useState("");
  const [apiKey, setApiKey] = useState("");
  const [apiSecret, setApiSecret] = useState("");
  const [passphrase, setPassphrase] = useState("");
  const [errors, setErrors] = useState<Partial<Record<FormField, string>>>({});
  const [topError, setTopError] = useState<string | null>(null);
  const [added, setAdded] = useState<string>("");
  const [adding, setAdding] = useState(false);
  const [focusField, setFocusField] = useState<FormField | null>(null);
  const [confirming, setConfirming] = useState<string | null>(null);
  const [removing, setRemoving] = useState(false);
  const [listStatus, setListStatus] = useState("");
  const [listError, setListError] = useState<string | null>(null);
  const fields = useRef<Partial<Record<FormField, HTMLInputElement | HTMLSelectElement | null>>>({});
  const id = useId();

  useEffect(() => {
    if (!focusField) return;
    fields.current[focusField]?.focus();
    setFocusField(null);
  }, [focusField]);

  const fid = (field: FormField) => `${id}-${field}`;
  const bind = (field: FormField) => (element: HTMLInputElement | HTMLSelectElement | null) => {
    fields.current[field] = element;
  };
  const described = (field: FormField, hint: boolean) =>
    [errors[field] ? `${fid(field)}-error` : "", hint ? `${fid(field)}-hint` : ""].filter(Boolean).join(" ") || undefined;

  function fieldError(field: FormField) {
    const message = errors[field];
    return message ? (
      <p id={`${fid(field)}-error`} className="field-error">
        {message}
      </p>
    ) : null;
  }

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (adding) return;
    setTopError(null);
    setAdded("");
    const missing: Partial<Record<FormField, string>> = {};
    if (!apiKey.trim()) missing.api_key = "Enter the API key.";
    if (!apiSecret.trim()) missing.api_secret = "Enter the API secret.";
    setErrors(missing);
    if (missing.api_key || missing.api_secret) {
      setFocusField(missing.api_key ? "api_key" : "api_secret");
      return;
    }
    const body: ExchangeKeyIn = { exchange, mode, api_key: apiKey.trim(), api_secret: apiSecret.trim() };
    if (label.trim()) body.label = label.trim();
    if (passphrase) body.passphrase = passphrase;
    // The secrets leave the form now, before the answer: they are never shown again either way.
    setApiKey("");
    setApiSecret("");
    setPassphrase("");
    setAdding(true);
    try {
      const created = await api.post<ExchangeKey>("/api/exchange-keys", body);
      setAdded(`Key added: ${titleCase(created.exchange)} ${created.mode} key ${created.api_key_hint}.`);
      setLabel("");
      keys.setData((list) => [created, ...(list ?? []).filter((item) => item.id !== created.id)]);
      // Adding may retire an older key for the same exchange and mode: read the list back.
      keys.reload();
      logger.info("settings", "exchange key added", { exchange: created.exchange, mode: created.mode });
    } catch (exc) {
      if (exc instanceof ApiError) {
        logger.warn("settings", "exchange key refused", { status: exc.status, code: exc.code, field: exc.field ?? "" });
        const field = exc.field && FORM_FIELDS.has(exc.field) ? (exc.field as FormField) : null;
        if (field) {
          setErrors({ [field]: exc.fieldMessage });
          setFocusField(field);
        } else {
          setTopError(exc.message);
        }
      } else {
        logger.warn("settings", "exchange key not added", { code: "network" });
        setTopError("The engine could not be reached. Nothing was stored; enter the key again to retry.");
      }
    } finally {
      setAdding(false);
    }
  }

  async function remove(key: ExchangeKey) {
    setRemoving(true);
    setListError(null);
    try {
      await api.delete<void>(`/api/exchange-keys/${encodeURIComponent(key.id)}`);
      keys.setData((list) => (list ?? []).map((item) => (item.id === key.id ? { ...item, is_active: false } : item)));
      setConfirming(null);
      setListStatus(`Removed the ${titleCase(key.exchange)} key ${keyName(key)}.`);
      logger.info("settings", "exchange key removed", { exchange: key.exchange, mode: key.mode });
    } catch (exc) {
      setListError(errorMessage(exc));
      logger.warn("settings", "exchange key remove failed", { code: errorCode(exc) });
    } finally {
      setRemoving(false);
    }
  }

  const list = keys.data ?? [];

  return (
    <section className="stack exchange-keys" aria-labelledby={`${id}-title`}>
      <h1 id={`${id}-title`}>Exchange keys</h1>
      <p className="muted">
        Alerts are executed on the paper exchange by default, which needs no key. Add a key to trade on Binance or Bybit; the
        engine stores it encrypted and only ever shows its last four characters.
      </p>

      <section className="card" aria-labelledby={`${id}-list`}>
        <h2 id={`${id}-list`}>Your keys</h2>
        {keys.loading && !keys.data && <p className="muted">Loading keys…</p>}
        <ErrorNotice error={keys.data ? null : keys.error} />
        {listError && (
          <p role="alert" className="notice error">
            {listError}
          </p>
        )}
        <p role="status" className="keys-status">
          {listStatus}
        </p>
        {keys.data && list.length === 0 && <p className="empty">No exchange keys: alerts go to the paper exchange.</p>}
        {list.length > 0 && (
          <div className="table-wrap">
            <table>
              <caption className="visually-hidden">Your exchange keys</caption>
              <thead>
                <tr>
                  <th scope="col">Exchange</th>
                  <th scope="col">Mode</th>
                  <th scope="col">Label</th>
                  <th scope="col">Key</th>
                  <th scope="col">Permissions</th>
                  <th scope="col">Status</th>
                  <th scope="col">Created</th>
                  <th scope="col">Last used</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {list.map((key) => (
                  <tr key={key.id}>
                    <td>{titleCase(key.exchange)}</td>
                    <td>{key.mode}</td>
                    <td>{key.label || <span className="muted">—</span>}</td>
                    <td className="mono">{key.api_key_hint}</td>
                    <td>
                      <Permissions value={key.permissions} />
                    </td>
                    <td>
                      <KeyStatus item={key} />
                    </td>
                    <td>{formatTime(key.created_at)}</td>
                    <td>{key.last_used_at ? formatTime(key.last_used_at) : "Never"}</td>
                    <td>
                      {key.is_active && (
                        <ConfirmAction
                          label="Remove"
                          ariaLabel={`Remove ${key.exchange} key ${keyName(key)}`}
                          groupLabel={`Confirm removing ${key.exchange} key ${keyName(key)}`}
                          warning="Orders stop using this key."
                          confirmLabel="Yes, remove"
                          open={confirming === key.id}
                          busy={removing}
                          onOpen={() => {
                            setListStatus("");
                            setConfirming(key.id);
                          }}
                          onCancel={() => setConfirming(null)}
                          onConfirm={() => void remove(key)}
                        />
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>

      <section className="card" aria-labelledby={`${id}-add`}>
        <h2 id={`${id}-add`}>Add a key</h2>
        <p className="hint add-intro">
          Create the key on the exchange with futures trading allowed and withdrawals off: the engine checks it with the exchange and
          refuses a key that can withdraw.
        </p>
        <form onSubmit={(event) => void submit(event)} noValidate autoComplete="off">
          {topError && (
            <p role="alert" className="notice error">
              {topError}
            </p>
          )}
          <div className="keys-grid">
            <div className="field">
              <label htmlFor={fid("exchange")}>Exchange</label>
              <select
                id={fid("exchange")}
                ref={bind("exchange")}
                value={exchange}
                onChange={(event) => setExchange(event.target.value)}
                aria-invalid={errors.exchange ? true : undefined}
                aria-describedby={described("exchange", false)}
              >
                {EXCHANGES.map((name) => (
                  <option key={name} value={name}>
                    {titleCase(name)}
                  </option>
                ))}
              </select>
              {fieldError("exchange")}
            </div>
            <div className="field">
              <label htmlFor={fid("mode")}>Mode</label>
              <select
                id={fid("mode")}
                ref={bind("mode")}
                value={mode}
                onChange={(event) => setMode(event.target.value)}
                aria-invalid={errors.mode ? true : undefined}
                aria-describedby={described("mode", true)}
              >
                <option value="live">live</option>
                <option value="demo">demo</option>
              </select>
              <p id={`${fid("mode")}-hint`} className="hint">
                Live trades real funds. Demo uses the exchange’s own demo-trading environment (a demo key, made there).
              </p>
              {fieldError("mode")}
            </div>
            <div className="field">
              <label htmlFor={fid("label")}>Label</label>
              <input
                id={fid("label")}
                ref={bind("label")}
                type="text"
                value={label}
                maxLength={100}
                onChange={(event) => setLabel(event.target.value)}
                aria-invalid={errors.label ? true : undefined}
                aria-describedby={described("label", true)}
              />
              <p id={`${fid("label")}-hint`} className="hint">
                Optional: a name to tell your keys apart.
              </p>
              {fieldError("label")}
            </div>
            <div className="field">
              <label htmlFor={fid("api_key")}>API key</label>
              <input
                id={fid("api_key")}
                ref={bind("api_key")}
                type="text"
                value={apiKey}
                autoComplete="off"
                spellCheck={false}
                autoCapitalize="off"
                onChange={(event) => setApiKey(event.target.value)}
                aria-invalid={errors.api_key ? true : undefined}
                aria-describedby={described("api_key", false)}
              />
              {fieldError("api_key")}
            </div>
            <div className="field">
              <label htmlFor={fid("api_secret")}>API secret</label>
              <input
                id={fid("api_secret")}
                ref={bind("api_secret")}
                type="password"
                value={apiSecret}
                autoComplete="off"
                spellCheck={false}
                onChange={(event) => setApiSecret(event.target.value)}
                aria-invalid={errors.api_secret ? true : undefined}
                aria-describedby={described("api_secret", false)}
              />
              {fieldError("api_secret")}
            </div>
            <div className="field">
              <label htmlFor={fid("passphrase")}>Passphrase</label>
              <input
                id={fid("passphrase")}
                ref={bind("passphrase")}
                type="password"
                value={passphrase}
                autoComplete="off"
                spellCheck={false}
                onChange={(event) => setPassphrase(event.target.value)}
                aria-invalid={errors.passphrase ? true : undefined}
                aria-describedby={described("passphrase", true)}
              />
              <p id={`${fid("passphrase")}-hint`} className="hint">
                Optional: only if the exchange gave the key one.
              </p>
              {fieldError("passphrase")}
            </div>
          </div>
          <div className="row">
            <button type="submit" className="primary" disabled={adding}>
              Add key
            </button>
            <span role="status" className="keys-added">
              {adding ? "Checking the key with the exchange…" : added}
            </span>
          </div>
        </form>
      </section>
    </section>
  );
}
