// Webhook: where TradingView sends alerts, the tokens that authenticate them (a new one shown
// once), and alert messages ready to paste into TradingView.

import { useEffect, useId, useRef, useState, type FormEvent, type RefObject } from "react";
import { api, ApiError, errorCode, errorMessage, request, UNREACHABLE } from "../api/client";
import type { AuthOptions, WebhookToken, WebhookTokenIssued } from "../api/types";
import { ConfirmAction } from "../components/ConfirmAction";
import { ErrorNotice } from "../components/common";
import { formatTime } from "../lib/format";
import { logger } from "../lib/logger";
import { useResource } from "../lib/useResource";
import "./Webhook.css";

const TOKEN_PLACEHOLDER = "<TOKEN>";

export interface AlertTemplate {
  name: string;
  body: string;
}

/** The alert fields are those of README.md's table; SignalAction's four values, or buy/sell with market_position. */
export const TEMPLATES: AlertTemplate[] = [
  {
    name: "Strategy (any order)",
    body: '{"token": "<TOKEN>", "action": "{{strategy.order.action}}", "market_position": "{{strategy.market_position}}", "symbol": "{{ticker}}", "price": "{{close}}", "alert_id": "{{strategy.order.id}}-{{timenow}}"}',
  },
  {
    name: "Long entry with stop loss and take profit",
    body: '{"token": "<TOKEN>", "action": "long_entry", "symbol": "{{ticker}}", "price": "{{close}}", "stop_loss": "<STOP_LOSS_PRICE>", "take_profit": "<TAKE_PROFIT_PRICE>"}',
  },
  {
    name: "Short entry",
    body: '{"token": "<TOKEN>", "action": "short_entry", "symbol": "{{ticker}}", "price": "{{close}}", "stop_loss": "<STOP_LOSS_PRICE>", "take_profit": "<TAKE_PROFIT_PRICE>"}',
  },
  {
    name: "Close long",
    body: '{"token": "<TOKEN>", "action": "long_exit", "symbol": "{{ticker}}", "price": "{{close}}"}',
  },
  {
    name: "Close short",
    body: '{"token": "<TOKEN>", "action": "short_exit", "symbol": "{{ticker}}", "price": "{{close}}"}',
  },
];

function selectContents(element: HTMLElement): void {
  if (element instanceof HTMLInputElement || element instanceof HTMLTextAreaElement) {
    element.focus();
    element.select();
    return;
  }
  const selection = window.getSelection();
  if (!selection) return;
  const range = document.createRange();
  range.selectNodeContents(element);
  selection.removeAllRanges();
  selection.addRange(range);
}

/** Copy to the clipboard; where the browser refuses, select the text so the user can copy it. */
async function copyText(text: string, fallback: HTMLElement | null): Promise<"copied" | "selected"> {
  try {
    if (navigator.clipboard?.writeText) {
      await navigator.clipboard.writeText(text);
      return "copied";
    }
  } catch {
    // refused (no permission, or not a secure context): fall through to selecting
  }
  if (fallback) selectContents(fallback);
  return "selected";
}

function CopyButton({ text, target, label, ariaLabel }: { text: string; target: RefObject<HTMLElement | null>; label: string; ariaLabel?: string }) {
  const [said, setSaid] = useState("");
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(() => () => {
    if (timer.current) clearTimeout(timer.current);
  }, []);

  async function copy() {
    const outcome = await copyText(text, target.current);
    setSaid(outcome === "copied" ? "Copied" : "Selected: press Ctrl+C (⌘C on a Mac) to copy");
    if (timer.current) clearTimeout(timer.current);
    timer.current = setTimeout(() => setSaid(""), 4000);
  }

  return (
    <span className="copy">
      <button type="button" onClick={() => void copy()} aria-label={ariaLabel}>
        {label}
      </button>
      <span role="status" className="copy-status">
        {said}
      </span>
    </span>
  );
}

function TemplateBlock({ template, token }: { template: AlertTemplate; token: string | null }) {
  const pre = useRef<HTMLPreElement>(null);
  const id = useId();
  const body = token ? template.body.replace(TOKEN_PLACEHOLDER, token) : template.body;
  return (
    <div className="template">
      <div className="row template-head">
        <h3 id={id}>{template.name}</h3>
        <CopyButton text={body} target={pre} label="Copy" ariaLabel={`Copy ${template.name} template`} />
      </div>
      <pre ref={pre} aria-labelledby={id} tabIndex={0}>
        {body}
      </pre>
    </div>
  );
}

