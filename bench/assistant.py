"""Benchmark 4: the assistant — retrieval quality per embedding provider, retrieval latency
over 10,000 passages, and the engine's own time to the first streamed byte of an answer.

1. Retrieval quality: the labelled questions of bot-engine/tests/ai/retrieval_questions.json
   (64 paraphrased user questions, each with the document that answers it) against the
   shipped documents. Local model (indexed by `jadetrade run` at start): vector, full-text
   and hybrid ranking. OpenAI path: the same documents embedded through the real SDK by the
   local stand-in of the embeddings API (tests/support/openai_server.py) in a database of
   its own. Its vectors are feature hashing, NOT text-embedding-3-small: that row measures
   the plumbing, not OpenAI's quality. recall@k: the labelled document is among the first k
   distinct documents (strict), or one of the acceptable ones is (lenient).
2. Retrieval latency: a database of its own holding 10,000 passages — the real ones (about
   220) and the rest made from them (text: sentences of two real passages; vector: their normalised
   blend plus a little noise, so neighbourhoods look like real ones). 320 queries (the
   questions, cycled): p50/p95 of the query embedding alone, of the HNSW vector query, of the
   full-text query over all passages, and of the whole hybrid `search()` (embedding, the
   HNSW query for 100 candidates, their full-text rank, rows). Baseline in the same run: the
   exact vector query (index scans off), and how many of its top 10 the HNSW query (at
   `hnsw.ef_search` 100, as `search()` runs it) also returns.
3. Time to first byte: 200 sequential `POST /api/chat/stream` each, measured by one client
   from the request to the first `data:` content chunk. Baseline: the bare FastAPI app's SSE
   endpoint. Engine offline mode: the engine bench/run.py started. Engine with Claude: a
   second API process (`jadetrade serve --no-workers`, same database and Redis) whose
   Messages API is the local stand-in (tests/support/anthropic_server.py, answering at once);
   the stand-in's own time (request read → first delta written, same clock) is subtracted,
   which leaves the engine's own time excluding the model.

    python bench/run.py --only assistant
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
import uuid
from typing import Any

import asyncpg
import httpx
import orjson
from app.ai.embeddings import LocalEmbedder, OpenAIEmbedder
from app.ai.knowledge_base import check_model, index_chunks, nearest, read_folder, search
from app.ai.retrieval_eval import evaluate, load_questions
from app.core.database import create_engine, create_sessionmaker, ensure_database
from app.core.migrations import upgrade_to_head
from sqlalchemy import text

from context import Context, ms
from processes import JADETRADE, REPO, Engine, engine_env, wait_healthy

# The local stand-ins of the Messages and embeddings APIs live with the engine's tests.
sys.path.insert(0, str(REPO / "bot-engine"))
from tests.support.anthropic_server import AnthropicServer
from tests.support.openai_server import OpenAIServer

KNOWLEDGE = REPO / "docs" / "knowledge"
QUESTIONS = REPO / "bot-engine" / "tests" / "ai" / "retrieval_questions.json"
# Written after the search was tuned on QUESTIONS: an estimate the tuning has not seen.
HELD_OUT = REPO / "bot-engine" / "tests" / "ai" / "retrieval_questions_holdout.json"
PASSAGES = 10_000
QUERIES = 320
TTFB_REQUESTS = 200
CHAT_ENV = {"CHAT_MONTHLY_MESSAGES_PRO": "1000000000"}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def p50_p95(values: list[float]) -> dict[str, float]:
    return {"p50": pct(values, 50), "p95": pct(values, 95), "n": len(values)}


async def _scratch(engine: Engine, name: str) -> str:
    """A freshly migrated database on the engine's PostgreSQL."""
    url = engine.database_dsn.rsplit("/", 1)[0] + "/" + name
    admin = await asyncpg.connect(engine.database_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    await ensure_database(url)
    await upgrade_to_head(url)
    return url


# --------------------------------------------------------------------------- 1. quality
async def quality(ctx: Context, local: LocalEmbedder) -> dict[str, Any]:
    questions = load_questions(QUESTIONS)
    results: dict[str, Any] = {"questions": len(questions)}
    db = create_engine(ctx.engine.database_dsn, pool_size=2, max_overflow=0)
    try:
        async with create_sessionmaker(db)() as session:
            await check_model(session, local)
            for mode in ("vector", "text", "hybrid"):
                recall = await evaluate(session, local, questions, mode=mode)
                results[f"local/{mode}"] = _recall(recall)
            held_out = load_questions(HELD_OUT)
            results["held_out_questions"] = len(held_out)
            for mode in ("vector", "hybrid"):
                recall = await evaluate(session, local, held_out, mode=mode)
                results[f"local/{mode} (held-out)"] = _recall(recall)
    finally:
        await db.dispose()

    url = await _scratch(ctx.engine, "bench_kb_openai")
    db = create_engine(url, pool_size=2, max_overflow=0)
    with OpenAIServer() as server:
        remote = OpenAIEmbedder(server.api_key, base_url=server.url)
        try:
            sessionmaker = create_sessionmaker(db)
            await index_chunks(sessionmaker, remote, read_folder(KNOWLEDGE))
            async with sessionmaker() as session:
                for mode in ("vector", "hybrid"):
                    recall = await evaluate(session, remote, questions, mode=mode)
                    results[f"openai-stand-in/{mode}"] = _recall(recall)
        finally:
            await remote.aclose()
            await db.dispose()
    return results


def _recall(recall: Any) -> dict[str, float]:
    return {
        "r1": recall.rate(1),
        "r3": recall.rate(3),
        "r1_lenient": recall.rate(1, lenient=True),
        "r3_lenient": recall.rate(3, lenient=True),
    }


# --------------------------------------------------------------------------- 2. latency
def _literal(vector: list[float]) -> str:
    return "[" + ",".join(f"{x:.6f}" for x in vector) + "]"


async def _fill(url: str, source_dsn: str, rng: random.Random) -> int:
    """The real passages plus synthetic ones, up to PASSAGES rows."""
    src = await asyncpg.connect(source_dsn)
    try:
        rows = await src.fetch(
            "SELECT source_id, document, title, content, embedding::text AS v, embedding_model "
            "FROM knowledge_embeddings WHERE source_type = 'docs'"
        )
    finally:
        await src.close()
    real = [(r, orjson.loads(r["v"])) for r in rows]
    sentences = [s.strip() + "." for r, _ in real for s in r["content"].split(".") if s.strip()]
    records = []
    for n in range(PASSAGES):
        if n < len(real):
            row, vector = real[n]
            title, content, document = row["title"], row["content"], row["document"]
        else:
            (a, va), (b, vb) = rng.sample(real, 2)
            mix = rng.uniform(0.3, 0.7)
            blend = [
                mix * x + (1 - mix) * y + rng.gauss(0, 0.01) for x, y in zip(va, vb, strict=True)
            ]
            norm = sum(x * x for x in blend) ** 0.5
            vector = [x / norm for x in blend]
            title = f"{a['title']} / {b['title']}"
            content = " ".join(rng.sample(sentences, 6))
            document = f"synthetic-{n}.md"
        records.append(
            (
                "docs",
                f"{document}#{n}",
                document,
                n,
                title,
                content,
                uuid.uuid4().hex + uuid.uuid4().hex,
                _literal(vector),
                len(vector),
                real[0][0]["embedding_model"],
            )
        )
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.executemany(
            "INSERT INTO knowledge_embeddings (source_type, source_id, document, chunk_index, "
            "title, content, content_hash, embedding, embedding_dimensions, embedding_model) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8::vector, $9, $10)",
            records,
        )
        await conn.execute("ANALYZE knowledge_embeddings")
        return int(await conn.fetchval("SELECT count(*) FROM knowledge_embeddings"))
    finally:
        await conn.close()


async def latency(ctx: Context, local: LocalEmbedder) -> dict[str, Any]:
    rng = random.Random(7)  # noqa: S311 - synthetic data, not secrets
    url = await _scratch(ctx.engine, "bench_kb_10k")
    began = time.perf_counter()
    count = await _fill(url, ctx.engine.database_dsn, rng)
    fill_s = time.perf_counter() - began
    questions = [q.question for q in load_questions(QUESTIONS)]
    queries = [questions[n % len(questions)] for n in range(QUERIES)]
    timings: dict[str, list[float]] = {k: [] for k in ("embed", "hnsw", "exact", "text", "search")}
    overlap: list[float] = []
    db = create_engine(url, pool_size=2, max_overflow=0)
    try:
        async with create_sessionmaker(db)() as session:
            # As `search()` sets it for its hybrid pool; also what the `hnsw` line runs with.
            await session.execute(text("SET hnsw.ef_search = 100"))
            await search(session, local, "warm up", limit=4)  # model loaded, plans cached
            for question in queries:
                t = time.perf_counter()
                (vector,) = await local.embed([question])
                timings["embed"].append(time.perf_counter() - t)

                statement = nearest(vector, local.model).limit(10)
                t = time.perf_counter()
                approximate = [r[0] for r in await session.execute(statement)]
                timings["hnsw"].append(time.perf_counter() - t)

                await session.execute(text("SET enable_indexscan = off"))
                t = time.perf_counter()
                exact = [r[0] for r in await session.execute(statement)]
                timings["exact"].append(time.perf_counter() - t)
                await session.execute(text("SET enable_indexscan = on"))
                overlap.append(len(set(exact) & set(approximate)) / len(exact))

                t = time.perf_counter()
                await search(session, local, question, limit=4, mode="text")
                timings["text"].append(time.perf_counter() - t)

                t = time.perf_counter()
                await search(session, local, question, limit=4)
                timings["search"].append(time.perf_counter() - t)
    finally:
        await db.dispose()
    return {
        "passages": count,
        "fill_s": fill_s,
        "hnsw_overlap_at_10": sum(overlap) / len(overlap),
        **{name: p50_p95(values) for name, values in timings.items()},
    }


# --------------------------------------------------------------------------- 3. first byte
async def _first_bytes(
    client: httpx.AsyncClient, url: str, token: str, count: int
) -> tuple[list[float], list[float], list[float]]:
    """Per request: seconds to the `start` event, to the first content chunk, and in all."""
    to_start, to_content, total = [], [], []
    headers = {"Authorization": f"Bearer {token}"}
    for n in range(count):
        t0 = time.perf_counter()
        started = content = None
        async with client.stream(
            "POST", url, headers=headers, json={"message": f"how do stop losses work? ({n})"}
        ) as response:
            assert response.status_code == 200, (await response.aread()).decode()
            async for line in response.aiter_lines():
                now = time.perf_counter()
                if started is None and line.startswith("event: start"):
                    started = now - t0
                if content is None and line.startswith('data: {"content"'):
                    content = now - t0
        total.append(time.perf_counter() - t0)
        to_start.append(started if started is not None else total[-1])
        assert content is not None, "no content chunk"
        to_content.append(content)
    return to_start, to_content, total


async def _claude_api(
    ctx: Context, server: AnthropicServer
) -> tuple[Engine, subprocess.Popen[bytes]]:
    workdir = ctx.workdir / "assistant"
    workdir.mkdir(exist_ok=True)
    extra = {
        **CHAT_ENV,
        "DATABASE_URL": ctx.engine.database_dsn,
        "REDIS_URL": ctx.engine.redis_url,
        "LOCAL_DIR": str(ctx.engine.local_dir),  # the local token issuer's keys
        "PUBLIC_URL": ctx.engine.url,  # the issuer (`iss`) of the demo access token
        "ANTHROPIC_API_KEY": server.api_key,
        "ANTHROPIC_BASE_URL": server.url,
        "LOG_LEVEL": "WARNING",
    }
    env, ports = engine_env(workdir, extra)
    log_path = workdir / "api.log"
    with log_path.open("wb") as log:
        proc = ctx.children.start(
            "assistant api (serve --no-workers)",
            [JADETRADE, "serve", "--no-workers"],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            grace_s=30.0,
        )
    api = Engine(proc, env, ctx.engine.local_dir, ports["PORT"], 0, 0, {}, log_path)
    await wait_healthy(api.url + "/health", proc, 120)
    return api, proc


async def first_byte(ctx: Context) -> dict[str, Any]:
    token = ctx.engine.info["access_token"]
    results: dict[str, Any] = {"requests": TTFB_REQUESTS}
    async with httpx.AsyncClient(timeout=30.0) as client:
        for name, url in (
            ("bare", f"http://127.0.0.1:{ctx.bare_port}/api/chat/stream"),
            ("offline", f"{ctx.engine.url}/api/chat/stream"),
        ):
            await _first_bytes(client, url, token, 5)  # warm-up
            start, content, total = await _first_bytes(client, url, token, TTFB_REQUESTS)
            results[name] = {
                "start": p50_p95(start),
                "content": p50_p95(content),
                "total": p50_p95(total),
            }
        with AnthropicServer() as server:
            api, _proc = await _claude_api(ctx, server)
            url = f"{api.url}/api/chat/stream"
            await _first_bytes(client, url, token, 5)
            server.clear()
            start, content, total = await _first_bytes(client, url, token, TTFB_REQUESTS)
            model = [first - received for received, first in server.stream_times]
            assert len(model) == TTFB_REQUESTS, len(model)
            own = [c - m for c, m in zip(content, model, strict=True)]
            results["claude"] = {
                "start": p50_p95(start),
                "content": p50_p95(content),
                "model": p50_p95(model),
                "engine_own": p50_p95(own),
                "total": p50_p95(total),
            }
    return results


# --------------------------------------------------------------------------- entry points
async def run(ctx: Context) -> dict[str, Any]:
    local = LocalEmbedder()
    try:
        print("\n== Benchmark 4: the assistant", flush=True)
        print("   retrieval quality ...", flush=True)
        q = await quality(ctx, local)
        print(f"   retrieval latency over {PASSAGES:,} passages ...", flush=True)
        lat = await latency(ctx, local)
        print("   time to first streamed byte ...", flush=True)
        ttfb = await first_byte(ctx)
    finally:
        await local.aclose()
    results = {"quality": q, "latency": lat, "first_byte": ttfb}
    summarize(results)
    return results


def summarize(results: dict[str, Any]) -> None:
    q = results["quality"]
    print(
        f"   recall over {q['questions']} questions, held-out rows over "
        f"{q['held_out_questions']} (strict / lenient):"
    )
    for name, r in q.items():
        if not isinstance(r, dict):
            continue
        print(
            f"     {name:<28} R@1 {r['r1']:.3f} / {r['r1_lenient']:.3f}   "
            f"R@3 {r['r3']:.3f} / {r['r3_lenient']:.3f}"
        )
    lat = results["latency"]
    print(
        f"   retrieval over {lat['passages']:,} passages (filled in {lat['fill_s']:.1f} s), "
        f"HNSW top-10 overlap with exact {lat['hnsw_overlap_at_10']:.3f}:"
    )
    for name in ("embed", "hnsw", "exact", "text", "search"):
        v = lat[name]
        print(f"     {name:<8} p50 {ms(v['p50'] * 1000)}  p95 {ms(v['p95'] * 1000)}")
    fb = results["first_byte"]
    print(f"   time to first content chunk over {fb['requests']} requests:")
    for name in ("bare", "offline", "claude"):
        v = fb[name]
        line = (
            f"     {name:<8} start p50 {ms(v['start']['p50'] * 1000)}  content p50 "
            f"{ms(v['content']['p50'] * 1000)} p95 {ms(v['content']['p95'] * 1000)}"
        )
        if name == "claude":
            line += (
                f"  (model {ms(v['model']['p50'] * 1000)}; engine's own p50 "
                f"{ms(v['engine_own']['p50'] * 1000)} p95 {ms(v['engine_own']['p95'] * 1000)})"
            )
        print(line)
