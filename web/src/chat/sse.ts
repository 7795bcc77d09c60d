// Server-Sent Events, parsed incrementally: the assistant's answer arrives as a byte stream cut
// wherever the network cuts it, so lines and multi-byte characters can span chunks.

export interface SseEvent {
  /** The `event:` field, or "message" for an unnamed event (as EventSource names it). */
  event: string;
  /** The `data:` lines of the block, joined with "\n". */
  data: string;
  id?: string;
}

export class SseParser {
  private readonly decoder = new TextDecoder("utf-8");
  private buffer = "";
  private eventName = "";
  private dataLines: string[] = [];
  private lastId: string | undefined;

  /** Feed the next chunk (bytes, or text already decoded); returns the events it completed. */
  feed(chunk: Uint8Array | string): SseEvent[] {
    this.buffer += typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    return this.drain(false);
  }

  /**
   * The stream is over: decode what the decoder still holds and return the last events. A block
   * the server did not close with a blank line is still delivered: its data did arrive.
   */
  end(): SseEvent[] {
    this.buffer += this.decoder.decode();
    const events = this.drain(true);
    if (this.buffer !== "") {
      this.line(this.buffer, events);
      this.buffer = "";
    }
    this.dispatch(events);
    return events;
  }

  private drain(final: boolean): SseEvent[] {
    const events: SseEvent[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i += 1) {
      const char = this.buffer[i];
      if (char !== "\n" && char !== "\r") continue;
      if (char === "\r" && i === this.buffer.length - 1 && !final) {
        // A "\r" at the end of a chunk may be the first half of "\r\n": wait for the next chunk.
        break;
      }
      this.line(this.buffer.slice(start, i), events);
      if (char === "\r" && this.buffer[i + 1] === "\n") i += 1;
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  private line(text: string, events: SseEvent[]): void {
    if (text === "") {
      this.dispatch(events);
      return;
    }
    if (text.startsWith(":")) return; // a comment (keep-alive)
    const colon = text.indexOf(":");
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.eventName = value;
        break;
      case "data":
        this.dataLines.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.lastId = value;
        break;
      default:
        // `retry` and unknown fields mean nothing to a fetch-based reader.
        break;
    }
  }

  private dispatch(events: SseEvent[]): void {
    if (this.dataLines.length > 0) {
      const event: SseEvent = { event: this.eventName || "message", data: this.dataLines.join("\n") };
      if (this.lastId !== undefined) event.id = this.lastId;
      events.push(event);
    }
    this.eventName = "";
    this.dataLines = [];
  }
}

/**
 * The events of a response body, as they arrive. Aborting `signal` cancels the reader, which
 * ends the iteration (the caller checks `signal.aborted` to tell a stop from a normal end).
 */
export async function* readSse(body: ReadableStream<Uint8Array>, signal?: AbortSignal): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const parser = new SseParser();
  const cancel = () => {
    reader.cancel().catch(() => undefined);
  };
  signal?.addEventListener("abort", cancel, { once: true });
  let finished = false;
  try {
    for (;;) {
      if (signal?.aborted) return;
      const { done, value } = await reader.read();
      if (signal?.aborted) return;
      if (done) break;
      if (value) yield* parser.feed(value);
    }
    finished = true;
    yield* parser.end();
  } finally {
    signal?.removeEventListener("abort", cancel);
    // A caller that stops early (at `[DONE]`, or on an error) lets the connection go.
    if (finished) reader.releaseLock();
    else cancel();
  }
}
