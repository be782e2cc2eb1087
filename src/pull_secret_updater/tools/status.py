"""The state of the managed Secrets, read from the annotations the controller writes on them.

Anyone who may list the Secrets can see whether they are filled, until when, and why the last
attempt failed, without ever seeing a credential: the Secrets are listed as
`PartialObjectMetadata` (the API server sends their metadata only, no `data`), by name with
`fieldSelector=metadata.name=<name>` so that a role confined by `resourceNames` suffices.

The annotations are the user's and the controller's words, not ours: an identity that fails
validation is shown as `<invalid>` (it may be a token pasted by mistake) and every value is
cut to one line of printable characters before it reaches a terminal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import lightkube

from pull_secret_updater.core import annotations as keys
from pull_secret_updater.core.errors import BadInput
from pull_secret_updater.core.names import is_dns_subdomain
from pull_secret_updater.core.redaction import truncate
from pull_secret_updater.kube.client import http_client
from pull_secret_updater.kube.errors import Forbidden, KubeError, translated
from pull_secret_updater.providers.table import DEFAULT, SECTIONS
from pull_secret_updater.tools.durations import format_expiry, format_since

__all__ = [
    "COLUMNS",
    "Listing",
    "SecretStatus",
    "check_secret_name",
    "list_statuses",
    "render_json",
    "render_table",
    "secret_status",
]

COLUMNS = ("NAMESPACE", "NAME", "IDENTITY", "EXPIRES IN", "LAST REFRESH", "LAST ERROR")

#: Ask for metadata only: the Secrets' data never leaves the API server.
_METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
_PAGE = 500
#: Each provider's annotations, read as the controller reads them.
_SPECS = {kind: section().spec() for kind, section in SECTIONS.items()}
_DEFAULT_KEY = getattr(_SPECS[DEFAULT], "identity_key", DEFAULT)
_MAX_SHOWN = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretStatus:
    """One managed Secret as its annotations describe it. Times are epoch seconds.

    `identities` holds what each provider's annotations ask (provider -> identity, a role
    ARN for ECR); `identity` says it in one cell: the default provider's identity as it is,
    another's prefixed with its name ("ecr:arn:aws:iam::..."). It is None when no provider is
    asked or an annotation is invalid (`identity_state`); `identity_problem` then says what is
    wrong, without quoting the value.
    """

    namespace: str
    name: str
    identity: str | None
    identity_state: Literal["set", "missing", "invalid"]
    identity_problem: str | None
    identities: Mapping[str, str]
    expires_at: float | None
    last_refresh: float | None
    last_error: str | None


def secret_status(*, namespace: str, name: str, annotations: Mapping[str, str]) -> SecretStatus:
    """The status of one Secret from its annotations."""
    identities: dict[str, str] = {}
    problems: list[str] = []
    for kind, spec in _SPECS.items():
        try:
            want = spec.wants(annotations)
        except BadInput as e:
            problems.append(e.message)
            continue
        if want is not None:
            identities[kind] = want.identity
    state: Literal["set", "missing", "invalid"] = (
        "invalid" if problems else "set" if identities else "missing"
    )
    problem = "; ".join(problems) or (
        None
        if identities
        else f"annotation {_DEFAULT_KEY} is missing, and so is every other provider's"
    )
    identity = (
        ", ".join(
            value if kind == DEFAULT else f"{kind}:{value}" for kind, value in identities.items()
        )
        if state == "set"
        else None
    )
    error = annotations.get(keys.LAST_ERROR)
    return SecretStatus(
        namespace=_printable(namespace),
        name=_printable(name),
        identity=identity,
        identity_state=state,
        identity_problem=problem,
        identities={kind: _printable(value) for kind, value in identities.items()},
        expires_at=keys.parse_time(annotations.get(keys.EXPIRES_AT)),
        last_refresh=keys.parse_time(annotations.get(keys.LAST_REFRESH)),
        last_error=_printable(error) if error else None,
    )


def render_table(rows: Iterable[SecretStatus], *, now: float) -> str:
    """Aligned columns, kubectl style; the last column (the error) is not padded."""
    cells = [COLUMNS] + [_cells(row, now=now) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS) - 1)]
    lines = []
    for line in cells:
        padded = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        lines.append("   ".join([*padded, line[-1]]).rstrip())
    return "\n".join(lines)


def render_json(rows: Iterable[SecretStatus], *, now: float) -> str:
    """A JSON list with the same facts, times as RFC3339 and seconds left until expiry."""
    items = []
    for row in rows:
        items.append(
            {
                "namespace": row.namespace,
                "name": row.name,
                "identity": row.identity,
                "identities": dict(row.identities),
                "identityProblem": row.identity_problem,
                "expiresAt": _rfc3339(row.expires_at),
                "expiresInSeconds": (
                    int(row.expires_at - now) if row.expires_at is not None else None
                ),
                "lastRefresh": _rfc3339(row.last_refresh),
                "lastError": row.last_error,
            }
        )
    return json.dumps(items, indent=2)


def check_secret_name(name: str) -> None:
    """Raise ValueError unless `name` can be a Secret's (it goes into a field selector)."""
    if not is_dns_subdomain(name):
        raise ValueError(f"{name!r} is not a valid Secret name")


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """The Secrets found, where they were looked for, and why there rather than everywhere."""

    rows: tuple[SecretStatus, ...]
    scope: str
    notice: str | None = None


