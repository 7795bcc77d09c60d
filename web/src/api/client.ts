// The engine's REST API: one `request` function that adds the access token, parses the
// engine's error body (`{"error": {"code", "message", "field", "details"}}`) into `ApiError`,
// and never puts the token anywhere but the Authorization header.

export interface ErrorBody {
  code: string;
  message: string;
  field?: string | null;
  details?: Record<string, unknown> | null;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | null;
  readonly details: Record<string, unknown> | null;
  readonly retryAfterS: number | null;

  constructor(status: number, body: ErrorBody, retryAfterS: number | null = null) {
    super(body.message);
    this.name = "ApiError";
    this.status = status;
    this.code = body.code;
    this.field = body.field ?? null;
    this.details = body.details ?? null;
    this.retryAfterS = retryAfterS;
  }

  /** The message for display next to its field: without the "field: " prefix the engine adds. */
  get fieldMessage(): string {
    const prefix = this.field ? `${this.field}: ` : "";
    return prefix && this.message.startsWith(prefix) ? this.message.slice(prefix.length) : this.message;
  }
}

export const UNREACHABLE = "The engine could not be reached.";

/** What to tell the user about a failed call: the engine's message, or that it was unreachable. */
export function errorMessage(exc: unknown): string {
  return exc instanceof ApiError ? exc.message : UNREACHABLE;
}

/** A failed call's stable code for the logs ("network" when the engine was not reached). */
export function errorCode(exc: unknown): string {
  return exc instanceof ApiError ? exc.code : "network";
}

export type TokenSource = () => string | null;

let currentToken: TokenSource = () => null;
let onUnauthorized: (() => void) | null = null;

/** The auth provider registers where the token lives and what a 401 should do. */
export function configureClient(token: TokenSource, unauthorized: (() => void) | null): void {
  currentToken = token;
  onUnauthorized = unauthorized;
}

export function accessToken(): string | null {
  return currentToken();
}

export type Query = Record<string, string | number | boolean | null | undefined>;

export function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === null || value === undefined || value === "") continue;
    params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

export interface RequestOptions {
  method?: "GET" | "POST" | "PUT" | "DELETE";
  body?: unknown;
  query?: Query;
  signal?: AbortSignal;
  /** Send without the Authorization header (sign-in, auth options). */
  anonymous?: boolean;
  /** Use this token instead of the signed-in one (checking a token before keeping it). */
  token?: string;
}

function retryAfter(response: Response): number | null {
  const value = response.headers.get("Retry-After");
  if (!value) return null;
  const seconds = Number.parseInt(value, 10);
  return Number.isFinite(seconds) ? seconds : null;
}

/** Turn a non-2xx response into an ApiError, whatever its body. */
export async function errorFrom(response: Response): Promise<ApiError> {
  let body: ErrorBody = { code: `http_${response.status}`, message: response.statusText || "request failed" };
  try {
    const parsed: unknown = await response.json();
    if (parsed && typeof parsed === "object" && "error" in parsed) {
      const error = (parsed as { error: ErrorBody }).error;
      if (error && typeof error.code === "string" && typeof error.message === "string") body = error;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, body, retryAfter(response));
}

export function authHeaders(anonymous = false, override?: string): Record<string, string> {
  const token = override ?? (anonymous ? null : currentToken());
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export async function request<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json", ...authHeaders(options.anonymous, options.token) };
  let body: string | undefined;
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  const response = await fetch(withQuery(path, options.query), {
    method: options.method ?? "GET",
    headers,
    body,
    signal: options.signal,
  });
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 && !options.anonymous && !options.token) onUnauthorized?.();
    throw error;
  }
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

export const api = {
  get: <T>(path: string, query?: Query, signal?: AbortSignal) => request<T>(path, { query, signal }),
  post: <T>(path: string, body?: unknown) => request<T>(path, { method: "POST", body }),
  put: <T>(path: string, body: unknown) => request<T>(path, { method: "PUT", body }),
  delete: <T>(path: string) => request<T>(path, { method: "DELETE" }),
};
