"""API keys from a file (issue 11): `--api-keys` shows in `ps`, so keys can come from a mounted secret."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from service.app import create_app
from service.settings import ServiceSettings
from tests.service.test_cli import PARETORM


def test_keys_file_lines_commas_and_comments(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# rotated 2026-12-01\nfile-key-1\n\n  file-key-2 , file-key-3\n")
    settings = ServiceSettings(api_keys="env-key", api_keys_file=keys)
    assert settings.api_key_list() == ["env-key", "file-key-1", "file-key-2", "file-key-3"]


@pytest.mark.parametrize(("content", "needle"), [("", "holds no keys"), ("# only a comment\n", "holds no keys"),
                                                  (None, "cannot read the API keys file")])
def test_an_empty_or_missing_keys_file_is_refused(tmp_path: Path, content: str | None, needle: str) -> None:
    keys = tmp_path / "keys"
    if content is not None:
        keys.write_text(content)
    with pytest.raises(ValidationError, match=needle):
        ServiceSettings(api_keys_file=keys)


def test_a_key_from_the_file_is_accepted_and_others_are_not(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("secret-from-file\n")
    app = create_app(ServiceSettings(api_keys_file=keys))  # no lifespan: the model never loads

    async def post(key: str) -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rm") as client:
            answer = await client.post("/v1/score", json={"items": []}, headers={"Authorization": f"Bearer {key}"})
            return answer.status_code

    assert asyncio.run(post("wrong-key-of-16b")) == 401
    assert asyncio.run(post("secret-from-file")) == 503  # past auth; the model is not loaded here


def test_serve_help_says_to_prefer_the_environment_or_a_file() -> None:
    out = subprocess.run([PARETORM, "serve", "--help"], capture_output=True, text=True, timeout=120).stdout
    assert "--api-keys-file" in out and "ps" in out and "PARETORM_API_KEYS" in out
