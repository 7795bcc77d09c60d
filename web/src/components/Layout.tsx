// The app's frame: a skip link, the header with navigation, connection state, theme toggle and
// sign-out, the page itself, and the assistant's widget.

import { useEffect, useState, type ReactNode } from "react";
import { NavLink } from "react-router-dom";
import { useAuth } from "../auth/AuthContext";
import { ChatWidget } from "../chat/ChatWidget";
import { applyTheme, initialTheme, type Theme } from "../lib/theme";
import { ConnectionStatus } from "./ConnectionStatus";

const PAGES: Array<[string, string]> = [
  ["/", "Dashboard"],
  ["/signals", "Signals"],
  ["/trades", "Trades"],
  ["/risk", "Risk settings"],
  ["/exchange-keys", "Exchange keys"],
  ["/webhook", "Webhook"],
];

export function Layout({ children }: { children: ReactNode }) {
  const { me, signOut } = useAuth();
  const [theme, setTheme] = useState<Theme>(initialTheme);
  const [menuOpen, setMenuOpen] = useState(false);

  useEffect(() => applyTheme(theme), [theme]);

  return (
    <div className="app">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <div className="brand">
          <span aria-hidden="true" className="brand-mark">
            ◆
          </span>{" "}
          JadeTrade
        </div>
        <button
          type="button"
          className="menu-button"
          aria-expanded={menuOpen}
          aria-controls="primary-nav"
          onClick={() => setMenuOpen((open) => !open)}
        >
          Menu
        </button>
        <nav id="primary-nav" aria-label="Primary" className={menuOpen ? "nav open" : "nav"}>
          <ul>
            {PAGES.map(([to, label]) => (
              <li key={to}>
                <NavLink to={to} end={to === "/"} onClick={() => setMenuOpen(false)}>
                  {label}
                </NavLink>
              </li>
            ))}
          </ul>
        </nav>
        <div className="topbar-tools">
          <ConnectionStatus />
          <button
            type="button"
            className="ghost"
            aria-label={`Switch to ${theme === "dark" ? "light" : "dark"} theme`}
            onClick={() => setTheme(theme === "dark" ? "light" : "dark")}
          >
            {theme === "dark" ? "☀" : "☾"}
          </button>
          {me && (
            <span className="who" title={me.email}>
              {me.email}
            </span>
          )}
          <button type="button" className="ghost" onClick={signOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {children}
      </main>
      <ChatWidget />
    </div>
  );
}
