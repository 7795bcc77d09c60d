// Signals: filters validated and kept in the URL, cursor paging both ways, live arrivals.

import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, useLocation } from "react-router-dom";
import { describe, expect, it } from "vitest";
import type { Signal } from "../api/types";
import { fakeLive, stubFetch } from "../live/testing";
import { Signals } from "./Signals";

function sig(id: string, symbol = "BTCUSDT", status = "executed"): Signal {
  return {
    id, seq: 1, signal_type: "long_entry", symbol, exchange: "paper", status, status_reason: null,
    price: "65000.00000000", suggested_stop_loss: "64000", suggested_take_profit: null,
    strategy_id: null, source: "tradingview", created_at: "2026-01-01T10:00:00Z", processed_at: null,
  };
}

function Where() {
  const location = useLocation();
  return <output data-testid="where">{location.search}</output>;
}

function setup(initial = "/signals") {
  const live = fakeLive();
  const net = stubFetch((url) => {
    if (url.pathname !== "/api/signals") return undefined;
    const cursor = url.searchParams.get("cursor");
    if (cursor === "c2") return { body: { items: [sig("old1")], next_cursor: null } };
    return { body: { items: [sig("new1"), sig("new2", "ETHUSDT", "rejected")], next_cursor: "c2" } };
  });
  render(
    <MemoryRouter initialEntries={[initial]}>
      <live.Provider>
        <Signals />
        <Where />
      </live.Provider>
    </MemoryRouter>,
  );
  return { ...live, ...net };
}

describe("Signals", () => {
  it("applies filters through the URL and the query", async () => {
    const user = userEvent.setup();
    const { calls } = setup();
    expect(screen.getByRole("heading", { level: 1, name: "Signals" })).toBeInTheDocument();
    await screen.findAllByText("BTCUSDT");
    expect(calls[0]!.url.searchParams.get("limit")).toBe("25");

    await user.type(screen.getByLabelText("Symbol"), "ethusdt");
    await user.selectOptions(screen.getByLabelText("Status"), "rejected");
    await user.click(screen.getByRole("button", { name: "Apply" }));
    await waitFor(() => expect(screen.getByTestId("where")).toHaveTextContent("?symbol=ethusdt&status=rejected"));
    await waitFor(() => expect(calls).toHaveLength(2));
    expect(calls[1]!.url.searchParams.get("symbol")).toBe("ethusdt");
    expect(calls[1]!.url.searchParams.get("status")).toBe("rejected");
  });

  it("reads the filters from the URL", async () => {
    const { calls } = setup("/signals?status=executed&from=2026-01-01T09:00");
    await screen.findAllByText("BTCUSDT");
    expect(screen.getByLabelText("Status")).toHaveValue("executed");
    expect(calls[0]!.url.searchParams.get("since")).toBe(new Date("2026-01-01T09:00").toISOString());
  });

  it("refuses From after To without a request", async () => {
    const user = userEvent.setup();
    const { calls } = setup();
    await screen.findAllByText("BTCUSDT");
    const from = screen.getByLabelText("From");
    await user.type(from, "2026-02-01T10:00");
    await user.type(screen.getByLabelText("To"), "2026-01-01T10:00");
    await user.click(screen.getByRole("button", { name: "Apply" }));
    expect(from).toHaveAttribute("aria-invalid", "true");
    expect(from).toHaveAccessibleDescription("From must be earlier than To.");
    expect(from).toHaveFocus();
    expect(calls).toHaveLength(1);
  });

  it("pages older and back newer", async () => {
    const user = userEvent.setup();
    const { calls } = setup();
    await screen.findAllByText("BTCUSDT");
    const pager = screen.getByRole("navigation", { name: "Signal pages" });
    expect(within(pager).getByRole("button", { name: "Newer" })).toBeDisabled();
    await user.click(within(pager).getByRole("button", { name: "Older" }));
    await waitFor(() => expect(within(pager).getByRole("button", { name: "Older" })).toBeDisabled());
    expect(calls[1]!.url.searchParams.get("cursor")).toBe("c2");
    await user.click(within(pager).getByRole("button", { name: "Newer" }));
    await waitFor(() => expect(calls).toHaveLength(3));
    expect(calls[2]!.url.searchParams.get("cursor")).toBeNull();
  });

  it("prepends matching live signals on the first page and merges updates", async () => {
    const { emit } = setup("/signals?symbol=BTCUSDT");
    await screen.findAllByText("BTCUSDT");
    const table = screen.getByRole("table");
    emit("signal_received", { ...sig("live1"), created_at: "2026-03-01T00:00:00Z", status: "queued" });
    emit("signal_received", { ...sig("live2", "SOLUSDT"), created_at: "2026-03-01T00:00:00Z" });
    const rows = within(table).getAllByRole("row");
    expect(rows[1]).toHaveTextContent("queued");
    expect(within(table).queryByText("SOLUSDT")).not.toBeInTheDocument();
    emit("signal_update", { id: "live1", symbol: "BTCUSDT", signal_type: "long_entry", status: "rejected", status_reason: "stop_loss: missing" });
    expect(within(table).getByText("stop_loss: missing")).toBeInTheDocument();
  });
});
