// Sign-in: the engine's development token in local mode, or a pasted Cognito access token.

import { useEffect, useId, useState, type FormEvent } from "react";
import { errorMessage, request } from "../api/client";
import type { AuthOptions } from "../api/types";
import { useAuth } from "../auth/AuthContext";

export function SignIn() {
  const { signIn, signInWithDevToken } = useAuth();
  const [options, setOptions] = useState<AuthOptions | null>(null);
  const [pasted, setPasted] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const tokenId = useId();

  useEffect(() => {
    request<AuthOptions>("/api/auth/options", { anonymous: true })
      .then(setOptions)
      .catch(() => setOptions(null));
  }, []);

  async function attempt(action: () => Promise<void>) {
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (exc) {
      setError(errorMessage(exc));
    } finally {
      setBusy(false);
    }
  }

  function submit(event: FormEvent) {
    event.preventDefault();
    if (!pasted.trim()) {
      setError("Paste an access token first.");
      return;
    }
    void attempt(() => signIn(pasted));
  }

  return (
    <main id="main" className="signin">
      <section className="card signin-card" aria-labelledby="signin-title">
        <h1 id="signin-title">Sign in to JadeTrade</h1>
        {options?.dev_token && (
          <>
            <p>This engine runs in local mode: it can issue a development token for the demo account.</p>
            <button type="button" className="primary" disabled={busy} onClick={() => void attempt(signInWithDevToken)}>
              Use dev token
            </button>
            <p className="divider">or</p>
          </>
        )}
        <form onSubmit={submit} noValidate>
          <label htmlFor={tokenId}>Access token</label>
          <textarea
            id={tokenId}
            rows={4}
            value={pasted}
            autoComplete="off"
            spellCheck={false}
            onChange={(event) => setPasted(event.target.value)}
            aria-describedby={error ? `${tokenId}-error` : undefined}
            aria-invalid={error ? true : undefined}
          />
          <p className="hint">A Cognito access token for your account. It is kept for this browser tab only.</p>
          {error && (
            <p id={`${tokenId}-error`} role="alert" className="error">
              {error}
            </p>
          )}
          <button type="submit" disabled={busy}>
            Sign in
          </button>
        </form>
      </section>
    </main>
  );
}
