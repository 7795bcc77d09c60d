"""The embedded local stack: PostgreSQL + pgvector and Redis under one data directory.

`LocalStack.up()` starts what is not already running and reuses what is (another `make run`,
the CLI while `make run` is up); `down()` stops only what this instance started, unless told
to stop everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.embedded import postgres, redis

APP_DATABASE = "jadetrade"


@dataclass
class StackUrls:
    database_url: str
    redis_url: str


@dataclass
class LocalStack:
    root: Path
    pg_port: int
    redis_port: int
    persistent_redis: bool = True
    _started: list[str] = field(default_factory=list)

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    def up(self) -> StackUrls:
        self.root.mkdir(parents=True, exist_ok=True)
        pg = postgres.read_running(self.pgdata)
        if pg is None:
            pg = postgres.start(self.pgdata, self.pg_port)
            self._started.append("postgres")
        rd = redis.read_running(self.redis_dir)
        if rd is None:
            rd = redis.start(self.redis_dir, self.redis_port, persistent=self.persistent_redis)
            self._started.append("redis")
        return StackUrls(database_url=pg.url(APP_DATABASE), redis_url=rd.url())

    def running(self) -> StackUrls | None:
        """URLs of a stack already up under `root` (both services), else None."""
        pg = postgres.read_running(self.pgdata)
        rd = redis.read_running(self.redis_dir)
        if pg is None or rd is None:
            return None
        return StackUrls(database_url=pg.url(APP_DATABASE), redis_url=rd.url())

    @property
    def started_anything(self) -> bool:
        return bool(self._started)

    def down(self, *, everything: bool = False) -> None:
        if everything or "redis" in self._started:
            redis.stop(self.redis_dir)
        if everything or "postgres" in self._started:
            postgres.stop(self.pgdata)
        self._started.clear()
