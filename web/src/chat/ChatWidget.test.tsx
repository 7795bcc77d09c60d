// The assistant widget against a stubbed engine: streaming, safe markdown, sources, refusals.

import { act, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { formatTime } from "../lib/format";
import { ChatWidget } from "./ChatWidget";

const logged = vi.hoisted(() => ({ lines: [] as Array<{ level: string; message: string; data?: Record<string, unknown> }> }));

vi.mock("../lib/logger", () => {
  const record = (level: string) => (_component: string, message: string, data?: Record<string, unknown>) => {
    logged.lines.push({ level, message, data });
  };
  return { logger: { info: record("info"), warn: record("warn"), error: record("error") } };
});

const encoder = new TextEncoder();

interface Stream {
  response: Response;
  push: (text: string) => Promise<void>;
  close: () => Promise<void>;
}

/** A 200 event-stream response whose body the test writes into, chunk by chunk. */
function streamResponse(): Stream {
  const holder: { controller?: ReadableStreamDefaultController<Uint8Array> } = {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      holder.controller = controller;
    },
  });
  const flush = () => act(async () => {
    await new Promise((resolve) => setTimeout(resolve, 0));
  });
  return {
    response: new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } }),
    push: async (text) => {
      holder.controller?.enqueue(encoder.encode(text));
      await flush();
    },
    close: async () => {
      try {
        holder.controller?.close();
      } catch {
        // the widget already cancelled the body (it stops reading at [DONE] or an error)
      }
      await flush();
    },
  };
}

function jsonResponse(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });
}

function stubFetch(...responses: Response[]) {
  const queue = [...responses];
  return vi.spyOn(globalThis, "fetch").mockImplementation(async (input) => {
    if (String(input) !== "/api/chat/stream") return new Response(null, { status: 204 });
    const next = queue.shift();
    if (!next) throw new Error("no response queued");
    return next;
  });
}

function requestBody(fetchMock: ReturnType<typeof stubFetch>, call: number): Record<string, unknown> {
  const init = fetchMock.mock.calls[call]?.[1];
  return JSON.parse(String(init?.body)) as Record<string, unknown>;
}

async function openAndAsk(question: string) {
  const user = userEvent.setup();
  render(<ChatWidget />);
  await user.click(screen.getByRole("button", { name: "Ask the assistant" }));
  const box = screen.getByLabelText("Your question");
  await user.type(box, `${question}{Enter}`);
  return { user, box };
}

const START = {
  conversation_id: "8f0c2a52-0000-4000-8000-000000000001",
  mode: "claude",
  sources: [{ number: 1, document: "stop-loss-and-take-profit.md", title: "Stop loss and take profit", score: 0.02, similarity: 0.6 }],
};

beforeEach(() => {
  logged.lines = [];
});

