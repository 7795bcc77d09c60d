// The webhook page against a stubbed engine: URL, tokens (issued once, revoked), templates.

import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import type { WebhookToken } from "../api/types";
import { TEMPLATES, Webhook } from "./Webhook";

vi.mock("../lib/logger", () => ({ logger: { info: vi.fn(), warn: vi.fn(), error: vi.fn() } }));

const URL_ = "https://engine.example/api/webhooks/tradingview";
const TOKENS: WebhookToken[] = [
  { id: "t1", name: "btc-swing", token_prefix: "jt_wh_ab12", created_at: "2026-04-01T10:00:00Z", last_used_at: null, revoked_at: null },
  { id: "t2", name: "old", token_prefix: "jt_wh_zz99", created_at: "2026-01-01T10:00:00Z", last_used_at: "2026-02-01T10:00:00Z", revoked_at: "2026-03-01T10:00:00Z" },
];

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

function stubEngine() {
  return vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
    const path = String(input);
    const method = init?.method ?? "GET";
    if (path === "/api/auth/options") return json(200, { auth_mode: "local", dev_token: true, webhook_url: URL_ });
    if (path === "/api/webhook-tokens" && method === "GET") return json(200, TOKENS);
    if (path === "/api/webhook-tokens" && method === "POST") {
      const { name } = JSON.parse(String(init?.body)) as { name: string };
      return json(201, { id: "t3", name, token_prefix: "jt_wh_new1", created_at: "2026-05-01T10:00:00Z", last_used_at: null, revoked_at: null, token: "jt_wh_new1SECRETSECRET" });
    }
    if (path === "/api/webhook-tokens/t1" && method === "DELETE") return json(200, { ...TOKENS[0], revoked_at: "2026-05-01T11:00:00Z" });
    return new Response(null, { status: 204 });
  });
}

describe("Webhook", () => {
  it("shows the webhook URL and copies it", async () => {
    const user = userEvent.setup();
    const fetchMock = stubEngine();
    render(<Webhook />);
    expect(screen.getByRole("heading", { level: 1, name: "Webhook" })).toBeInTheDocument();
    const input = await screen.findByLabelText("Webhook URL");
    expect(input).toHaveValue(URL_);
    expect(input).toHaveAttribute("readonly");
    const optionsCall = fetchMock.mock.calls.find(([path]) => String(path) === "/api/auth/options");
    expect(optionsCall?.[1]?.headers).not.toHaveProperty("Authorization");

    await user.click(screen.getByRole("button", { name: "Copy URL" }));
    expect(await screen.findByText("Copied")).toBeInTheDocument();
    expect(await navigator.clipboard.readText()).toBe(URL_);
  });

  it("lists tokens and revokes one after confirming", async () => {
    const user = userEvent.setup();
    const fetchMock = stubEngine();
    render(<Webhook />);
    const revoke = await screen.findByRole("button", { name: "Revoke token btc-swing (jt_wh_ab12)" });
    expect(screen.queryByRole("button", { name: /Revoke token old/ })).not.toBeInTheDocument();
    expect(screen.getByText("jt_wh_ab12…")).toBeInTheDocument();

    await user.click(revoke);
    expect(screen.getByRole("button", { name: "Cancel" })).toHaveFocus();
    await user.click(screen.getByRole("button", { name: "Yes, revoke" }));
    expect(await screen.findByText(/Token btc-swing revoked/)).toBeInTheDocument();
    expect(fetchMock.mock.calls.some(([path, init]) => String(path) === "/api/webhook-tokens/t1" && init?.method === "DELETE")).toBe(true);
    const row = screen.getByText("btc-swing").closest("tr");
    expect(row && within(row).getByText("revoked")).toBeInTheDocument();
  });

  it("shows a new token once and fills it into the templates", async () => {
    const user = userEvent.setup();
    stubEngine();
    render(<Webhook />);
    await screen.findByRole("button", { name: "Revoke token btc-swing (jt_wh_ab12)" });
    for (const template of TEMPLATES) {
      expect(screen.getByRole("button", { name: `Copy ${template.name} template` })).toBeInTheDocument();
    }
    expect(screen.getAllByText(/"token": "<TOKEN>"/)).toHaveLength(TEMPLATES.length);

    await user.type(screen.getByLabelText("Token name"), "eth-scalp");
    await user.click(screen.getByRole("button", { name: "Issue token" }));
    expect(await screen.findByLabelText("New webhook token")).toHaveValue("jt_wh_new1SECRETSECRET");
    expect(screen.getByText(/it will not be shown again/)).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Revoke token eth-scalp (jt_wh_new1)" })).toBeInTheDocument();
    expect(screen.getAllByText(/"token": "jt_wh_new1SECRETSECRET"/)).toHaveLength(TEMPLATES.length);
    expect(screen.getByLabelText("Token name")).toHaveValue("");
    expect(JSON.stringify(sessionStorage)).not.toContain("SECRET");
    expect(JSON.stringify(localStorage)).not.toContain("SECRET");

    await user.click(screen.getByRole("button", { name: "Copy Close long template" }));
    expect(await navigator.clipboard.readText()).toBe(
      '{"token": "jt_wh_new1SECRETSECRET", "action": "long_exit", "symbol": "{{ticker}}", "price": "{{close}}"}',
    );

    await user.click(screen.getByRole("button", { name: "Hide token" }));
    expect(screen.queryByLabelText("New webhook token")).not.toBeInTheDocument();
    expect(screen.getAllByText(/"token": "<TOKEN>"/)).toHaveLength(TEMPLATES.length);
  });
});
