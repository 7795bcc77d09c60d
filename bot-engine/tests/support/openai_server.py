"""A local stand-in for the OpenAI Embeddings API, speaking its HTTP wire protocol.

The real SDK (`openai.AsyncOpenAI(base_url=server.url)`) talks to it unchanged. Served on a
free loopback port (stdlib server in a background thread): `POST /v1/embeddings`, with the
API's validation (400 naming the `param`; unknown model 404 `model_not_found`), its
`Authorization: Bearer` check (401 `invalid_api_key`, the key masked in the message) and
its answer shape, in `float` or `base64` (little-endian float32) encoding — the SDK asks
for base64 unless told otherwise and decodes it, so both must carry the same numbers.

The vectors are NOT OpenAI's models: they are deterministic feature hashing (see `embed`):
word unigrams and adjacent bigrams hashed into signed buckets, so the same text always gets
the same vector and texts sharing words score a higher cosine than unrelated ones — enough
for retrieval tests, nothing more. `usage` counts about 1.3 tokens per word.

Requests are recorded in `requests` (without the key); faults are injected with `fail_next`
and `set_latency`; `clear` resets both.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import struct
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit

from tests.support.http_server import BackgroundHttpServer, KeepAliveHandler, OwnedHttpServer

MODELS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
MAX_INPUTS = 2048
MAX_INPUT_TOKENS = 8192
_FIELDS = frozenset({"input", "model", "dimensions", "encoding_format", "user"})
_WORD = re.compile(r"\w+")


# --------------------------------------------------------------------------- the vectors
def embed(text: str, dimensions: int, model: str = "text-embedding-3-small") -> list[float]:
    """The stand-in's vector for `text`: lower-cased `\\w+` words and adjacent word pairs,
    each hashed (blake2b, keyed by the model, so models' spaces differ) to a bucket in
    [0, dimensions) and a sign, weighted 1 + ln(term frequency), L2-normalised, and rounded
    to float32 as the API's numbers are. A text without words hashes its characters; the
    vector is never all zeros."""
    words = _WORD.findall(text.lower())
    terms = words + [f"{a} {b}" for a, b in pairwise(words)]
    vector = _hashed(terms or list(text), dimensions, model)
    if not any(vector):  # every term cancelled out: fall back to the whole text
        vector = _hashed([text], dimensions, model)
    norm = math.sqrt(sum(x * x for x in vector))
    return list(
        struct.unpack(
            f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(x / norm for x in vector))
        )
    )


def _hashed(terms: list[str], dimensions: int, model: str) -> list[float]:
    vector = [0.0] * dimensions
    for term, count in Counter(terms).items():
        digest = hashlib.blake2b(term.encode(), digest_size=8, key=model.encode()[:64]).digest()
        index = int.from_bytes(digest[:4], "little") % dimensions
        vector[index] += (1.0 if digest[4] & 1 else -1.0) * (1.0 + math.log(count))
    return vector


def count_tokens(text: str) -> int:
    """About 1.3 tokens per word, at least 1."""
    return max(1, math.ceil(len(_WORD.findall(text)) * 1.3))


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _mask(key: str) -> str:
    """A key as the API echoes it: start and end only."""
    if len(key) <= 8:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


# --------------------------------------------------------------------------- recording
@dataclass(frozen=True)
class RecordedRequest:
    """One request as received: header names lower-cased, `authorization` left out; `body`
    is the parsed JSON (None when there was none or it did not parse)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def inputs(self) -> list[str]:
        """The texts asked for (a lone string as a list of one)."""
        value = self.body.get("input") if isinstance(self.body, dict) else None
        if isinstance(value, str):
            return [value]
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


class ApiError(Exception):
    """An error answer in the API's `{"error": {...}}` shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # noqa: A002 - the API's field name
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class _Fault:
    status: int
    retry_after: float | None


def _invalid_input(message: str = "'$.input' is invalid.") -> ApiError:
    return ApiError(400, message, param="input")


# --------------------------------------------------------------------------- HTTP
class _Handler(KeepAliveHandler):
    server: OwnedHttpServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        owner: OpenAIServer = self.server.owner
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, payload, answer_headers = owner.answer(self.command, self.path, headers, body)
        self.reply(status, payload, headers=answer_headers)


class OpenAIServer(BackgroundHttpServer):
    """The Embeddings API on a free loopback port; pass `url` as the SDK's `base_url`."""

    def __init__(self) -> None:
        super().__init__(_Handler)
        self.api_key = "sk-test-" + secrets.token_urlsafe(32)
        self._lock = threading.Lock()
        self._released = threading.Event()  # ends every pending delay (clear, stop)
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._latency_s = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, oldest first."""
        with self._lock:
            return list(self._requests)

    def vector(
        self, text: str, model: str = "text-embedding-3-small", dimensions: int | None = None
    ) -> list[float]:
        """The vector this server answers for `text` (to check stored embeddings against)."""
        return embed(text, dimensions or MODELS[model], model)

    # ------------------------------------------------------------------ faults
    def fail_next(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """Answer the next `count` authenticated requests with this error: 429 is
        `rate_limit_exceeded` (with `retry-after` when given), 5xx `server_error`."""
        with self._lock:
            self._faults.extend([_Fault(status, retry_after)] * count)

    def set_latency(self, seconds: float) -> None:
        """Answer every request after `seconds` (a slow API); `clear` ends it."""
        with self._lock:
            self._latency_s = seconds
            self._released.clear()

    def clear(self) -> None:
        """Forget recorded requests and faults."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._latency_s = 0.0
            self._released.set()

    def stop(self) -> None:
        self._released.set()
        super().stop()

    # ------------------------------------------------------------------ answering
    def answer(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, headers) for one request; called from the handler threads."""
        started = time.monotonic()
        request_id = "req_" + secrets.token_hex(16)
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        path = urlsplit(target).path
        recorded = RecordedRequest(
            method=method,
            path=path,
            headers={k: v for k, v in headers.items() if k != "authorization"},
            body=parsed,
        )
        with self._lock:
            self._requests.append(recorded)
            latency = self._latency_s
        if latency > 0:
            self._released.wait(latency)
        answer_headers = {"x-request-id": request_id}
        try:
            self._authenticate(headers.get("authorization"))
            with self._lock:
                fault = self._faults.pop(0) if self._faults else None
            if fault is not None:
                raise _fault_error(fault, parsed)
            if path.rstrip("/") != "/v1/embeddings":
                raise ApiError(404, f"Invalid URL ({method} {path})")
            if method != "POST":
                raise ApiError(405, f"Invalid method for URL ({method} {path})")
            if not body or not isinstance(parsed, dict):
                raise ApiError(
                    400,
                    "We could not parse the JSON body of your request. (HINT: This likely "
                    "means you aren't using your HTTP library correctly.)",
                )
            result = _embeddings(parsed)
        except ApiError as error:
            return error.status, json.dumps(error.body).encode(), answer_headers | error.headers
        answer_headers["openai-model"] = result["model"]
        answer_headers["openai-processing-ms"] = str(int((time.monotonic() - started) * 1000))
        return 200, json.dumps(result).encode(), answer_headers

    def _authenticate(self, authorization: str | None) -> None:
        if not authorization:
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or key.strip() != self.api_key:
            raise ApiError(
                401,
                f"Incorrect API key provided: {_mask(key.strip())}. You can find your API key "
                "at https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )


def _fault_error(fault: _Fault, body: Any) -> ApiError:
    headers = {} if fault.retry_after is None else {"retry-after": f"{fault.retry_after:g}"}
    if fault.status == 429:
        model = body.get("model") if isinstance(body, dict) else None
        return ApiError(
            429,
            f"Rate limit reached for {model} on requests per min (RPM): Limit 3000, "
            "Used 3000, Requested 1. Please try again later.",
            type="requests",
            code="rate_limit_exceeded",
            headers=headers,
        )
    if fault.status >= 500:
        return ApiError(
            fault.status,
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
            code="server_error",
            headers=headers,
        )
    return ApiError(fault.status, "Injected error.", headers=headers)


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    """The answer to a well-formed JSON body, or the API's error for it."""
    for key in body:
        if key not in _FIELDS:
            raise ApiError(400, f"Unrecognized request argument supplied: {key}")
    model = body.get("model")
    if model is None:
        raise ApiError(400, "you must provide a model parameter")
    if "input" not in body:
        raise ApiError(400, "'input' is a required property", param="input")
    texts = _inputs(body["input"])
    if not isinstance(model, str) or model not in MODELS:
        raise ApiError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    native = MODELS[model]
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if "-3-" not in model:
            raise ApiError(
                400, "This model does not support specifying dimensions.", param="dimensions"
            )
        if not isinstance(dimensions, int) or isinstance(dimensions, bool):
            raise ApiError(
                400, "Invalid type for 'dimensions': expected an integer.", param="dimensions"
            )
        if not 1 <= dimensions <= native:
            raise ApiError(
                400,
                f"Invalid value for 'dimensions' = {dimensions}. Must be between 1 and {native}.",
                param="dimensions",
                code="invalid_value",
            )
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise ApiError(
            400,
            f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    if "user" in body and not isinstance(body["user"], str):
        raise ApiError(400, "Invalid type for 'user': expected a string.", param="user")
    tokens = [count_tokens(text) for text in texts]
    for text_tokens in tokens:
        if text_tokens > MAX_INPUT_TOKENS:
            raise ApiError(
                400,
                f"This model's maximum context length is {MAX_INPUT_TOKENS} tokens, however "
                f"you requested {text_tokens} tokens in your input. Please reduce your input.",
                param="input",
            )
    size = dimensions or native
    data = []
    for index, text in enumerate(texts):
        vector = embed(text, size, model)
        data.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": _base64(vector) if encoding == "base64" else vector,
            }
        )
    total = sum(tokens)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }


def _inputs(value: Any) -> list[str]:
    """The texts of `input`: a non-empty string or 1..2048 of them. Token-id input is
    refused: this stand-in embeds text."""
    if isinstance(value, str):
        if not value:
            raise _invalid_input()
        return [value]
    if not isinstance(value, list) or not value:
        raise _invalid_input()
    if len(value) > MAX_INPUTS:
        raise _invalid_input(f"'$.input' is invalid: at most {MAX_INPUTS} inputs are allowed.")
    if any(isinstance(v, int | list) for v in value):
        raise _invalid_input("'$.input' is invalid: this stand-in does not take token-id input.")
    if not all(isinstance(v, str) and v for v in value):
        raise _invalid_input()
    return list(value)
