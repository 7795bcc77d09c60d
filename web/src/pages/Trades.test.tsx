// Trades: the table, the status filter's values, and live upserts on the first page.

import { render, screen, within } from "@testing-library/react";
import { MemoryRouter } from "react-router-dom";
import { describe, expect, it } from "vitest";
import type { Trade } from "../api/types";
import { fakeLive, stubFetch } from "../live/testing";
import { Trades } from "./Trades";

function trade(id: string, status = "filled"): Trade {
  return {
    id, signal_id: null, position_id: null, exchange: "paper", symbol: "BTCUSDT", side: "buy",
    order_type: "market", reduce_only: false, status, quantity: "0.01500000", price: null,
    filled_quantity: "0.01500000", avg_fill_price: "65065.00000000", fee: "0.39039000", fee_currency: "USDT",
    realized_pnl: "0E-8", client_order_id: "jt1", exchange_order_id: "ex-1",
    executed_at: "2026-01-01T10:00:00Z", created_at: "2026-01-01T10:00:00Z",
  };
}

describe("Trades", () => {
  it("lists trades and applies live upserts", async () => {
    const live = fakeLive();
    stubFetch((url) => (url.pathname === "/api/trades" ? { body: { items: [trade("t1")], next_cursor: null } } : undefined));
    render(
      <MemoryRouter initialEntries={["/trades"]}>
        <live.Provider>
          <Trades />
        </live.Provider>
      </MemoryRouter>,
    );
    expect(screen.getByRole("heading", { level: 1, name: "Trades" })).toBeInTheDocument();
    const options = within(screen.getByLabelText("Status")).getAllByRole("option").map((o) => o.getAttribute("value"));
    expect(options).toEqual(["", "pending", "open", "partially_filled", "filled", "canceled", "failed", "unknown"]);
    expect(await screen.findByText("ex-1")).toBeInTheDocument();
    expect(screen.getByText("65,065")).toBeInTheDocument();

    live.emit("trade_update", { ...trade("t2", "open"), order_type: "stop_market", reduce_only: true, created_at: "2026-01-02T00:00:00Z" });
    const rows = within(screen.getByRole("table")).getAllByRole("row");
    expect(rows).toHaveLength(3);
    expect(rows[1]).toHaveTextContent("Stop market");
    expect(rows[1]).toHaveTextContent("Yes");
    live.emit("trade_update", { ...trade("t2", "canceled"), order_type: "stop_market", reduce_only: true });
    expect(within(screen.getByRole("table")).getAllByRole("row")[1]).toHaveTextContent("canceled");
  });
});
