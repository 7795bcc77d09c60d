// The exchange keys page against a stubbed engine: masked list, removal, adding (secrets cleared).

import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import type { ExchangeKey } from "../api/types";
import { ExchangeKeys } from "./ExchangeKeys";

vi.mock("../lib/logger", () => ({ logger: { info: vi.fn(), warn: vi.fn(), error: vi.fn() } }));

const KEY: ExchangeKey = {
  id: "k1",
  exchange: "bybit",
  mode: "demo",
  label: "swing",
  api_key_hint: "****abcd",
  permissions: { can_read: true, can_trade: true, can_withdraw: false },
  is_active: true,
  is_valid: true,
  last_used_at: null,
  last_validated_at: "2026-04-01T10:00:00Z",
  created_at: "2026-04-01T10:00:00Z",
};

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

function stubEngine(post: () => Response) {
  return vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
    const path = String(input);
    const method = init?.method ?? "GET";
    if (path === "/api/exchange-keys" && method === "GET") return json(200, [KEY]);
    if (path === "/api/exchange-keys" && method === "POST") return post();
    if (path === "/api/exchange-keys/k1" && method === "DELETE") return new Response(null, { status: 204 });
    return new Response(null, { status: 204 });
  });
}

async function fillForm(user: ReturnType<typeof userEvent.setup>) {
  await user.selectOptions(screen.getByLabelText("Exchange"), "binance");
  await user.selectOptions(screen.getByLabelText("Mode"), "live");
  await user.type(screen.getByLabelText("Label"), "main");
  await user.type(screen.getByLabelText("API key"), "KEY12345678");
  await user.type(screen.getByLabelText("API secret"), "SECRET12345678");
  await user.type(screen.getByLabelText("Passphrase"), "phrase");
}

describe("ExchangeKeys", () => {
  it("lists keys masked and removes one after confirming", async () => {
    const user = userEvent.setup();
    const fetchMock = stubEngine(() => json(500, {}));
    render(<ExchangeKeys />);
    expect(screen.getByRole("heading", { level: 1, name: "Exchange keys" })).toBeInTheDocument();
    const remove = await screen.findByRole("button", { name: "Remove bybit key swing" });
    const row = remove.closest("tr");
    expect(row).not.toBeNull();
    expect(within(row as HTMLElement).getByText("****abcd")).toBeInTheDocument();
    expect(within(row as HTMLElement).getByText("read, trade")).toBeInTheDocument();
    expect(within(row as HTMLElement).getByText("valid")).toBeInTheDocument();

    await user.click(remove);
    await user.click(screen.getByRole("button", { name: "Yes, remove" }));
    expect(await screen.findByText("Removed the Bybit key swing.")).toBeInTheDocument();
    expect(fetchMock.mock.calls.some(([path, init]) => String(path) === "/api/exchange-keys/k1" && init?.method === "DELETE")).toBe(true);
    expect(within(row as HTMLElement).getByText("removed")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Remove bybit key swing" })).not.toBeInTheDocument();
  });

  it("puts the engine's refusal on the field it names and clears the secrets", async () => {
    const user = userEvent.setup();
    const fetchMock = stubEngine(() =>
      json(422, { error: { code: "withdrawal_permission", message: "this key can withdraw funds; create a key without withdrawal permission", field: "api_key" } }),
    );
    render(<ExchangeKeys />);
    await screen.findByRole("button", { name: "Remove bybit key swing" });
    expect(screen.getByLabelText("API secret")).toHaveAttribute("type", "password");
    expect(screen.getByLabelText("Passphrase")).toHaveAttribute("type", "password");
    await fillForm(user);
    await user.click(screen.getByRole("button", { name: "Add key" }));

    const message = await screen.findByText("this key can withdraw funds; create a key without withdrawal permission");
    expect(message).toHaveClass("field-error");
    const apiKey = screen.getByLabelText("API key");
    expect(apiKey).toHaveAttribute("aria-invalid", "true");
    expect(apiKey.getAttribute("aria-describedby")).toContain(message.id);
    await waitFor(() => expect(apiKey).toHaveFocus());
    expect(apiKey).toHaveValue("");
    expect(screen.getByLabelText("API secret")).toHaveValue("");
    expect(screen.getByLabelText("Passphrase")).toHaveValue("");

    const post = fetchMock.mock.calls.find(([, init]) => init?.method === "POST");
    expect(JSON.parse(String(post?.[1]?.body))).toEqual({
      exchange: "binance",
      mode: "live",
      label: "main",
      api_key: "KEY12345678",
      api_secret: "SECRET12345678",
      passphrase: "phrase",
    });
  });

  it("announces an added key by its hint and clears the secrets", async () => {
    const user = userEvent.setup();
    stubEngine(() => json(201, { ...KEY, id: "k2", exchange: "binance", mode: "live", label: "main", api_key_hint: "****5678" }));
    render(<ExchangeKeys />);
    await screen.findByRole("button", { name: "Remove bybit key swing" });
    await fillForm(user);
    await user.click(screen.getByRole("button", { name: "Add key" }));
    expect(await screen.findByText("Key added: Binance live key ****5678.")).toBeInTheDocument();
    expect(screen.getByLabelText("API key")).toHaveValue("");
    expect(screen.getByLabelText("API secret")).toHaveValue("");
    expect(screen.getByLabelText("Passphrase")).toHaveValue("");
    expect(document.body.textContent).not.toContain("SECRET12345678");
  });

  it("shows a refusal naming no field at the top", async () => {
    const user = userEvent.setup();
    stubEngine(() => json(503, { error: { code: "exchange_unreachable", message: "binance could not be reached to check the key; try again shortly" } }));
    render(<ExchangeKeys />);
    await screen.findByRole("button", { name: "Remove bybit key swing" });
    await fillForm(user);
    await user.click(screen.getByRole("button", { name: "Add key" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("binance could not be reached to check the key; try again shortly");
    expect(screen.getByLabelText("API secret")).toHaveValue("");
  });
});
