// The assistant: a floating button that opens a panel where the signed-in user asks about the
// platform and their account, with the answer streamed in as it is written.

import { useCallback, useEffect, useId, useRef, useState, type KeyboardEvent, type ReactNode } from "react";
import Markdown, { type Components, type UrlTransform } from "react-markdown";
import { ApiError, authHeaders, errorFrom, UNREACHABLE } from "../api/client";
import { formatTime } from "../lib/format";
import { logger } from "../lib/logger";
import { readSse } from "./sse";
import "./ChatWidget.css";

export interface ChatSource {
  number: number;
  document: string;
  title: string;
  score?: number;
  similarity?: number;
}

type MessageState = "streaming" | "complete" | "incomplete" | "stopped";

interface ChatMessage {
  id: number;
  role: "user" | "assistant";
  content: string;
  state: MessageState;
  mode?: string;
  sources?: ChatSource[];
}

const STREAM_URL = "/api/chat/stream";
const TIER_MESSAGE = "The assistant is part of the Pro and Enterprise plans.";
const SAFE_PROTOCOL = /^(https?|mailto):/i;

/** Only absolute http, https and mailto links survive: anything else (javascript:, data:, relative) is dropped. */
export const safeUrl: UrlTransform = (url, key) => {
  if (key !== "href") return null;
  return SAFE_PROTOCOL.test(url.trim()) ? url : null;
};

const MARKDOWN_COMPONENTS: Components = {
  a({ href, children }) {
    if (!href) return <span>{children}</span>;
    return (
      <a href={href} target="_blank" rel="noopener noreferrer">
        {children}
      </a>
    );
  },
};

function AnswerText({ text }: { text: string }) {
  // No rehype-raw: raw HTML in the answer stays text. Images are dropped so an answer cannot
  // make the browser fetch an outside address.
  return (
    <Markdown urlTransform={safeUrl} components={MARKDOWN_COMPONENTS} disallowedElements={["img"]}>
      {text}
    </Markdown>
  );
}

function asRecord(text: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(text);
    return value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function sourcesFrom(value: unknown): ChatSource[] {
  if (!Array.isArray(value)) return [];
  return value.flatMap((item): ChatSource[] => {
    if (!item || typeof item !== "object") return [];
    const source = item as Record<string, unknown>;
    if (typeof source.number !== "number" || typeof source.title !== "string") return [];
    return [{ number: source.number, title: source.title, document: typeof source.document === "string" ? source.document : "" }];
  });
}

function waitText(seconds: number): string {
  if (seconds < 90) return `${seconds} second${seconds === 1 ? "" : "s"}`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 90) return `${minutes} minutes`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} hours`;
  return `${Math.round(hours / 24)} days`;
}

/** What the user is told about a refusal that came before any answer. */
export function refusalText(error: ApiError): string {
  switch (error.status) {
    case 403:
      return error.code === "chat_requires_paid_tier" || error.code.includes("tier") ? TIER_MESSAGE : error.message;
    case 429: {
      const resets = error.details?.resets_at;
      let text =
        typeof resets === "string"
          ? `You have used this month's answers. They reset on ${formatTime(resets)}.`
          : "You have used this month's answers. They reset at the start of next month.";
      if (error.retryAfterS !== null && error.retryAfterS > 0) text += ` You can ask again in about ${waitText(error.retryAfterS)}.`;
      return text;
    }
    case 503:
      return `The assistant is unavailable right now: ${error.message}`;
    default:
      return error.message;
  }
}

