"""Reading and rewriting a Secret's `.dockerconfigjson`.

A pull Secret is shared property: the user may keep credentials for other registries in it,
and tools add top-level keys we have never heard of. So the document is kept as the parsed
JSON, not as a model of the fields we know, and a write replaces exactly one entry under
`auths` and nothing else. Everything we do not own survives a refresh with the same meaning.

NB: errors are raised outside the `except` blocks that detect them. `JSONDecodeError.doc` and
`UnicodeDecodeError.object` hold the whole document, and a chained (or merely suppressed)
context would keep the Secret's data reachable from our exception.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from pull_secret_updater.core.errors import BadInput, kind_of
from pull_secret_updater.core.reasons import Reason

#: Deeper documents are rejected: real configs are four levels deep, and a bound keeps
#: re-serialising them clear of the interpreter's recursion limit.
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryEntry:
    """The credential found for one registry.

    `password` is None when the entry has none, or its `auth` field cannot be decoded: such an
    entry can not be one this controller wrote.
    """

    key: str
    username: str | None
    password: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class DockerConfig:
    """A parsed `.dockerconfigjson`. Treat `document` as read-only."""

    document: dict[str, object] = field(repr=False)

    @property
    def registries(self) -> tuple[str, ...]:
        """The keys under `auths`, in document order."""
        auths = self.document.get("auths")
        return tuple(auths) if isinstance(auths, dict) else ()

    def entry(self, registry: str) -> RegistryEntry | None:
        """The entry kubelet would use for `registry` (a bare host, e.g. `cgr.dev`).

        An exact key wins; otherwise the first key that names the same host in a form kubelet
        and docker also accept (`https://cgr.dev`, `cgr.dev/`, `https://cgr.dev/v2/`).
        """
        auths = self.document.get("auths")
        if not isinstance(auths, dict):
            return None
        if registry in auths:
            key = registry
        else:
            wanted = registry.lower()
            key = next((k for k in auths if _normalise_key(k) == wanted), "")
            if not key:
                return None
        value = auths[key]
        if not isinstance(value, dict):  # only if built without parse_docker_config
            return RegistryEntry(key=key, username=None, password=None)
        username, password = _credentials(value)
        return RegistryEntry(key=key, username=username, password=password)


def parse_docker_config(raw: bytes | None) -> DockerConfig:
    """Parse a `.dockerconfigjson` value (already base64-decoded); None or b"" is empty."""
    if not raw:
        return DockerConfig({})
    text, problem = _decode_utf8(raw)
    if problem is None:
        document, problem = _load_json(text)
    if problem is not None:
        raise BadInput(Reason.MALFORMED_DOCKER_CONFIG, f".dockerconfigjson is {problem}")
    if not isinstance(document, dict):
        raise BadInput(
            Reason.MALFORMED_DOCKER_CONFIG,
            f".dockerconfigjson is {kind_of(document)}, expected an object",
        )
    auths = document.get("auths", {})
    if not isinstance(auths, dict):
        raise BadInput(
            Reason.MALFORMED_DOCKER_CONFIG,
            f".dockerconfigjson: auths is {kind_of(auths)}, expected an object",
        )
    for position, value in enumerate(auths.values()):
        if not isinstance(value, dict):
            # NB: the position, not the key: a key is usually a host, but we do not promise it.
            raise BadInput(
                Reason.MALFORMED_DOCKER_CONFIG,
                f".dockerconfigjson: auths entry #{position + 1} is {kind_of(value)}, "
                "expected an object",
            )
    if not _within_depth(document, limit=MAX_DEPTH):
        raise BadInput(
            Reason.MALFORMED_DOCKER_CONFIG,
            f".dockerconfigjson is nested deeper than {MAX_DEPTH} levels",
        )
    return DockerConfig(document)


def with_token(config: DockerConfig, *, registry: str, token: str, username: str) -> bytes:
    """The document with `registry`'s entry set to `username` and `token`, as compact JSON."""
    return with_entries(config, {registry: (username, token)})


