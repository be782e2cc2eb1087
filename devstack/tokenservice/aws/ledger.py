"""What the AWS front remembers and what tests switch on and read back.

``Ledger``: the temporary credentials STS issued (the access key finds the secret, the
session token, the role and the expiry, which is how ECR's signature check knows them) and
the ECR passwords issued (each for one account's registries in one region, until its expiry).
``AwsConfig``: lifetimes a test may change. ``AwsStats``: calls per role ARN and outcome.
Faults are ``cloud.ApiFault`` on ``STS`` or ``ECR``: ``throttle`` answers Throttling /
ThrottlingException, ``unavailable`` 503 ServiceUnavailable, ``server_error`` 500
InternalFailure / ServerException. Nothing here is persisted (see ``cloud``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

from devstack.tokenservice.cloud import ApiCalls, Issued, positive_seconds
from devstack.tokenservice.protocol import JSONObject, unknown_fields

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
    """What STS and ECR issued: sessions by access key ID, passwords by themselves."""

    def __init__(self) -> None:
        self.sessions: Issued[Session] = Issued()
        self.passwords: Issued[Password] = Issued()

    def forget_expired(self, now: float | None = None) -> None:
        self.sessions.forget_expired(now)
        self.passwords.forget_expired(now)


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
            lifetime = positive_seconds(body, "ecr_token_lifetime")
            config = replace(config, ecr_token_lifetime=lifetime or DEFAULT_ECR_TOKEN_LIFETIME)
        if "session_lifetime_cap" in body:
            config = replace(
                config, session_lifetime_cap=positive_seconds(body, "session_lifetime_cap")
            )
        return config


class AwsStats(ApiCalls):
    """Calls per API, per role ARN (``""`` when the call named none) and outcome."""

    def __init__(self) -> None:
        super().__init__({STS: "assume_role_with_web_identity", ECR: "get_authorization_token"})
