"""The baseline: a bare FastAPI app whose webhook endpoint reads the body and parses it as JSON,
and whose chat endpoint streams a fixed answer as Server-Sent Events.

It runs exactly like the engine (one uvicorn worker, uvloop, httptools, no access log) and
answers on the same path, so the same load generator and the same alert bodies hit both.
Whatever the engine does beyond this — token check, rate limit, signal row, commit, queue,
logging, and the in-process workers — is what the ratio engine/bare measures.

    python bench/bare_app.py --port 8001
"""

from __future__ import annotations

import argparse
import json

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/api/webhooks/tradingview")
async def tradingview(request: Request) -> JSONResponse:
    alert = json.loads(await request.body())
    return JSONResponse(
        {"status": "queued", "message": "parsed", "action": alert.get("action")}, status_code=200
    )


@app.post("/api/chat/stream")
async def chat_stream(request: Request) -> StreamingResponse:
    json.loads(await request.body())

    async def events():  # type: ignore[no-untyped-def]
        yield b'event: start\ndata: {"mode": "bare"}\n\n'
        for word in ("a ", "fixed ", "answer"):
            yield b"data: " + json.dumps({"content": word}).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
