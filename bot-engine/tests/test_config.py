"""Settings: development defaults, production refusal, nothing read at import time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigurationError, Settings, load_settings

ENGINE_DIR = Path(__file__).resolve().parents[1]


def _prod(**overrides: object) -> Settings:
    values: dict[str, object] = {"ENVIRONMENT": "production"}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


GOOD_PRODUCTION = {
    "ENCRYPTION_KEY": "ab" * 32,
    "COGNITO_USER_POOL_ID": "eu-west-1_AbCdEf123",
    "COGNITO_APP_CLIENT_ID": "4p8ffu0kq3c0example",
    "DATABASE_URL": "postgresql+asyncpg://engine:s3cr3t-Pw@db.internal:5432/jadetrade",
    "REDIS_URL": "rediss://:auth-t0ken-value@cache.internal:6379/0",
}


def test_development_defaults_need_no_configuration() -> None:
    settings = Settings(_env_file=None)
    assert settings.problems() == []
    assert settings.is_local
    assert settings.auth_mode.value == "local"


def test_production_with_defaults_names_every_bad_setting() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(_env_file=None, ENVIRONMENT="production")
    message = str(caught.value)
    for name in (
        "ENCRYPTION_KEY",
        "COGNITO_USER_POOL_ID",
        "COGNITO_APP_CLIENT_ID",
        "DATABASE_URL",
        "REDIS_URL",
    ):
        assert name in message, f"{name} not named in: {message}"
    assert len(caught.value.problems) == 5


def test_production_with_real_values_is_accepted() -> None:
    assert _prod(**GOOD_PRODUCTION).problems() == []


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"ENCRYPTION_KEY": "00" * 31 + "de"}, "ENCRYPTION_KEY"),
        ({"ENCRYPTION_KEY": "not-hex"}, "ENCRYPTION_KEY"),
        ({"AUTH_MODE": "local"}, "AUTH_MODE"),
        ({"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/x"}, "DATABASE_URL"),
        ({"REDIS_URL": "redis://localhost:6379/0"}, "REDIS_URL"),
        ({"CORS_ORIGINS": ["*"]}, "CORS_ORIGINS"),
    ],
)
def test_each_unsafe_production_value_is_refused(override: dict[str, object], named: str) -> None:
    problems = _prod(**{**GOOD_PRODUCTION, **override}).problems()
    assert any(named in p for p in problems), problems


def test_problem_messages_never_echo_secret_values() -> None:
    bad = {**GOOD_PRODUCTION, "DATABASE_URL": "postgresql://u:hunter2-secret@localhost/x"}
    message = "\n".join(_prod(**bad).problems())
    assert "hunter2-secret" not in message


def _clean_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "SYSTEMROOT", "TMPDIR")
    return {k: v for k, v in os.environ.items() if k in keep}


def test_importing_every_module_needs_no_settings_or_secrets(tmp_path: Path) -> None:
    code = (
        "import importlib, pkgutil, app\n"
        "for m in pkgutil.walk_packages(app.__path__, 'app.'):\n"
        "    importlib.import_module(m.name)\n"
        "import app.config as c\n"
        "assert c.get_settings.cache_info().currsize == 0, 'settings were read at import'\n"
        "print('ok')\n"
    )
    env = {**_clean_env(), "ENVIRONMENT": "production"}  # production with nothing configured
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_cli_refuses_production_with_default_secrets(tmp_path: Path) -> None:
    env = {**_clean_env(), "ENVIRONMENT": "production"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "jadetrade"), "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    for name in ("ENCRYPTION_KEY", "COGNITO_USER_POOL_ID", "DATABASE_URL", "REDIS_URL"):
        assert name in result.stderr
