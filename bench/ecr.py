"""What the ECR scenarios need of the stack's AWS stand-in (``stack.aws``): roles that trust
the controller's ServiceAccount, Secrets that ask for them, a controller with the ECR
provider, the stand-in's call counts, a password minted as anyone allowed the role could, and
the stand-in's ledger as the judge of what a Secret holds.

An ECR password is a random string, not a token with claims: whether one is genuine, for
which role, and until when, only the stand-in knows (``stack.aws.passwords()``).
``PasswordBook`` reads that ledger, and reads it again when a password it does not know turns
up (once per role and refresh window), so a watch can follow ECR entries with their expiry
(``PasswordBook.reader``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from bench import lab
from bench.observe import JSON, Reader, Token, Verification, admin_http, list_managed
from bench.observe import registry_password as entry_password
from devstack.aws.standin import STS_AUDIENCE, AwsStandIn
from devstack.controller import NAMESPACE, SERVICE_ACCOUNT, ControllerProcess
from devstack.stack import LocalStack
from pull_secret_updater.providers.ecr import USERNAME
from pull_secret_updater.providers.ecr import spec as ecr_spec

#: The stand-in's call counts: per API ("sts": AssumeRoleWithWebIdentity, "ecr":
#: GetAuthorizationToken), per role ARN, {"ok": n, "error": n}.
Calls = dict[str, dict[str, dict[str, int]]]


def create_roles(stack: LocalStack, count: int, *, prefix: str) -> list[str]:
    """`count` IAM roles that trust the controller's ServiceAccount; their ARNs."""
    return [
        stack.aws.create_role(f"{prefix}-{i}", subjects=lab.CONTROLLER_USER) for i in range(count)
    ]


def ask(role: str, host: str) -> dict[str, str]:
    """The annotations of a Secret asking for an ECR password of `role` for registry `host`."""
    return {ecr_spec.ROLE_ARN: role, ecr_spec.REGISTRIES: host}


def controller(stack: LocalStack, *, name: str, workers: int, **env: str) -> ControllerProcess:
    """`lab.controller` with the ECR provider besides Chainguard's, on the stand-in, reading
    its projected token of audience sts.amazonaws.com as the Deployment does."""
    token_path = stack.workdir / "controllers" / name / "tokens" / STS_AUDIENCE / "token"
    section = {
        "kind": "ecr",
        "sts_endpoint": stack.aws.endpoint,
        "ecr_endpoint": stack.aws.endpoint,
        "ca_bundle": str(stack.ca_file),
        "token_path": str(token_path),
    }
    process = lab.controller_with(
        stack,
        name=name,
        workers=workers,
        env={**env, "PSU_PROVIDERS": json.dumps([section])},
        audiences=(STS_AUDIENCE,),
    )
    assert process.token_file(STS_AUDIENCE) == token_path, "the projected token moved"
    return process


def calls(stack: LocalStack) -> Calls:
    """The stand-in's calls since its last reset, by API and role ARN."""
    return calls_of(stack.aws.stats())


def calls_of(stats: Mapping[str, Any]) -> Calls:
    """The calls in the stand-in's stats (``stack.aws.stats()``), by API and role ARN."""
    return {
        api: {
            str(role): {"ok": int(c.get("ok", 0)), "error": int(c.get("error", 0))}
            for role, c in (stats.get(key) or {}).items()
        }
        for api, key in (
            ("sts", "assume_role_with_web_identity"),
            ("ecr", "get_authorization_token"),
        )
    }


def calls_figures(counted: Calls) -> dict[str, Any]:
    """The calls as figures: totals, errors and the count per role of each API."""
    sts, ecr = counted["sts"], counted["ecr"]
    return {
        "sts_calls": lab.total_exchanges(sts),
        "ecr_calls": lab.total_exchanges(ecr),
        "aws_call_errors": sum(c["error"] for c in (*sts.values(), *ecr.values())),
        "sts_calls_by_role": {_role_name(k): v["ok"] + v["error"] for k, v in sts.items()},
        "ecr_calls_by_role": {_role_name(k): v["ok"] + v["error"] for k, v in ecr.items()},
    }


def _role_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1] or "(none)"


def mint_password(stack: LocalStack, role: str) -> tuple[str, float]:
    """An ECR password of `role` and its expiry, obtained with boto3 as anyone allowed the
    role could (a token of the controller's ServiceAccount for STS)."""
    import boto3  # NB: here, so importing the benchmark does not cost boto3's 0.3 s

    aws = stack.aws
    token = stack.control_plane.service_account_token(
        NAMESPACE, SERVICE_ACCOUNT, audience=STS_AUDIENCE, seconds=3600
    )
    common: dict[str, Any] = {
        "endpoint_url": aws.endpoint,
        "verify": str(stack.ca_file),
        "region_name": aws.region,
    }
    sts = boto3.client("sts", aws_access_key_id="x", aws_secret_access_key="x", **common)
    keys = sts.assume_role_with_web_identity(
        RoleArn=role, RoleSessionName="bench", WebIdentityToken=token
    )["Credentials"]
    ecr = boto3.client(
        "ecr",
        aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=keys["SecretAccessKey"],
        aws_session_token=keys["SessionToken"],
        **common,
    )
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert user == USERNAME
    assert password
    return password, data["expiresAt"].timestamp()