describe("ChatWidget", () => {
  it("opens as a dialog and closes on Escape, returning focus to its button", async () => {
    const user = userEvent.setup();
    render(<ChatWidget />);
    const launcher = screen.getByRole("button", { name: "Ask the assistant" });
    expect(launcher).toHaveAttribute("aria-expanded", "false");
    await user.click(launcher);
    expect(launcher).toHaveAttribute("aria-expanded", "true");
    expect(screen.getByRole("dialog", { name: "Assistant" })).toBeInTheDocument();
    expect(screen.getByLabelText("Your question")).toHaveFocus();
    await user.keyboard("{Escape}");
    expect(screen.queryByRole("dialog")).not.toBeInTheDocument();
    expect(launcher).toHaveFocus();
  });

  it("streams the answer as it arrives, renders markdown safely and lists the sources", async () => {
    const stream = streamResponse();
    const fetchMock = stubFetch(stream.response);
    const { box } = await openAndAsk("How do I add a stop loss?");

    expect(fetchMock).toHaveBeenCalledTimes(1);
    const init = fetchMock.mock.calls[0]?.[1];
    expect(init?.method).toBe("POST");
    expect(init?.headers).toMatchObject({ "Content-Type": "application/json", Accept: "text/event-stream" });
    expect(requestBody(fetchMock, 0)).toEqual({ message: "How do I add a stop loss?" });
    expect(screen.getByText("How do I add a stop loss?")).toBeInTheDocument();
    expect(box).toHaveValue("");

    await stream.push(`event: start\ndata: ${JSON.stringify(START)}\n\n`);
    await stream.push('data: {"content": "Add a **stop'); // cut mid-event and mid-word
    await stream.push('_loss** field [1]"}\n\n');

    // The partial answer is on screen while the stream is still open.
    expect(await screen.findByText("stop_loss")).toBeInTheDocument();
    expect(screen.getByText("The assistant is typing…")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Send" })).toBeDisabled();
    expect(screen.getByRole("button", { name: "Stop" })).toBeInTheDocument();
    expect(screen.getByRole("log")).toHaveAttribute("aria-live", "polite");

    const hostile = [
      "\n\n<script>window.__pwned = true</script>\n\n",
      'Inline <img src="x" onerror="window.__pwned = true"> and <b>bold</b>.\n\n',
      "[bad link](javascript:alert(1)) and [good link](https://example.com/docs) and [mail](mailto:help@example.com)",
    ].join("");
    await stream.push(`data: ${JSON.stringify({ content: hostile })}\n\n`);
    await stream.push('event: done\ndata: {"message_id": "m1", "stop_reason": "end_turn", "usage": {"output_tokens": 9}}\n\n');
    await stream.push("data: [DONE]\n\n");
    await stream.close();

    await waitFor(() => expect(screen.queryByText("The assistant is typing…")).not.toBeInTheDocument());
    const log = screen.getByRole("log");
    expect(log.querySelector("script")).toBeNull();
    expect(log.querySelector("img")).toBeNull();
    expect(log.querySelector("b")).toBeNull();
    expect(log.querySelector("[onerror]")).toBeNull();
    expect((window as unknown as { __pwned?: boolean }).__pwned).toBeUndefined();
    // The raw HTML stays visible as text.
    expect(log.textContent).toContain("<script>");

    expect(within(log).queryByRole("link", { name: "bad link" })).toBeNull();
    expect(within(log).getByText("bad link")).toBeInTheDocument();
    expect(log.querySelector('a[href^="javascript"]')).toBeNull();
    const good = within(log).getByRole("link", { name: "good link" });
    expect(good).toHaveAttribute("href", "https://example.com/docs");
    expect(good).toHaveAttribute("target", "_blank");
    expect(good).toHaveAttribute("rel", "noopener noreferrer");
    expect(within(log).getByRole("link", { name: "mail" })).toHaveAttribute("href", "mailto:help@example.com");

    expect(within(log).getByRole("heading", { name: "Sources" })).toBeInTheDocument();
    const item = within(log).getByRole("listitem");
    expect(item).toHaveTextContent("[1] Stop loss and take profit (stop-loss-and-take-profit.md)");
    expect(screen.queryByText("Offline mode")).not.toBeInTheDocument();
    expect(screen.queryByText(/incomplete/)).not.toBeInTheDocument();

    const messages = logged.lines.map((line) => line.message);
    expect(messages).toEqual(["question sent", "answer done"]);
    expect(JSON.stringify(logged.lines)).not.toContain("stop loss?");
  });

  it("continues the conversation with the id from the start event, and shows offline mode", async () => {
    const first = streamResponse();
    const second = streamResponse();
    const fetchMock = stubFetch(first.response, second.response);
    const { user, box } = await openAndAsk("First question");
    await first.push(`event: start\ndata: ${JSON.stringify({ ...START, mode: "offline", sources: [] })}\n\n`);
    await first.push('data: {"content": "**Offline mode** here"}\n\ndata: [DONE]\n\n');
    await first.close();
    expect(await screen.findByText("Offline mode", { selector: ".badge" })).toBeInTheDocument();
    await waitFor(() => expect(screen.queryByText("The assistant is typing…")).not.toBeInTheDocument());

    await user.type(box, "Second{Enter}");
    expect(requestBody(fetchMock, 1)).toEqual({ message: "Second", conversation_id: START.conversation_id });
    await second.push("data: [DONE]\n\n");
    await second.close();

    await user.click(screen.getByRole("button", { name: "New conversation" }));
    expect(screen.queryByText("First question")).not.toBeInTheDocument();
  });

  it("keeps a partial answer marked incomplete when the stream ends with an error", async () => {
    const stream = streamResponse();
    stubFetch(stream.response);
    await openAndAsk("Why?");
    await stream.push(`event: start\ndata: ${JSON.stringify(START)}\n\n`);
    await stream.push('data: {"content": "Because the"}\n\n');
    await stream.push('event: error\ndata: {"code": "model_overloaded", "message": "the model is overloaded; try again shortly"}\n\n');
    await stream.close();

    expect(await screen.findByRole("alert")).toHaveTextContent("the model is overloaded; try again shortly");
    expect(screen.getByText("Because the")).toBeInTheDocument();
    expect(screen.getByText("This answer is incomplete.")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Send" })).toBeInTheDocument();
    expect(logged.lines).toContainEqual({ level: "error", message: "answer failed", data: { code: "model_overloaded" } });
  });

  it("stops a streaming answer with the Stop button", async () => {
    const stream = streamResponse();
    const fetchMock = stubFetch(stream.response);
    const { user } = await openAndAsk("Long answer please");
    await stream.push('data: {"content": "Part one"}\n\n');
    await user.click(screen.getByRole("button", { name: "Stop" }));
    expect(await screen.findByText("Stopped: this answer is incomplete.")).toBeInTheDocument();
    expect(fetchMock.mock.calls[0]?.[1]?.signal?.aborted).toBe(true);
    expect(screen.getByText("Part one")).toBeInTheDocument();
  });

  it("explains a 403 for the free tier", async () => {
    stubFetch(jsonResponse(403, { error: { code: "chat_requires_paid_tier", message: "chat needs a paid plan" } }));
    const { box } = await openAndAsk("Hello");
    expect(await screen.findByRole("alert")).toHaveTextContent("The assistant is part of the Pro and Enterprise plans.");
    // The question goes back in the box to be sent later.
    expect(box).toHaveValue("Hello");
    expect(logged.lines).toContainEqual({ level: "warn", message: "question refused", data: { status: 403, code: "chat_requires_paid_tier" } });
  });

  it("shows the engine's message for a 403 that is not about the plan", async () => {
    stubFetch(jsonResponse(403, { error: { code: "forbidden", message: "this account is suspended" } }));
    await openAndAsk("Hello");
    expect(await screen.findByRole("alert")).toHaveTextContent("this account is suspended");
  });

  it("explains a 429 with the reset date and the wait", async () => {
    const resets = "2027-01-01T00:00:00Z";
    stubFetch(
      jsonResponse(
        429,
        { error: { code: "chat_limit_reached", message: "monthly limit reached", details: { limit: 300, resets_at: resets } } },
        { "Retry-After": "7200" },
      ),
    );
    await openAndAsk("Hello");
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent(`You have used this month's answers. They reset on ${formatTime(resets)}.`);
    expect(alert).toHaveTextContent("You can ask again in about 2 hours.");
  });

  it("explains a 503 and a network failure", async () => {
    stubFetch(jsonResponse(503, { error: { code: "embedding_unavailable", message: "the embedding provider failed" } }));
    const { user } = await openAndAsk("Hello");
    expect(await screen.findByRole("alert")).toHaveTextContent("The assistant is unavailable right now: the embedding provider failed");

    vi.spyOn(globalThis, "fetch").mockRejectedValue(new TypeError("Failed to fetch"));
    await user.click(screen.getByRole("button", { name: "Send" }));
    await waitFor(() => expect(screen.getByRole("alert")).toHaveTextContent("The engine could not be reached."));
  });

  it("puts a 422 under the question box", async () => {
    stubFetch(jsonResponse(422, { error: { code: "validation_error", message: "message: String should have at most 4000 characters", field: "message" } }));
    const { box } = await openAndAsk("Too long");
    const error = await screen.findByText("message: String should have at most 4000 characters");
    expect(error).toHaveClass("field-error");
    expect(box).toHaveAttribute("aria-invalid", "true");
    expect(box.getAttribute("aria-describedby")).toContain(error.id);
  });
});