async def list_statuses(
    client: lightkube.AsyncClient,
    *,
    names: Sequence[str],
    namespace: str | None,
    fallback_namespace: str | None = None,
) -> Listing:
    """The Secrets called any of `names` in `namespace`, or in all namespaces when None.

    When listing across namespaces is forbidden and `fallback_namespace` is given, that
    namespace is listed instead and `notice` says so. Raises `KubeError`.
    """
    if namespace is not None:
        rows = await _list_all(client, names=names, namespace=namespace)
        return Listing(rows=rows, scope=f"namespace {namespace}")
    try:
        rows = await _list_all(client, names=names, namespace=None)
        return Listing(rows=rows, scope="any namespace")
    except Forbidden as e:
        if fallback_namespace is None:
            raise
        refusal = f"{e.status} {e.reason}" if e.reason else str(e.status)
        notice = (
            f"not allowed to list Secrets in all namespaces ({refusal}); showing namespace "
            f"{fallback_namespace} only, the kubeconfig's current one (-n NAMESPACE for another)"
        )
    rows = await _list_all(client, names=names, namespace=fallback_namespace)
    return Listing(rows=rows, scope=f"namespace {fallback_namespace}", notice=notice)


async def _list_all(
    client: lightkube.AsyncClient, *, names: Sequence[str], namespace: str | None
) -> tuple[SecretStatus, ...]:
    found: list[SecretStatus] = []
    for name in dict.fromkeys(names):
        found.extend(await _list_named(client, name=name, namespace=namespace))
    return tuple(sorted(found, key=lambda row: (row.namespace, row.name)))


async def _list_named(
    client: lightkube.AsyncClient, *, name: str, namespace: str | None
) -> list[SecretStatus]:
    http = http_client(client)
    path = f"api/v1/namespaces/{namespace}/secrets" if namespace else "api/v1/secrets"
    where = f"in namespace {namespace}" if namespace else "in all namespaces"
    found: list[SecretStatus] = []
    params = {"fieldSelector": f"metadata.name={name}", "limit": str(_PAGE)}
    while True:
        with translated(f"list Secrets named {name} {where}"):
            response = await http.get(path, params=params, headers={"Accept": _METADATA_ONLY})
            response.raise_for_status()
        try:
            document = json.loads(response.content)
        except (ValueError, RecursionError):
            document = None
        # NB: an empty PartialObjectMetadataList has `"items": null`, not `[]`.
        items = document.get("items") if isinstance(document, dict) else None
        if not isinstance(document, dict) or not isinstance(items or [], list):
            raise KubeError(f"list Secrets named {name} {where}: the answer is not a list")
        for item in items or []:
            meta = item.get("metadata") if isinstance(item, dict) else None
            if isinstance(meta, dict):
                found.append(_from_metadata(meta))
        listing_meta = document.get("metadata")
        token = listing_meta.get("continue") if isinstance(listing_meta, dict) else None
        if not isinstance(token, str) or not token:
            return found
        params["continue"] = token


def _from_metadata(meta: Mapping[str, object]) -> SecretStatus:
    raw = meta.get("annotations")
    annotations = (
        {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}
        if isinstance(raw, dict)
        else {}
    )
    return secret_status(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        annotations=annotations,
    )


def _cells(row: SecretStatus, *, now: float) -> tuple[str, ...]:
    identity = {"missing": "<none>", "invalid": "<invalid>"}.get(
        row.identity_state, row.identity or ""
    )
    return (
        row.namespace,
        row.name,
        identity,
        format_expiry(row.expires_at, now=now),
        format_since(row.last_refresh, now=now),
        row.last_error or "-",
    )


def _rfc3339(moment: float | None) -> str | None:
    return keys.format_time(moment) if moment is not None else None


def _printable(text: str) -> str:
    # Whitespace is left to truncate(), which makes one line of it; other control characters
    # (a terminal escape, say) are shown as '?'.
    shown = "".join(c if c.isprintable() or c.isspace() else "?" for c in text)
    return truncate(shown, limit=_MAX_SHOWN)