def digest(password: str) -> str:
    """A short name for a password in results and logs, which never hold the password."""
    return hashlib.sha256(password.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Issued:
    """What the stand-in says of a password it issued."""

    role_arn: str
    expires_at: float


class PasswordBook:
    """The ECR passwords the stand-in issued, read from its ledger again at each password
    not yet known. `lifetime` is the seconds the stand-in gives a password (its issue time is
    its expiry minus that; default: what the stand-in gives them now)."""

    def __init__(self, aws: AwsStandIn, *, lifetime: float | None = None) -> None:
        self._aws = aws
        if lifetime is None:
            lifetime = float(aws.admin().aws_config()["ecr_token_lifetime"])
        self.lifetime = lifetime
        self._known: dict[str, Issued] = {}
        self._unknown: set[str] = set()
        #: How many times the ledger was read.
        self.reads = 0

    def lookup(self, password: str) -> Issued | None:
        """What the stand-in issued `password` for, or None if it never did."""
        if password not in self._known and password not in self._unknown:
            # NB: in line, on the event loop: one small admin request per new password.
            self.refresh()
            if password not in self._known:
                self._unknown.add(password)
        return self._known.get(password)

    def refresh(self) -> None:
        self.reads += 1
        for item in self._aws.passwords():
            self._known[str(item["password"])] = Issued(
                role_arn=str(item["role_arn"]), expires_at=float(item["expires_at"])
            )

    @property
    def unknown(self) -> int:
        """Passwords seen that the stand-in never issued."""
        return len(self._unknown)

    def token(self, password: str) -> Token | None:
        """The password as a watch keeps it: its expiry, issue time and digest."""
        issued = self.lookup(password)
        if issued is None:
            return None
        return Token(
            exp=issued.expires_at, iat=issued.expires_at - self.lifetime, jti=digest(password)
        )

    def reader(self, host: str) -> Reader:
        """Reads the password in a Secret's entry for `host` (None: none, or not issued)."""

        def read(secret: Mapping[str, Any]) -> Token | None:
            password = entry_password(secret, host)
            return None if password is None else self.token(password)

        return read


async def verify_passwords(
    stack: LocalStack,
    namespaces: Collection[str],
    role_of: Mapping[str, str],
    *,
    book: PasswordBook,
    now: float,
    exclude: Collection[str] = (),
) -> Verification:
    """Check every Secret in `namespaces`: an entry for the stand-in's registry with user
    `AWS` and a matching `auth`, holding a password the stand-in issued for the Secret's role
    (`role_of[namespace]`), not expired at `now`, and none of `exclude`; count what is
    wrong."""
    wanted = set(namespaces)
    async with admin_http(stack) as http:
        items, _ = await list_managed(http)
    book.refresh()
    host = stack.aws.registry_host
    problems: dict[str, int] = {}
    valid = checked = 0
    for item in items:
        namespace = str((item.get("metadata") or {}).get("namespace"))
        if namespace not in wanted:
            continue
        checked += 1
        problem = _password_problem(
            item, host=host, role=role_of[namespace], book=book, now=now, exclude=exclude
        )
        if problem is None:
            valid += 1
        else:
            problems[problem] = problems.get(problem, 0) + 1
    missing = len(wanted) - checked
    if missing:
        problems["Secret missing"] = missing
    return Verification(secrets=len(wanted), valid=valid, problems=problems)


def _password_problem(
    secret: JSON,
    *,
    host: str,
    role: str,
    book: PasswordBook,
    now: float,
    exclude: Collection[str],
) -> str | None:
    raw = (secret.get("data") or {}).get(lab.DOCKER_CONFIG_KEY)
    try:
        entry = json.loads(base64.b64decode(raw or ""))["auths"][host]
    except (ValueError, KeyError, TypeError):
        return "no ECR entry"
    password = entry.get("password")
    if not isinstance(password, str):
        return "no password"
    if entry.get("username") != USERNAME:
        return "wrong username"
    if base64.b64decode(entry.get("auth", "")) != f"{USERNAME}:{password}".encode():
        return "auth does not match"
    if password in exclude:
        return "the baseline's password"
    issued = book.lookup(password)
    if issued is None:
        return "not issued by the stand-in"
    if issued.role_arn != role:
        return "issued for another role"
    if issued.expires_at <= now:
        return "expired"
    return None