export function ChatWidget() {
  const [open, setOpen] = useState(false);
  const [messages, setMessages] = useState<ChatMessage[]>([]);
  const [question, setQuestion] = useState("");
  const [streaming, setStreaming] = useState(false);
  const [alert, setAlert] = useState<string | null>(null);
  const [fieldError, setFieldError] = useState<string | null>(null);
  const conversationRef = useRef<string | null>(null);
  const abortRef = useRef<AbortController | null>(null);
  const nextId = useRef(1);
  // Bumped by "New conversation", so a question still in flight cannot write into the new one.
  const generation = useRef(0);
  const launcherRef = useRef<HTMLButtonElement>(null);
  const textareaRef = useRef<HTMLTextAreaElement>(null);
  const logRef = useRef<HTMLDivElement>(null);
  const baseId = useId();
  const panelId = `${baseId}-panel`;
  const questionId = `${baseId}-question`;

  useEffect(() => () => abortRef.current?.abort(), []);

  // Focus moves after the render, once the launcher is visible again (phones hide it while open).
  const returnFocus = useRef(false);
  useEffect(() => {
    if (open) textareaRef.current?.focus();
    else if (returnFocus.current) {
      returnFocus.current = false;
      launcherRef.current?.focus();
    }
  }, [open]);

  useEffect(() => {
    const log = logRef.current;
    if (log) log.scrollTop = log.scrollHeight;
  }, [messages]);

  const close = useCallback(() => {
    returnFocus.current = true;
    setOpen(false);
  }, []);

  const update = useCallback((id: number, change: (message: ChatMessage) => ChatMessage) => {
    setMessages((list) => list.map((message) => (message.id === id ? change(message) : message)));
  }, []);

  async function send() {
    const text = question.trim();
    if (!text || streaming) return;
    setAlert(null);
    setFieldError(null);
    // Send is disabled while the answer streams: keep focus in the panel (on the question box)
    // rather than let it fall to the page, where Escape would no longer reach the dialog.
    textareaRef.current?.focus();
    const controller = new AbortController();
    abortRef.current = controller;
    const userId = nextId.current++;
    const answerId = nextId.current++;
    setMessages((list) => [...list, { id: userId, role: "user", content: text, state: "complete" }]);
    setQuestion("");
    setStreaming(true);
    const continued = conversationRef.current !== null;
    const asked = generation.current;
    logger.info("chat", "question sent", { continued, length: text.length });

    /** A refusal before any answer: take the question back out of the log and into the box. */
    const refused = (message: string, inField = false) => {
      if (generation.current !== asked) return;
      setMessages((list) => list.filter((m) => m.id !== userId));
      setQuestion(text);
      if (inField) setFieldError(message);
      else setAlert(message);
    };

    try {
      let response: Response;
      try {
        const body: Record<string, string> = { message: text };
        if (conversationRef.current) body.conversation_id = conversationRef.current;
        response = await fetch(STREAM_URL, {
          method: "POST",
          headers: { ...authHeaders(), "Content-Type": "application/json", Accept: "text/event-stream" },
          body: JSON.stringify(body),
          signal: controller.signal,
        });
      } catch {
        if (controller.signal.aborted) {
          refused("Stopped before the assistant answered.");
          return;
        }
        logger.warn("chat", "question failed", { code: "network" });
        refused(UNREACHABLE);
        return;
      }

      if (!response.ok) {
        const error = await errorFrom(response);
        logger.warn("chat", "question refused", { status: error.status, code: error.code });
        if (error.status === 404 && error.field === "conversation_id") {
          // The conversation was deleted elsewhere: the next question starts a new one.
          conversationRef.current = null;
          refused("That conversation no longer exists. Send the question again to start a new one.");
        } else if (error.status === 422) {
          refused(error.message, true);
        } else {
          refused(refusalText(error));
        }
        return;
      }
      if (!response.body) {
        logger.warn("chat", "answer failed", { code: "empty_body" });
        refused(UNREACHABLE);
        return;
      }

      setMessages((list) => [...list, { id: answerId, role: "assistant", content: "", state: "streaming" }]);
      let finished = false;
      let failed = false;
      const summary: Record<string, string | number | boolean> = {};
      try {
        for await (const event of readSse(response.body, controller.signal)) {
          if (event.event === "start") {
            const start = asRecord(event.data) ?? {};
            if (typeof start.conversation_id === "string") conversationRef.current = start.conversation_id;
            const mode = typeof start.mode === "string" ? start.mode : undefined;
            const sources = sourcesFrom(start.sources);
            summary.mode = mode ?? "unknown";
            summary.sources = sources.length;
            update(answerId, (m) => ({ ...m, mode, sources }));
          } else if (event.event === "message") {
            if (event.data === "[DONE]") {
              finished = true;
              break;
            }
            const chunk = asRecord(event.data);
            if (chunk && typeof chunk.content === "string") {
              const content = chunk.content;
              update(answerId, (m) => ({ ...m, content: m.content + content }));
            }
          } else if (event.event === "done") {
            const done = asRecord(event.data) ?? {};
            if (typeof done.stop_reason === "string") summary.stop_reason = done.stop_reason;
            const usage = done.usage;
            if (usage && typeof usage === "object" && typeof (usage as Record<string, unknown>).output_tokens === "number") {
              summary.output_tokens = (usage as Record<string, number>).output_tokens ?? 0;
            }
            finished = true;
          } else if (event.event === "error") {
            const error = asRecord(event.data) ?? {};
            const code = typeof error.code === "string" ? error.code : "unknown";
            const message = typeof error.message === "string" ? error.message : "the answer failed";
            failed = true;
            logger.error("chat", "answer failed", { code });
            setAlert(`The answer stopped early: ${message}`);
            break;
          }
        }
      } catch {
        if (!controller.signal.aborted) {
          failed = true;
          logger.warn("chat", "answer failed", { code: "network" });
          setAlert(`The answer stopped early: ${UNREACHABLE}`);
        }
      }

      if (controller.signal.aborted) {
        logger.info("chat", "answer stopped", summary);
        update(answerId, (m) => ({ ...m, state: "stopped" }));
      } else if (finished && !failed) {
        logger.info("chat", "answer done", summary);
        update(answerId, (m) => ({ ...m, state: "complete" }));
      } else {
        if (!failed) {
          logger.warn("chat", "answer failed", { code: "stream_ended" });
          setAlert("The answer stopped early: the connection closed before it was complete.");
        }
        update(answerId, (m) => ({ ...m, state: "incomplete" }));
      }
    } finally {
      if (abortRef.current === controller) abortRef.current = null;
      setStreaming(false);
    }
  }

  function stop() {
    abortRef.current?.abort();
  }

  function newConversation() {
    generation.current += 1;
    abortRef.current?.abort();
    conversationRef.current = null;
    setMessages([]);
    setAlert(null);
    setFieldError(null);
    setQuestion("");
    textareaRef.current?.focus();
  }

  function onQuestionKey(event: KeyboardEvent<HTMLTextAreaElement>) {
    // Enter sends; Shift+Enter, and Enter while an input method is composing, stay in the box.
    if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      void send();
    }
  }

  function onPanelKey(event: KeyboardEvent<HTMLDivElement>) {
    if (event.key === "Escape") {
      event.stopPropagation();
      close();
    }
  }

  return (
    <div className="chat-widget">
      {open && (
        <div id={panelId} className="chat-panel" role="dialog" aria-label="Assistant" onKeyDown={onPanelKey}>
          <div className="chat-header">
            <h2>Assistant</h2>
            <div className="row">
              <button type="button" className="ghost" onClick={newConversation}>
                New conversation
              </button>
              <button type="button" className="ghost" aria-label="Close the assistant" onClick={close}>
                ×
              </button>
            </div>
          </div>
          <div
            ref={logRef}
            className="chat-log"
            role="log"
            aria-live="polite"
            aria-busy={streaming}
            aria-label="Conversation"
            tabIndex={0}
          >
            {messages.length === 0 && (
              <p className="muted chat-empty">Ask about alerts, risk settings, positions or why a signal was rejected.</p>
            )}
            {messages.map((message) => (
              <Message key={message.id} message={message} />
            ))}
            {streaming && (
              <p className="chat-typing">
                <span className="chat-dots" aria-hidden="true">
                  <span />
                  <span />
                  <span />
                </span>
                The assistant is typing…
              </p>
            )}
          </div>
          {alert && (
            <p role="alert" className="notice error chat-alert">
              {alert}
            </p>
          )}
          <form
            className="chat-form"
            onSubmit={(event) => {
              event.preventDefault();
              void send();
            }}
          >
            <label htmlFor={questionId}>Your question</label>
            <textarea
              id={questionId}
              ref={textareaRef}
              rows={3}
              value={question}
              onChange={(event) => {
                setQuestion(event.target.value);
                if (fieldError) setFieldError(null);
              }}
              onKeyDown={onQuestionKey}
              aria-invalid={fieldError ? true : undefined}
              aria-describedby={fieldError ? `${questionId}-error ${questionId}-hint` : `${questionId}-hint`}
            />
            <p id={`${questionId}-hint`} className="hint">
              Enter sends, Shift+Enter starts a new line.
            </p>
            {fieldError && (
              <p id={`${questionId}-error`} role="alert" className="field-error">
                {fieldError}
              </p>
            )}
            <div className="row chat-actions">
              {streaming && (
                <button type="button" className="danger" onClick={stop}>
                  Stop
                </button>
              )}
              <button type="submit" className="primary" disabled={streaming || question.trim() === ""}>
                Send
              </button>
            </div>
          </form>
        </div>
      )}
      <button
        ref={launcherRef}
        type="button"
        className="chat-launcher primary"
        aria-expanded={open}
        aria-controls={open ? panelId : undefined}
        onClick={() => (open ? close() : setOpen(true))}
      >
        <span aria-hidden="true" className="chat-launcher-icon">
          ✦
        </span>{" "}
        Ask the assistant
      </button>
    </div>
  );
}

function Message({ message }: { message: ChatMessage }): ReactNode {
  if (message.role === "user") {
    return (
      <div className="chat-message user">
        <p className="chat-who">You</p>
        <p className="chat-text">{message.content}</p>
      </div>
    );
  }
  const cut = message.state === "incomplete" || message.state === "stopped";
  return (
    <div className={`chat-message assistant${cut ? " incomplete" : ""}`}>
      <p className="chat-who">
        Assistant{" "}
        {message.mode === "offline" && <span className="badge warn">Offline mode</span>}
      </p>
      <div className="chat-text markdown">
        <AnswerText text={message.content} />
      </div>
      {cut && (
        <p className="chat-incomplete">
          {message.state === "stopped" ? "Stopped: this answer is incomplete." : "This answer is incomplete."}
        </p>
      )}
      {message.sources && message.sources.length > 0 && (
        <div className="chat-sources">
          <h3>Sources</h3>
          <ul>
            {message.sources.map((source) => (
              <li key={source.number}>
                [{source.number}] {source.title}
                {source.document && <span className="muted"> ({source.document})</span>}
              </li>
            ))}
          </ul>
        </div>
      )}
    </div>
  );
}
