// Who is signed in. The access token lives in memory and in sessionStorage (so a reload keeps
// the session, a closed tab ends it); it is never logged and never put in a URL.

import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import { api, configureClient, request } from "../api/client";
import type { DevToken, Me } from "../api/types";
import { logger } from "../lib/logger";

const STORAGE_KEY = "jadetrade.access_token";

interface AuthState {
  token: string | null;
  me: Me | null;
  /** Verify `token` with `GET /api/me`, then keep it. Throws the ApiError when refused. */
  signIn: (token: string) => Promise<void>;
  /** Ask the engine's local issuer for a development token (local mode only). */
  signInWithDevToken: () => Promise<void>;
  signOut: () => void;
  refreshMe: () => Promise<void>;
}

const AuthContext = createContext<AuthState | null>(null);

function storedToken(): string | null {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

function storeToken(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(STORAGE_KEY, token);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage disabled: the session lasts as long as the page
  }
}

export function AuthProvider({ children }: { children: ReactNode }) {
  const [token, setToken] = useState<string | null>(storedToken);
  const [me, setMe] = useState<Me | null>(null);

  const tokenRef = useRef<string | null>(token);
  tokenRef.current = token;

  const signOut = useCallback(() => {
    storeToken(null);
    tokenRef.current = null;
    setToken(null);
    setMe(null);
    logger.setUserId(null);
  }, []);

  // The client reads the token at call time, from a ref kept current during render: the
  // pages' effects run before this provider's own, and their first requests must carry it.
  // A 401 from any call ends the session.
  const configured = useRef(false);
  if (!configured.current) {
    configureClient(() => tokenRef.current, () => signOutRef.current());
    configured.current = true;
  }
  const signOutRef = useRef(signOut);
  signOutRef.current = signOut;

  const signIn = useCallback(async (candidate: string) => {
    const trimmed = candidate.trim();
    const who = await request<Me>("/api/me", { token: trimmed });
    storeToken(trimmed);
    tokenRef.current = trimmed;
    setToken(trimmed);
    setMe(who);
    logger.setUserId(who.id);
    logger.info("auth", "signed in", { tier: who.subscription_tier });
  }, []);

  const signInWithDevToken = useCallback(async () => {
    const issued = await request<DevToken>("/api/auth/dev-token", { method: "POST", anonymous: true });
    await signIn(issued.access_token);
  }, [signIn]);

  const refreshMe = useCallback(async () => {
    setMe(await api.get<Me>("/api/me"));
  }, []);

  // A token restored from sessionStorage is checked once on load.
  useEffect(() => {
    if (token && !me) {
      refreshMe().catch(() => signOut());
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  const value = useMemo(
    () => ({ token, me, signIn, signInWithDevToken, signOut, refreshMe }),
    [token, me, signIn, signInWithDevToken, signOut, refreshMe],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthState {
  const value = useContext(AuthContext);
  if (!value) throw new Error("useAuth outside AuthProvider");
  return value;
}