def with_entries(config: DockerConfig, entries: Mapping[str, tuple[str, str]]) -> bytes:
    """The document with each registry's entry set to its (username, password), as compact
    JSON; every other entry and key is kept as it was.

    An entry is replaced whole rather than merged: a stale `identitytoken` or `registrytoken`
    left beside a fresh password would take precedence in some clients (containers/image).
    Alias keys for the same host (`https://cgr.dev`) are other people's entries and are left.
    """
    document = dict(config.document)
    existing = document.get("auths")
    auths = dict(existing) if isinstance(existing, dict) else {}
    for registry, (username, token) in entries.items():
        if not registry or "/" in registry or registry != registry.strip():
            raise ValueError("registry must be a bare host such as cgr.dev or localhost:5000")
        if not token or not (token.isascii() and token.isprintable()):
            raise ValueError("token must be non-empty printable ASCII, as every provider's is")
        if not username or ":" in username:
            raise ValueError("username must be non-empty and hold no ':'")
        auth = base64.b64encode(f"{username}:{token}".encode()).decode("ascii")
        auths[registry] = {"username": username, "password": token, "auth": auth}
    document["auths"] = auths
    # ensure_ascii: a lone surrogate escape ("\ud800") in someone else's entry parses to a str
    # that cannot be encoded as UTF-8; escaped it round-trips with the same meaning.
    return json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _credentials(value: dict[str, object]) -> tuple[str | None, str | None]:
    # Like kubelet: `auth` wins when present; an undecodable one yields no password.
    username = value.get("username")
    username = username if isinstance(username, str) else None
    auth = value.get("auth")
    if auth is not None and auth != "":
        decoded = _decode_auth(auth)
        if decoded is None:
            return username, None
        return decoded[0], _ascii(decoded[1])
    password = value.get("password")
    return username, _ascii(password) if isinstance(password, str) else None


def _ascii(password: str) -> str | None:
    # Every provider's credentials are printable ASCII (JWTs, base64). Anything else cannot
    # be one the controller wrote, and a lone surrogate ("\ud800" in the JSON) could not even
    # be hashed or compared: it is no password, and the entry gets filled.
    return password if password.isascii() and password.isprintable() else None


def _decode_auth(auth: object) -> tuple[str, str] | None:
    if not isinstance(auth, str):
        return None
    try:
        text = base64.b64decode(auth, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, colon, password = text.partition(":")
    return (user, password) if colon else None


def _normalise_key(key: str) -> str:
    lowered = key.lower()
    for scheme in ("https://", "http://"):
        if lowered.startswith(scheme):
            lowered = lowered[len(scheme) :]
            break
    host, slash, path = lowered.partition("/")
    path = slash + path
    # docker writes `https://index.docker.io/v1/`; kubelet drops a leading /v1/ or /v2/ too.
    for api in ("/v1", "/v2"):
        if path == api or path.startswith(api + "/"):
            path = path[len(api) :]
            break
    path = path.rstrip("/")
    return host + path


def _decode_utf8(raw: bytes) -> tuple[str, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        problem = f"not valid UTF-8 (byte {e.start})"
    return "", problem


def _load_json(text: str) -> tuple[object, str | None]:
    try:
        return json.loads(text, parse_constant=_reject_constant), None
    except json.JSONDecodeError as e:
        problem = f"not valid JSON (line {e.lineno}, column {e.colno})"
    except RecursionError:
        problem = "nested too deeply to parse"
    except ValueError:
        # NaN/Infinity (not JSON), or an integer longer than Python will convert.
        problem = "not valid JSON (a number is out of range)"
    return None, problem


def _reject_constant(name: str) -> object:
    raise ValueError(name)


def _within_depth(document: object, *, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: list[object] = list(value.values())
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True
