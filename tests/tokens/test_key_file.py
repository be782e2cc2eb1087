"""Verified keys kept between the plugin's processes: a second process verifies with the kept
keys and fetches nothing; a token signed with a key not in the file, a file too old, and a
file or directory someone else could have written all mean fetching, as without a file; and
the file never decides alone what verifies (a key withdrawn stops vouching once refetched)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pull_secret_updater.core.claims import InvalidToken
from pull_secret_updater.tokens import TokenVerifier
from pull_secret_updater.tokens.keyfile import KeyFile
from tests.fakes import REGISTRY, FakeClock
from tests.tokens.fakes import (
    ATTACKER_KEY,
    DISCOVERY_PATH,
    ISSUER,
    KEY,
    KEYS_PATH,
    ROTATED_KEY,
    FakeTokenService,
    claims,
)

MAX_AGE = 600.0


def process(service: FakeTokenService, directory: Path) -> TokenVerifier:
    """A verifier as one call of the plugin has it: new, with the key file."""
    return TokenVerifier(
        provider="chainguard",
        username="_token",
        issuer=ISSUER,
        audience=REGISTRY,
        http=service.client(),
        clock=service.clock,
        max_age=MAX_AGE,
        key_file=KeyFile(directory, issuer=ISSUER, clock=service.clock),
    )


def fetches(service: FakeTokenService) -> int:
    return service.hits(DISCOVERY_PATH) + service.hits(KEYS_PATH)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    return tmp_path / "keys"


async def test_a_second_process_verifies_with_the_kept_keys(keys: Path) -> None:
    service = FakeTokenService(clock=FakeClock())
    await process(service, keys).verify(service.mint())
    assert fetches(service) == 2
    assert modes(keys) == (0o700, 0o600)

    verified = await process(service, keys).verify(service.mint())
    assert verified.identity
    assert fetches(service) == 2


async def test_a_key_not_in_the_file_is_fetched_and_kept(keys: Path) -> None:
    service = FakeTokenService(clock=FakeClock())
    await process(service, keys).verify(service.mint())
    service.published = [KEY, ROTATED_KEY]
    service.signer = ROTATED_KEY

    await process(service, keys).verify(service.mint())
    assert fetches(service) == 4
    await process(service, keys).verify(service.mint())
    assert fetches(service) == 4


async def test_a_file_older_than_the_keys_may_be_kept_is_fetched_again(keys: Path) -> None:
    service = FakeTokenService(clock=FakeClock())
    await process(service, keys).verify(service.mint())
    service.clock.now += MAX_AGE + 1
    await process(service, keys).verify(service.mint())
    assert fetches(service) == 4


async def test_a_withdrawn_key_stops_vouching_once_the_file_is_too_old(keys: Path) -> None:
    service = FakeTokenService(clock=FakeClock())
    old = service.mint()
    await process(service, keys).verify(old)
    service.published = [ROTATED_KEY]
    service.signer = ROTATED_KEY
    service.clock.now += MAX_AGE + 1
    with pytest.raises(InvalidToken):
        await process(service, keys).verify(KEY.sign(claims(iat=service.clock.now)))


@pytest.mark.parametrize("writable", ["file", "directory"])
async def test_keys_someone_else_could_have_written_are_not_used(keys: Path, writable: str) -> None:
    service = FakeTokenService(clock=FakeClock())
    await process(service, keys).verify(service.mint())
    plant_attacker_key(keys, writable)
    forged = ATTACKER_KEY.sign(claims(iat=service.clock.now))
    with pytest.raises(InvalidToken):
        await process(service, keys).verify(forged)
    assert fetches(service) == 4  # the file was ignored: fetched as without one


async def test_a_symlinked_or_foreign_file_is_not_used(keys: Path, tmp_path: Path) -> None:
    service = FakeTokenService(clock=FakeClock())
    await process(service, keys).verify(service.mint())
    kept, elsewhere = only_file(keys), tmp_path / "elsewhere.json"
    replace_with_link(kept, elsewhere)
    await process(service, keys).verify(service.mint())
    assert fetches(service) == 4
    if os.geteuid() == 0:
        give_away(kept, elsewhere)
        await process(service, keys).verify(service.mint())
        assert fetches(service) == 6


def only_file(directory: Path) -> Path:
    [kept] = directory.iterdir()
    return kept


def modes(directory: Path) -> tuple[int, int]:
    return directory.stat().st_mode & 0o777, only_file(directory).stat().st_mode & 0o777


def plant_attacker_key(directory: Path, writable: str) -> None:
    """Someone else's key in the file, which group and others may write (or its directory)."""
    kept = only_file(directory)
    document = json.loads(kept.read_text())
    document["keys"] = [ATTACKER_KEY.public_jwk()]
    kept.write_text(json.dumps(document))
    (kept if writable == "file" else directory).chmod(0o666 if writable == "file" else 0o777)


def replace_with_link(kept: Path, elsewhere: Path) -> None:
    kept.rename(elsewhere)
    kept.symlink_to(elsewhere)


def give_away(kept: Path, elsewhere: Path) -> None:
    """The file back in place, owned by another user."""
    kept.unlink()
    elsewhere.rename(kept)
    os.chown(kept, 65534, 65534)
