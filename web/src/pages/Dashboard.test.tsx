// The dashboard applies live events to what it loaded and closes positions with a confirm step.

import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter } from "react-router-dom";
import { describe, expect, it } from "vitest";
import type { AccountSummary, Position, Signal, Trade } from "../api/types";
import { fakeLive, stubFetch } from "../live/testing";
import { Dashboard } from "./Dashboard";

const summary: AccountSummary = {
  exchange: "paper",
  equity: "10000.00",
  wallet_balance: "10000.00",
  unrealized_pnl: "0",
  realized_pnl_today: "-1.25",
  trades_today: 2,
  open_positions: 2,
  as_of: "2026-01-01T00:00:00Z",
};

function position(id: string, symbol: string, pnl: string): Position {
  return {
    id, exchange: "paper", symbol, side: "long", status: "open", quantity: "0.01500000",
    entry_price: "65065.00000000", current_price: "65065.00000000", leverage: 1,
    stop_loss: "64000.00000000", take_profit: "68000.00000000", unrealized_pnl: pnl, realized_pnl: null,
    margin: null, liquidation_price: null, signal_id: null, opened_at: "2026-01-01T00:00:00Z", closed_at: null,
  };
}

const signal: Signal = {
  id: "s1", seq: 1, signal_type: "long_entry", symbol: "BTCUSDT", exchange: "paper", status: "queued",
  status_reason: null, price: "65000", suggested_stop_loss: null, suggested_take_profit: null,
  strategy_id: null, source: "tradingview", created_at: "2026-01-01T00:00:00Z", processed_at: null,
};

function setup(positions: Position[] = [position("p1", "BTCUSDT", "1.10"), position("p2", "ETHUSDT", "0.20")]) {
  const live = fakeLive();
  const net = stubFetch(
    (url) => (url.pathname === "/api/account/summary" ? { body: summary } : undefined),
    (url) => (url.pathname === "/api/positions" ? { body: { items: positions, next_cursor: null } } : undefined),
    (url) => (url.pathname === "/api/trades" ? { body: { items: [] as Trade[], next_cursor: null } } : undefined),
    (url) => (url.pathname === "/api/signals" ? { body: { items: [signal], next_cursor: null } } : undefined),
    (url, init) =>
      url.pathname === "/api/positions/p1/close" && init?.method === "POST"
        ? { status: 202, body: { message: "close queued", signal_id: "s9" } }
        : undefined,
    (url, init) =>
      url.pathname === "/api/positions/p2/close" && init?.method === "POST"
        ? { status: 409, body: { error: { code: "position_closed", message: "position is already closed", field: "position_id" } } }
        : undefined,
  );
  render(
    <MemoryRouter>
      <live.Provider>
        <Dashboard />
      </live.Provider>
    </MemoryRouter>,
  );
  return { ...live, ...net };
}

function statValue(label: string) {
  return screen.getByText(label, { selector: ".stat-label" }).nextElementSibling as HTMLElement;
}

describe("Dashboard", () => {
  it("shows the summary and sums unrealised PnL exactly", async () => {
    setup();
    expect(screen.getByRole("heading", { level: 1, name: "Dashboard" })).toBeInTheDocument();
    await screen.findByText("BTCUSDT", { selector: "strong", ignore: ".signal-item *" });
    expect(statValue("Equity")).toHaveTextContent("10,000.00");
    expect(statValue("Today's PnL")).toHaveTextContent("-1.25");
    expect(statValue("Unrealised PnL")).toHaveTextContent("+1.30");
    expect(statValue("Open positions")).toHaveTextContent("2");
  });

  it("applies position_update and removes a closed position", async () => {
    const { emit } = setup();
    const table = await screen.findByRole("table", { name: "Open positions" });
    emit("position_update", { ...position("p1", "BTCUSDT", "2.50"), current_price: "65200" });
    expect(within(table).getByText("65,200")).toBeInTheDocument();
    expect(statValue("Unrealised PnL")).toHaveTextContent("+2.70");

    emit("position_update", { ...position("p2", "ETHUSDT", "0"), status: "closed" });
    expect(within(table).queryByText("ETHUSDT")).not.toBeInTheDocument();
    expect(statValue("Open positions")).toHaveTextContent("1");

    emit("price_update", { symbol: "BTCUSDT", exchange: "paper", price: "65300.5" });
    expect(within(table).getByText("65,300.5")).toBeInTheDocument();
  });

  it("closes a position after confirming, until position_update says closed", async () => {
    const user = userEvent.setup();
    const { emit, calls } = setup();
    await user.click(await screen.findByRole("button", { name: "Close BTCUSDT long position" }));
    expect(calls.some((c) => c.url.pathname.endsWith("/close"))).toBe(false);
    await user.click(screen.getByRole("button", { name: "Confirm close" }));
    await waitFor(() => expect(screen.getByText("BTCUSDT long: close queued")).toBeInTheDocument());
    expect(screen.getByText("BTCUSDT long: close queued").closest("[role=status]")).not.toBeNull();
    expect(screen.getByText("Closing…")).toBeInTheDocument();

    emit("position_update", { ...position("p1", "BTCUSDT", "0"), status: "closed", realized_pnl: "3" });
    expect(screen.queryByRole("button", { name: "Close BTCUSDT long position" })).not.toBeInTheDocument();
    expect(screen.getByText("BTCUSDT long position closed.")).toBeInTheDocument();
  });

  it("cancels the confirm step and shows a 409's message", async () => {
    const user = userEvent.setup();
    setup();
    await user.click(await screen.findByRole("button", { name: "Close ETHUSDT long position" }));
    await user.click(screen.getByRole("button", { name: "Cancel" }));
    expect(screen.getByRole("button", { name: "Close ETHUSDT long position" })).toHaveFocus();
    await user.click(screen.getByRole("button", { name: "Close ETHUSDT long position" }));
    await user.click(screen.getByRole("button", { name: "Confirm close" }));
    expect(await screen.findByText("ETHUSDT long: position is already closed")).toBeInTheDocument();
  });

  it("puts new signals on top and merges signal_update", async () => {
    const { emit } = setup();
    const list = await screen.findByRole("list", { name: "Live signals" });
    await within(list).findByText("long entry");
    emit("signal_received", { ...signal, id: "s2", symbol: "ETHUSDT", signal_type: "short_entry" });
    const items = within(list).getAllByRole("listitem");
    expect(items[0]).toHaveTextContent("ETHUSDT");
    emit("signal_update", { id: "s1", symbol: "BTCUSDT", signal_type: "long_entry", status: "rejected", status_reason: "stop_loss: required" });
    expect(within(list).getByText("stop_loss: required")).toBeInTheDocument();
    expect(within(items[1]!).getByText("rejected")).toBeInTheDocument();
  });

  it("shows an empty state with a hint", async () => {
    setup([]);
    expect(await screen.findByText(/No open positions\. Send an alert to your webhook URL/)).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Webhook" })).toHaveAttribute("href", "/webhook");
  });
});
