"""What the reliability tests share: quick reads of Secrets, tokens, the audit log, figures.

Reads go through the cluster admin's HTTP client rather than kubectl, so a test can sample
every Secret several times a second while something is failing, without a process per look.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import httpx2
import jwt
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devstack.controller import ControllerProcess
from devstack.stack import LocalStack
from tests.helpers import (
    IDENTITY,
    LAST_ERROR,
    Json,
    docker_config,
    eventually,
    exchanges,
    registry_token,
)

__all__ = [
    "CONTROLLER_USER",
    "IDENTITY",
    "LAST_ERROR",
    "MANAGED",
    "Api",
    "AuditRecord",
    "IssuedToken",
    "attempted_exchanges",
    "audit_records",
    "claims",
    "controller_jti",
    "exchanges",
    "exchanges_logged",
    "figure",
    "gaps",
    "issued_mark",
    "issued_since",
    "log_records",
    "metric",
]

CONTROLLER_USER = "system:serviceaccount:pull-secret-updater:controller"
MANAGED = "pull-secret"
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def figure(name: str, value: float, unit: str = "") -> None:
    """A measured figure, printed for the record (run pytest with -s to see it)."""
    shown = f"{value:d}" if isinstance(value, int) else f"{value:.2f}"
    print(f"FIGURE: {name} = {shown}{' ' + unit if unit else ''}")


def claims(token: str | None) -> Json | None:
    """The claims of a JWT without checking its signature; None if it is not one."""
    if not token:
        return None
    try:
        decoded: Json = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return decoded


def metric(controller: ControllerProcess, name: str, **labels: str) -> float:
    """The sum of the samples of `name` on the controller's /metrics that carry `labels`."""
    total = 0.0
    for family in text_string_to_metric_families(controller.metrics()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def attempted_exchanges(controller: ControllerProcess, identities: Iterable[str]) -> int:
    """Exchanges the controller attempted for these identities, whatever their outcome.

    Unlike the token service's own count, this includes attempts that never reached it.
    """
    return len(exchanges_logged(controller, identities))


def exchanges_logged(controller: ControllerProcess, identities: Iterable[str]) -> list[Json]:
    """The controller's log line of each exchange it attempted for these identities (the
    metrics carry no identity)."""
    wanted = set(identities)
    return [
        record
        for record in log_records(controller)
        if record.get("event") == "exchange" and record.get("identity") in wanted
    ]


@dataclass(frozen=True, kw_only=True)
class IssuedToken:
    """A token the token service issued in an exchange: for whom, and when (`iat`, whole
    seconds)."""

    identity: str
    issued_at: int
    token: str = field(repr=False)


def issued_mark(stack: LocalStack) -> int:
    """A mark in the token service's list of issued tokens, to count from with `issued_since`."""
    return len(stack.token_admin().issued("sts"))


def issued_since(
    stack: LocalStack, identities: Iterable[str], *, mark: int = 0
) -> dict[str, list[IssuedToken]]:
    """The tokens issued for each identity after `mark`, in the order they were issued.

    Counting tokens by whose they are and when they were issued, rather than within a window
    of the test's own clock: a slow machine shifts when a round of refreshes happens, not how
    many tokens it takes.
    """
    found: dict[str, list[IssuedToken]] = {uid: [] for uid in identities}
    for token in stack.token_admin().issued("sts")[mark:]:
        decoded = claims(token) or {}
        uid = decoded.get("sub")
        if uid in found and isinstance(decoded.get("iat"), int):
            found[uid].append(IssuedToken(identity=uid, issued_at=decoded["iat"], token=token))
    return found


def gaps(tokens: list[IssuedToken]) -> list[int]:
    """Seconds between successive tokens' `iat`.

    `iat` is in whole seconds, so tokens issued R seconds apart or more show a gap of at least
    floor(R).
    """
    return [b.issued_at - a.issued_at for a, b in itertools.pairwise(tokens)]


class Api:
    """Reads and writes as the cluster admin over plain HTTP."""

    def __init__(self, stack: LocalStack) -> None:
        self.http: httpx2.Client = stack.control_plane.admin.client(timeout=15.0)
        self.registry = stack.registry.host

    def close(self) -> None:
        self.http.close()

    def secret(self, namespace: str, name: str = MANAGED) -> Json | None:
        response = self.http.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        secret: Json = response.json()
        return secret

    def managed(self, name: str = MANAGED) -> list[Json]:
        """Every Secret called `name`, in every namespace."""
        response = self.http.get(
            "/api/v1/secrets", params={"fieldSelector": f"metadata.name={name}"}
        )
        response.raise_for_status()
        items: list[Json] = response.json()["items"]
        return items

    @staticmethod
    def docker_config(secret: Json | None) -> Json:
        return docker_config(secret)

    def token(self, secret: Json | None) -> str | None:
        return registry_token(secret, self.registry)

    @staticmethod
    def annotations(secret: Json | None) -> dict[str, str]:
        return dict(((secret or {}).get("metadata") or {}).get("annotations") or {})

    @staticmethod
    def resource_version(secret: Json | None) -> str:
        return str(((secret or {}).get("metadata") or {}).get("resourceVersion") or "")

    def events(self, namespace: str) -> list[Json]:
        response = self.http.get(f"/api/v1/namespaces/{namespace}/events")
        response.raise_for_status()
        items: list[Json] = response.json()["items"]
        return items

    def warnings(self, namespace: str) -> list[str]:
        """Reasons of the Warning Events in `namespace`."""
        return [e["reason"] for e in self.events(namespace) if e.get("type") == "Warning"]

    def warned(self, namespace: str, reason: str, *, timeout: float = 30.0) -> bool:
        """Whether a Warning Event with `reason` is recorded in `namespace`, waiting for it.

        NB: the controller writes the Event after the `last-error` annotation, as a request
        of its own, so seeing the one does not mean the other is there yet.
        """
        eventually(lambda: reason in self.warnings(namespace), timeout=timeout,
                   what=f"a {reason} Warning in {namespace}")  # fmt: skip
        return True


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    """One audit-log entry (stage ResponseComplete), times as epoch seconds."""

    verb: str
    resource: str
    namespace: str | None
    name: str | None
    code: int
    user: str
    jti: str | None
    user_agent: str
    received: float
    completed: float

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS

    @classmethod
    def of(cls, entry: Json) -> AuditRecord:
        ref = entry.get("objectRef") or {}
        user = entry.get("user") or {}
        credential = ((user.get("extra") or {}).get("authentication.kubernetes.io/credential-id")
                      or [""])[0]  # fmt: skip
        return cls(
            verb=str(entry.get("verb")),
            resource=str(ref.get("resource")),
            namespace=ref.get("namespace"),
            name=ref.get("name"),
            code=int((entry.get("responseStatus") or {}).get("code") or 0),
            user=str(user.get("username")),
            jti=credential.removeprefix("JTI=") if credential.startswith("JTI=") else None,
            user_agent=str(entry.get("userAgent") or ""),
            received=_epoch(entry["requestReceivedTimestamp"]),
            completed=_epoch(entry["stageTimestamp"]),
        )


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def audit_records(
    stack: LocalStack, *, since: float = 0.0, settle: float = 2.0
) -> list[AuditRecord]:
    """Audit entries of requests received at or after `since` (epoch seconds).

    The API server writes its audit log in batches (at most a second apart); `settle` waits
    for the last batch first.
    """
    time.sleep(settle)
    records = []
    for line in stack.control_plane.audit_log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by an API server restart
        if entry.get("stage") != "ResponseComplete":
            continue
        record = AuditRecord.of(entry)
        if record.received >= since:
            records.append(record)
    return records


def controller_jti(controller: ControllerProcess) -> str:
    """The credential ID the API server's audit log shows for this replica's requests."""
    config = yaml.safe_load(controller.kubeconfig.read_text())
    token = str(config["users"][0]["user"]["token"])
    decoded = claims(token) or {}
    assert "jti" in decoded, "the ServiceAccount token has no jti"
    return str(decoded["jti"])


def log_records(controller: ControllerProcess) -> list[Json]:
    """The controller's JSON log lines, with `at` (epoch seconds) added to each."""
    records = []
    for line in controller.logs().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "timestamp" in record:
            record["at"] = _epoch(str(record["timestamp"]))
            records.append(record)
    return records
