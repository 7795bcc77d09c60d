"""Optional: sample the engine with py-spy during a pass and print where its CPU goes.

`--py-spy PATH` turns it on (install py-spy somewhere temporary, not into the project's
venv: `python -m pip install --target /tmp/pyspy py-spy`, then `--py-spy /tmp/pyspy/bin/py-spy`).
The raw samples are kept in the run's directory (`--keep` to look at them; flamegraph.pl
reads them).

The summary has two views: the library each sample was executing in (its innermost frame),
and the engine's own functions by inclusive share. SQLAlchemy's async layer runs statements
in greenlets, whose stacks py-spy shows without their async caller, so inclusive shares of
engine functions are lower bounds.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

from processes import Children

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>.*?):\d+\)$")
# Innermost frames of a thread that waits: the thread pool's idle workers.
_IDLE = ("Condition.wait (threading.py", "Queue.get (queue.py")
# uvloop runs the loop in C: a sample there is either its own work or waiting in epoll.
_LOOP = "Runner.run (asyncio/runners.py"
_LIBRARIES = (
    ("sqlalchemy", "SQLAlchemy"),
    ("asyncpg", "asyncpg"),
    ("structlog", "logging"),
    ("logging/", "logging"),
    ("app/logging", "logging"),
    ("redis", "redis-py"),
    ("fastapi", "FastAPI/Starlette/Pydantic"),
    ("starlette", "FastAPI/Starlette/Pydantic"),
    ("pydantic", "FastAPI/Starlette/Pydantic"),
    ("uvicorn", "uvicorn"),
    ("asyncio", "asyncio"),
)


def start(
    children: Children, py_spy: str, pid: int, seconds: float, out: Path
) -> subprocess.Popen[bytes]:
    return children.start(
        "py-spy",
        [py_spy, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "100",
         "-f", "raw", "-o", out, "--nonblocking"],
        grace_s=5.0,
    )  # fmt: skip


def _is_engine(path: str) -> bool:
    # py-spy shows paths relative to sys.path: the engine's modules are app/...
    return path.startswith("app/") or "bot-engine/app/" in path


def _library(path: str) -> str:
    if _is_engine(path) and not path.split("app/", 1)[1].startswith("logging/"):
        return "engine code"
    for needle, name in _LIBRARIES:
        if needle in path:
            return name
    return "other (stdlib, C extensions)"


def summarize(raw: Path, top: int = 12) -> str:
    """A few lines: share of samples per library and per engine function."""
    if not raw.exists():
        return "   (py-spy wrote no samples)"
    total = 0
    libraries: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        if any(frames[-1].startswith(idle) for idle in _IDLE):
            continue
        n = int(count)
        total += n
        leaf = _FRAME.match(frames[-1])
        if frames[-1].startswith(_LOOP):
            libraries["event loop (uvloop, in C; includes waiting)"] += n
        else:
            libraries[_library(leaf["path"]) if leaf else "other (stdlib, C extensions)"] += n
        seen: set[str] = set()
        for frame in frames:
            match = _FRAME.match(frame)
            if match and _is_engine(match["path"]) and "app/cli/" not in match["path"]:
                name = f"{match['path'].split('bot-engine/')[-1]}:{match['func']}"
                if name not in seen:
                    seen.add(name)
                    functions[name] += n
    if not total:
        return "   (no busy samples)"
    lines = [f"   {total} busy samples; innermost frame by library:"]
    lines += [f"     {100 * n / total:5.1f} %  {name}" for name, n in libraries.most_common()]
    lines.append("   engine functions, inclusive (lower bounds, see bench/cpu_profile.py):")
    lines += [f"     {100 * n / total:5.1f} %  {name}" for name, n in functions.most_common(top)]
    return "\n".join(lines)
