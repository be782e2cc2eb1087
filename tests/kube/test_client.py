"""Where the client's configuration comes from, and how it introduces itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pull_secret_updater.kube import make_client
from pull_secret_updater.kube.client import http_client


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


async def test_an_explicit_kubeconfig_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "env", "https://env.invalid")))
    explicit = _kubeconfig(tmp_path / "explicit", "https://explicit.invalid")
    client = make_client(kubeconfig=explicit)
    try:
        assert client.config.cluster.server == "https://explicit.invalid"
    finally:
        await client.close()


async def test_the_first_existing_file_of_a_kubeconfig_path_list_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = _kubeconfig(tmp_path / "second", "https://second.invalid")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "missing"), str(second)]))
    client = make_client()
    try:
        assert client.config.cluster.server == "https://second.invalid"
    finally:
        await client.close()


async def test_requests_carry_the_controllers_user_agent(tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path / "kc", "https://apiserver.invalid")
    default, custom = (
        make_client(kubeconfig=kubeconfig),
        make_client(kubeconfig=kubeconfig, user_agent="psu-test/1"),
    )
    try:
        assert http_client(default).headers["User-Agent"].startswith("pull-secret-updater/")
        assert http_client(custom).headers["User-Agent"] == "psu-test/1"
    finally:
        await default.close()
        await custom.close()
