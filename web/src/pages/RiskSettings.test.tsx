// Risk settings against a stubbed engine: only changes are sent, the engine's 422 lands on its field.

import { render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import type { RiskSettings as Settings } from "../api/types";
import { RiskSettings } from "./RiskSettings";

vi.mock("../lib/logger", () => ({ logger: { info: vi.fn(), warn: vi.fn(), error: vi.fn() } }));

const LOADED: Settings = {
  max_position_size_usd: "10000.00",
  max_leverage: 10,
  max_open_positions: 5,
  max_daily_trades: 20,
  max_daily_loss_percent: "5.00",
  max_portfolio_exposure_percent: "50.00",
  default_risk_per_trade_percent: "1.00",
  require_stop_loss: true,
  notify_on_trade: true,
  notify_on_stop_loss: true,
  notify_on_daily_loss_limit: false,
  updated_at: "2026-05-01T12:00:00Z",
};

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

function stubEngine(put: (body: Record<string, unknown>) => Response) {
  return vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
    if (String(input) === "/api/risk-settings" && (init?.method ?? "GET") === "GET") return json(200, LOADED);
    if (String(input) === "/api/risk-settings" && init?.method === "PUT") return put(JSON.parse(String(init.body)) as Record<string, unknown>);
    return new Response(null, { status: 204 });
  });
}

function putBodies(fetchMock: ReturnType<typeof stubEngine>): unknown[] {
  return fetchMock.mock.calls.filter(([, init]) => init?.method === "PUT").map(([, init]) => JSON.parse(String(init?.body)));
}

describe("RiskSettings", () => {
  it("sends only the changed fields, decimals as typed, and reloads from the answer", async () => {
    const user = userEvent.setup();
    const fetchMock = stubEngine((body) => json(200, { ...LOADED, ...body, max_position_size_usd: "2500.50", updated_at: "2026-05-02T00:00:00Z" }));
    render(<RiskSettings />);
    expect(screen.getByRole("heading", { level: 1, name: "Risk settings" })).toBeInTheDocument();

    const size = await screen.findByLabelText("Max position size (USD)");
    expect(size).toHaveValue("10000.00");
    await user.clear(size);
    await user.type(size, "2500.50");
    // Same number, other spelling: not a change.
    const loss = screen.getByLabelText("Max daily loss (%)");
    await user.clear(loss);
    await user.type(loss, "5");
    const leverage = screen.getByLabelText("Max leverage");
    await user.clear(leverage);
    await user.type(leverage, "20");
    await user.click(screen.getByLabelText("Notify when the daily loss limit is reached"));
    await user.click(screen.getByRole("button", { name: "Save" }));

    expect(await screen.findByRole("status")).toHaveTextContent("Risk settings saved.");
    expect(putBodies(fetchMock)).toEqual([{ max_position_size_usd: "2500.50", max_leverage: 20, notify_on_daily_loss_limit: true }]);
    expect(screen.getByLabelText("Max daily loss (%)")).toHaveValue("5.00");
  });

  it("puts the engine's 422 on the field it names and focuses it", async () => {
    const user = userEvent.setup();
    stubEngine(() =>
      json(422, {
        error: { code: "validation_error", message: "max_leverage: Input should be less than or equal to 125", field: "max_leverage" },
      }),
    );
    render(<RiskSettings />);
    const leverage = await screen.findByLabelText("Max leverage");
    await user.clear(leverage);
    await user.type(leverage, "500");
    await user.click(screen.getByRole("button", { name: "Save" }));

    const message = await screen.findByText("Input should be less than or equal to 125");
    expect(message).toHaveClass("field-error");
    expect(leverage).toHaveAttribute("aria-invalid", "true");
    expect(leverage.getAttribute("aria-describedby")?.split(" ")).toContain(message.id);
    await waitFor(() => expect(leverage).toHaveFocus());
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
  });

  it("shows an error naming no known field at the top", async () => {
    const user = userEvent.setup();
    stubEngine(() => json(422, { error: { code: "validation_error", message: "surprise: not allowed", field: "surprise" } }));
    render(<RiskSettings />);
    const trades = await screen.findByLabelText("Max daily trades");
    await user.clear(trades);
    await user.type(trades, "30");
    await user.click(screen.getByRole("button", { name: "Save" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("surprise: not allowed");
  });

  it("checks only that a value is a plain number, leaving ranges to the engine", async () => {
    const user = userEvent.setup();
    const fetchMock = stubEngine((body) => json(422, { error: { code: "validation_error", message: "no", field: Object.keys(body)[0] } }));
    render(<RiskSettings />);
    const size = await screen.findByLabelText("Max position size (USD)");
    await user.clear(size);
    await user.type(size, "12abc");
    const positions = screen.getByLabelText("Max open positions");
    await user.clear(positions);
    await user.type(positions, "2.5");
    await user.click(screen.getByRole("button", { name: "Save" }));

    expect(screen.getByText("Max position size (USD): enter a number, such as 12.5.")).toBeInTheDocument();
    expect(screen.getByText("Max open positions: enter a whole number.")).toBeInTheDocument();
    await waitFor(() => expect(size).toHaveFocus());
    expect(putBodies(fetchMock)).toEqual([]);

    // Out of range but well formed: the engine decides.
    await user.clear(size);
    await user.type(size, "99999999999999999.999");
    await user.clear(positions);
    await user.type(positions, "5");
    await user.click(screen.getByRole("button", { name: "Save" }));
    await waitFor(() => expect(putBodies(fetchMock)).toEqual([{ max_position_size_usd: "99999999999999999.999" }]));
  });

  it("Reset restores the loaded values", async () => {
    const user = userEvent.setup();
    stubEngine(() => json(200, LOADED));
    render(<RiskSettings />);
    const leverage = await screen.findByLabelText("Max leverage");
    await user.clear(leverage);
    await user.type(leverage, "3");
    await user.click(screen.getByLabelText("Require a stop loss on every entry"));
    await user.click(screen.getByRole("button", { name: "Reset" }));
    expect(leverage).toHaveValue("10");
    expect(screen.getByLabelText("Require a stop loss on every entry")).toBeChecked();
  });
});
