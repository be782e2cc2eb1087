"""What the AWS front remembers and what tests switch on and read back.

``Ledger``: the temporary credentials STS issued (the access key finds the secret, the
session token, the role and the expiry, which is how ECR's signature check knows them) and
the ECR passwords issued (each for one account's registries in one region, until its expiry).
``AwsConfig``: lifetimes a test may change. ``AwsFaults``: the next calls' misbehaviour.
``AwsStats``: calls per role ARN and outcome. Nothing here is persisted: a restart of the
token service forgets every credential, as a test would expect of a fresh AWS account.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

from devstack.tokenservice.faults import CountedSwitch
from devstack.tokenservice.protocol import JSONObject, bad_request, unknown_fields

STS: Final = "sts"
ECR: Final = "ecr"
APIS: Final = (STS, ECR)
DEFAULT_ECR_TOKEN_LIFETIME: Final = 12 * 3600
#: The kind, in the token service's ``/admin/issued``, of STS secret keys and session tokens
#: and of ECR passwords.
AWS_SECRET: Final = "aws"


@dataclass(frozen=True)
class Session:
    """Temporary credentials from AssumeRoleWithWebIdentity."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    role_arn: str
    account: str
    expires_at: float


@dataclass(frozen=True)
class Password:
    """An ECR password: good for ``account``'s registries in ``region`` until ``expires_at``."""

    password: str
    account: str
    region: str
    role_arn: str
    expires_at: float

    def to_json(self) -> JSONObject:
        return asdict(self)


class Ledger:
    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._passwords: dict[str, Password] = {}

    def add_session(self, session: Session) -> None:
        self._sessions[session.access_key_id] = session

    def session(self, access_key_id: str) -> Session | None:
        return self._sessions.get(access_key_id)

    def add_password(self, password: Password) -> None:
        self._passwords[password.password] = password

    def password(self, password: str) -> Password | None:
        return self._passwords.get(password)

    def passwords(self) -> list[Password]:
        return list(self._passwords.values())

    def forget_expired(self, now: float | None = None) -> None:
        """Drop what expired more than an hour ago (what tests still ask about is younger)."""
        horizon = (time.time() if now is None else now) - 3600
        self._sessions = {k: s for k, s in self._sessions.items() if s.expires_at > horizon}
        self._passwords = {k: p for k, p in self._passwords.items() if p.expires_at > horizon}


def _positive_int(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request(f"{key} must be a positive number of seconds or null")
    return value


@dataclass(frozen=True)
class AwsConfig:
    """What ``/admin/aws/config`` reads and changes."""

    #: Seconds an ECR password lives (AWS: 12 hours).
    ecr_token_lifetime: int = DEFAULT_ECR_TOKEN_LIFETIME
    #: When set, temporary credentials live at most this long, whatever DurationSeconds asked
    #: (AWS has no such cap; tests use it to see credentials expire).
    session_lifetime_cap: int | None = None

    def to_json(self) -> JSONObject:
        return asdict(self)

    def updated(self, body: Mapping[str, Any]) -> AwsConfig:
        unknown_fields(body, frozenset({"ecr_token_lifetime", "session_lifetime_cap"}))
        config = self
        if "ecr_token_lifetime" in body:
            lifetime = _positive_int(body, "ecr_token_lifetime")
            config = replace(config, ecr_token_lifetime=lifetime or DEFAULT_ECR_TOKEN_LIFETIME)
        if "session_lifetime_cap" in body:
            config = replace(
                config, session_lifetime_cap=_positive_int(body, "session_lifetime_cap")
            )
        return config


FAULT_MODES: Final = ("none", "throttle", "unavailable", "server_error", "slow")


@dataclass(frozen=True)
class AwsFault:
    """How calls to ``api`` (``sts``, ``ecr`` or both when None) misbehave: ``throttle``
    (Throttling / ThrottlingException), ``unavailable`` (503 ServiceUnavailable),
    ``server_error`` (500 InternalFailure / ServerException) or ``slow`` (answer after
    ``delay`` seconds), for the next ``count`` calls or until cleared."""

    mode: str
    api: str | None = None
    count: int | None = None
    delay: float = 5.0

    def to_json(self) -> JSONObject:
        return asdict(self)


def parse_aws_fault(body: Mapping[str, Any]) -> AwsFault | None:
    unknown_fields(body, frozenset({"mode", "api", "count", "delay"}))
    mode = body.get("mode")
    if mode not in FAULT_MODES:
        raise bad_request(f"mode must be one of {', '.join(FAULT_MODES)}")
    api = body.get("api")
    if api is not None and api not in APIS:
        raise bad_request(f"api must be one of {', '.join(APIS)} or null (both)")
    count = body.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise bad_request("count must be a positive integer or null")
    delay = body.get("delay", 5.0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        raise bad_request("delay must be a number of seconds >= 0")
    return None if mode == "none" else AwsFault(mode, api=api, count=count, delay=float(delay))


class AwsFaults(CountedSwitch[AwsFault]):
    """The one active fault, counted down by each call to its API."""

    def take(self, api: str) -> AwsFault | None:
        fault = self.current
        return self.take_if(fault is not None and fault.api in (None, api))


class AwsStats:
    """Calls per API, per role ARN (``""`` when the call named none) and outcome."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls: dict[str, dict[str, dict[str, int]]] = {api: {} for api in APIS}

    def record(self, api: str, role_arn: str | None, *, ok: bool) -> None:
        per_role = self.calls[api].setdefault(role_arn or "", {"ok": 0, "error": 0})
        per_role["ok" if ok else "error"] += 1

    def to_json(self) -> JSONObject:
        return {
            "assume_role_with_web_identity": self.calls[STS],
            "get_authorization_token": self.calls[ECR],
        }
