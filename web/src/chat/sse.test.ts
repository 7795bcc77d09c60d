// The SSE parser against the ways a network splits a stream.

import { readSse, SseParser, type SseEvent } from "./sse";

const encoder = new TextEncoder();

function feedAll(parser: SseParser, chunks: Array<Uint8Array | string>): SseEvent[] {
  const events: SseEvent[] = [];
  for (const chunk of chunks) events.push(...parser.feed(chunk));
  events.push(...parser.end());
  return events;
}

/** Every way of cutting `bytes` in two. */
function everySplit(bytes: Uint8Array): Array<[Uint8Array, Uint8Array]> {
  const out: Array<[Uint8Array, Uint8Array]> = [];
  for (let i = 0; i <= bytes.length; i += 1) out.push([bytes.slice(0, i), bytes.slice(i)]);
  return out;
}

const STREAM = [
  "event: start",
  'data: {"conversation_id": "c1", "mode": "claude", "sources": []}',
  "",
  'data: {"content": "Stop loss — «ä» 🚀"}',
  "",
  "event: done",
  'data: {"message_id": "m1"}',
  "",
  "data: [DONE]",
  "",
  "",
].join("\n");

const EXPECTED: SseEvent[] = [
  { event: "start", data: '{"conversation_id": "c1", "mode": "claude", "sources": []}' },
  { event: "message", data: '{"content": "Stop loss — «ä» 🚀"}' },
  { event: "done", data: '{"message_id": "m1"}' },
  { event: "message", data: "[DONE]" },
];

describe("SseParser", () => {
  it("parses a whole stream in one chunk", () => {
    expect(feedAll(new SseParser(), [encoder.encode(STREAM)])).toEqual(EXPECTED);
  });

  it("gives the same events wherever the bytes are split, mid-line and mid-character", () => {
    const bytes = encoder.encode(STREAM);
    for (const [a, b] of everySplit(bytes)) {
      expect(feedAll(new SseParser(), [a, b])).toEqual(EXPECTED);
    }
  });

  it("survives one byte at a time", () => {
    const bytes = encoder.encode(STREAM);
    const chunks = Array.from(bytes, (byte) => Uint8Array.of(byte));
    expect(feedAll(new SseParser(), chunks)).toEqual(EXPECTED);
  });

  it("decodes a four-byte character split across three chunks", () => {
    const bytes = encoder.encode('data: {"content": "🚀"}\n\n');
    const at = bytes.indexOf(0xf0);
    const events = feedAll(new SseParser(), [bytes.slice(0, at + 1), bytes.slice(at + 1, at + 3), bytes.slice(at + 3)]);
    expect(events).toEqual([{ event: "message", data: '{"content": "🚀"}' }]);
  });

  it("emits an event only once its blank line has arrived", () => {
    const parser = new SseParser();
    expect(parser.feed('data: {"content": "a"}\n')).toEqual([]);
    expect(parser.feed("\n")).toEqual([{ event: "message", data: '{"content": "a"}' }]);
  });

  it("handles CRLF and lone CR line endings, including a CRLF split across chunks", () => {
    const crlf = STREAM.replace(/\n/g, "\r\n");
    const bytes = encoder.encode(crlf);
    for (const [a, b] of everySplit(bytes)) {
      expect(feedAll(new SseParser(), [a, b])).toEqual(EXPECTED);
    }
    expect(feedAll(new SseParser(), [STREAM.replace(/\n/g, "\r")])).toEqual(EXPECTED);
  });

  it("skips comments and keeps an event around them", () => {
    const events = feedAll(new SseParser(), [": keep-alive\n\nevent: start\n: between\ndata: x\n\n"]);
    expect(events).toEqual([{ event: "start", data: "x" }]);
  });

  it("joins multi-line data with newlines and strips only one leading space", () => {
    const events = feedAll(new SseParser(), ["data: line one\ndata:line two\ndata:  indented\ndata\n\n"]);
    expect(events).toEqual([{ event: "message", data: "line one\nline two\n indented\n" }]);
  });

  it("ignores a block without data and resets the event name after each block", () => {
    const events = feedAll(new SseParser(), ["event: start\n\ndata: plain\n\n", "retry: 1000\nid: 7\ndata: y\n\n"]);
    expect(events).toEqual([
      { event: "message", data: "plain" },
      { event: "message", data: "y", id: "7" },
    ]);
  });

  it("delivers a last block the server closed without a blank line", () => {
    expect(feedAll(new SseParser(), ["data: [DONE]"])).toEqual([{ event: "message", data: "[DONE]" }]);
  });
});

describe("readSse", () => {
  it("reads events from a body stream as chunks arrive", async () => {
    const bytes = encoder.encode(STREAM);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 7) controller.enqueue(bytes.slice(i, i + 7));
        controller.close();
      },
    });
    const events: SseEvent[] = [];
    for await (const event of readSse(body)) events.push(event);
    expect(events).toEqual(EXPECTED);
  });

  it("ends when its signal is aborted, even while waiting for a chunk", async () => {
    const source: { push?: (text: string) => void } = {};
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        source.push = (text) => controller.enqueue(encoder.encode(text));
      },
    });
    const controller = new AbortController();
    const seen: SseEvent[] = [];
    const done = (async () => {
      for await (const event of readSse(body, controller.signal)) {
        seen.push(event);
        controller.abort();
      }
    })();
    source.push?.("data: first\n\n");
    await done;
    expect(seen).toEqual([{ event: "message", data: "first" }]);
  });
});