function WebhookUrl() {
  const options = useResource((signal) => request<AuthOptions>("/api/auth/options", { anonymous: true, signal }), []);
  const input = useRef<HTMLInputElement>(null);
  const id = useId();
  return (
    <section className="card" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>Your webhook URL</h2>
      {options.loading && !options.data && <p className="muted">Loading…</p>}
      <ErrorNotice error={options.data ? null : options.error} />
      {options.data && (
        <>
          <label htmlFor={id}>Webhook URL</label>
          <div className="row copy-row">
            <input id={id} ref={input} type="text" readOnly value={options.data.webhook_url} onFocus={(event) => event.target.select()} />
            <CopyButton text={options.data.webhook_url} target={input} label="Copy URL" />
          </div>
          <p className="hint">
            In the TradingView alert’s Notifications, turn on “Webhook URL” and paste this address.
          </p>
        </>
      )}
    </section>
  );
}

export function Webhook() {
  const tokens = useResource((signal) => api.get<WebhookToken[]>("/api/webhook-tokens", undefined, signal), []);
  const [name, setName] = useState("");
  const [nameError, setNameError] = useState<string | null>(null);
  const [issueError, setIssueError] = useState<string | null>(null);
  const [issuing, setIssuing] = useState(false);
  // The new token lives only here: never in storage, gone when the page is left.
  const [issued, setIssued] = useState<WebhookTokenIssued | null>(null);
  const [confirming, setConfirming] = useState<string | null>(null);
  const [revoking, setRevoking] = useState(false);
  const [listStatus, setListStatus] = useState("");
  const [listError, setListError] = useState<string | null>(null);
  const tokenBox = useRef<HTMLInputElement>(null);
  const issuedHeading = useRef<HTMLHeadingElement>(null);
  const nameInput = useRef<HTMLInputElement>(null);
  const id = useId();

  useEffect(() => {
    if (issued) issuedHeading.current?.focus();
  }, [issued]);

  async function issue(event: FormEvent) {
    event.preventDefault();
    if (issuing) return;
    const trimmed = name.trim();
    setIssueError(null);
    if (!trimmed) {
      setNameError("Enter a name for the token, such as the strategy it is for.");
      nameInput.current?.focus();
      return;
    }
    setNameError(null);
    setIssuing(true);
    try {
      const created = await api.post<WebhookTokenIssued>("/api/webhook-tokens", { name: trimmed });
      setIssued(created);
      setName("");
      const listed: WebhookToken = {
        id: created.id,
        name: created.name,
        token_prefix: created.token_prefix,
        created_at: created.created_at,
        last_used_at: created.last_used_at,
        revoked_at: created.revoked_at,
      };
      tokens.setData((list) => [listed, ...(list ?? [])]);
      logger.info("settings", "webhook token issued", { token_id: created.id });
    } catch (exc) {
      if (exc instanceof ApiError) {
        logger.warn("settings", "webhook token refused", { status: exc.status, code: exc.code });
        if (exc.field === "name") {
          setNameError(exc.message);
          nameInput.current?.focus();
        } else setIssueError(exc.message);
      } else {
        setIssueError(UNREACHABLE);
      }
    } finally {
      setIssuing(false);
    }
  }

  async function revoke(token: WebhookToken) {
    setRevoking(true);
    setListError(null);
    try {
      const revoked = await api.delete<WebhookToken | undefined>(`/api/webhook-tokens/${encodeURIComponent(token.id)}`);
      const now = new Date().toISOString();
      tokens.setData((list) =>
        (list ?? []).map((item) => (item.id === token.id ? (revoked ?? { ...item, revoked_at: now }) : item)),
      );
      if (issued?.id === token.id) setIssued(null);
      setConfirming(null);
      setListStatus(`Token ${token.name} revoked: alerts that use it are now refused.`);
      logger.info("settings", "webhook token revoked", { token_id: token.id });
    } catch (exc) {
      setListError(errorMessage(exc));
      logger.warn("settings", "webhook token revoke failed", { code: errorCode(exc) });
    } finally {
      setRevoking(false);
    }
  }

  const list = tokens.data ?? [];

  return (
    <section className="stack webhook-page" aria-labelledby={`${id}-title`}>
      <h1 id={`${id}-title`}>Webhook</h1>

      <WebhookUrl />

      <section className="card" aria-labelledby={`${id}-tokens`}>
        <h2 id={`${id}-tokens`}>Webhook tokens</h2>
        <p className="muted">Each alert carries a token: it says whose alert it is. Revoke a token you no longer use or that leaked.</p>
        {tokens.loading && !tokens.data && <p className="muted">Loading tokens…</p>}
        <ErrorNotice error={tokens.data ? null : tokens.error} />
        {listError && (
          <p role="alert" className="notice error">
            {listError}
          </p>
        )}
        <p role="status" className="webhook-status">
          {listStatus}
        </p>
        {tokens.data && list.length === 0 && <p className="empty">No tokens yet: issue one below.</p>}
        {list.length > 0 && (
          <div className="table-wrap">
            <table>
              <caption className="visually-hidden">Your webhook tokens</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Token</th>
                  <th scope="col">Created</th>
                  <th scope="col">Last used</th>
                  <th scope="col">Status</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {list.map((token) => (
                  <tr key={token.id}>
                    <td>{token.name}</td>
                    <td className="mono">{token.token_prefix}…</td>
                    <td>{formatTime(token.created_at)}</td>
                    <td>{token.last_used_at ? formatTime(token.last_used_at) : "Never"}</td>
                    <td>
                      {token.revoked_at ? (
                        <span className="badge neutral" title={`Revoked ${formatTime(token.revoked_at)}`}>
                          revoked
                        </span>
                      ) : (
                        <span className="badge ok">active</span>
                      )}
                    </td>
                    <td>
                      {!token.revoked_at && (
                        <ConfirmAction
                          label="Revoke"
                          ariaLabel={`Revoke token ${token.name} (${token.token_prefix})`}
                          groupLabel={`Confirm revoking token ${token.name}`}
                          warning="Alerts with this token will be refused."
                          confirmLabel="Yes, revoke"
                          open={confirming === token.id}
                          busy={revoking}
                          onOpen={() => {
                            setListStatus("");
                            setConfirming(token.id);
                          }}
                          onCancel={() => setConfirming(null)}
                          onConfirm={() => void revoke(token)}
                        />
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}

        {issued && (
          <div className="issued" role="region" aria-labelledby={`${id}-issued`}>
            <h3 id={`${id}-issued`} ref={issuedHeading} tabIndex={-1}>
              New token “{issued.name}”
            </h3>
            <p className="issued-warning">
              <strong>Copy it now: it will not be shown again.</strong> Anyone who has it can send alerts as you.
            </p>
            <label htmlFor={`${id}-new-token`}>New webhook token</label>
            <div className="row copy-row">
              <input
                id={`${id}-new-token`}
                ref={tokenBox}
                type="text"
                className="mono"
                readOnly
                autoComplete="off"
                spellCheck={false}
                value={issued.token}
                onFocus={(event) => event.target.select()}
              />
              <CopyButton text={issued.token} target={tokenBox} label="Copy token" />
            </div>
            <p className="hint">It is filled into the alert messages below until you leave this page.</p>
            <button type="button" onClick={() => setIssued(null)}>
              Hide token
            </button>
          </div>
        )}

        <form className="issue-form" onSubmit={(event) => void issue(event)} noValidate>
          <h3>Issue a token</h3>
          {issueError && (
            <p role="alert" className="notice error">
              {issueError}
            </p>
          )}
          <div className="row issue-row">
            <div className="field">
              <label htmlFor={`${id}-name`}>Token name</label>
              <input
                id={`${id}-name`}
                ref={nameInput}
                type="text"
                value={name}
                maxLength={100}
                autoComplete="off"
                onChange={(event) => {
                  setName(event.target.value);
                  if (nameError) setNameError(null);
                }}
                aria-invalid={nameError ? true : undefined}
                aria-describedby={nameError ? `${id}-name-error ${id}-name-hint` : `${id}-name-hint`}
              />
              <p id={`${id}-name-hint`} className="hint">
                A name to recognise it by, such as the strategy or chart it is for.
              </p>
              {nameError && (
                <p id={`${id}-name-error`} className="field-error">
                  {nameError}
                </p>
              )}
            </div>
            <button type="submit" className="primary" disabled={issuing}>
              Issue token
            </button>
          </div>
        </form>
      </section>

      <section className="card" aria-labelledby={`${id}-templates`}>
        <h2 id={`${id}-templates`}>TradingView alert messages</h2>
        <p>
          Paste one into the alert’s <em>Message</em> box. TradingView must send the alert to your webhook URL above; the engine
          answers within TradingView’s 3-second limit and executes the order right after.
        </p>
        <p className="hint">
          {issued
            ? "Your new token is filled in. Replace <STOP_LOSS_PRICE> and <TAKE_PROFIT_PRICE> with prices, or remove those fields."
            : "Replace <TOKEN> with one of your tokens (issue one above and it is filled in here), and <STOP_LOSS_PRICE> and <TAKE_PROFIT_PRICE> with prices, or remove those fields."}{" "}
          The {"{{…}}"} placeholders are filled in by TradingView.
        </p>
        <div className="stack">
          {TEMPLATES.map((template) => (
            <TemplateBlock key={template.name} template={template} token={issued?.token ?? null} />
          ))}
        </div>
      </section>
    </section>
  );
}
