"""Assumable identities: who may exchange which service-account tokens for registry access.

An identity is what ``chainctl iam identities create`` makes: an issuer, a subject (or a
pattern for it), optionally the audience the token must carry and the issuer's JWKS, and roles.
``lifetime``, which Chainguard's identities do not have, lets one identity get tokens of its
own lifetime (say ten years) while the others keep the service-wide one.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import jwt

from devstack import pki
from devstack.tokenservice.keys import usable_keys
from devstack.tokenservice.protocol import (
    JSONObject,
    bad_request,
    optional_str,
    unknown_fields,
)


@dataclass(frozen=True)
class Identity:
    """An assumable identity: who may exchange which tokens for registry access."""

    uid: str
    name: str
    issuer: str
    subject: str | None = None
    subject_pattern: str | None = None
    audience: str | None = None
    # Canonical JSON of the issuer's JWKS, kept as text so the value stays immutable.
    issuer_keys: str | None = None
    roles: tuple[str, ...] = ()
    #: Seconds its STS tokens live; None: the service's lifetime.
    lifetime: int | None = None

    def subject_matches(self, sub: str) -> bool:
        if self.subject is not None:
            return sub == self.subject
        return (
            self.subject_pattern is not None and re.fullmatch(self.subject_pattern, sub) is not None
        )

    def to_json(self) -> JSONObject:
        return {
            "uid": self.uid,
            "name": self.name,
            "issuer": self.issuer,
            "subject": self.subject,
            "subject_pattern": self.subject_pattern,
            "audience": self.audience,
            "issuer_keys": json.loads(self.issuer_keys) if self.issuer_keys else None,
            "roles": list(self.roles),
            "lifetime": self.lifetime,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Identity:
        keys = data.get("issuer_keys")
        return cls(
            uid=data["uid"],
            name=data["name"],
            issuer=data["issuer"],
            subject=data.get("subject"),
            subject_pattern=data.get("subject_pattern"),
            audience=data.get("audience"),
            issuer_keys=_canonical_json(keys) if keys else None,
            roles=tuple(data.get("roles", ())),
            lifetime=data.get("lifetime"),
        )


_IDENTITY_FIELDS: Final = frozenset(
    {"name", "issuer", "subject", "subject_pattern", "audience", "issuer_keys", "roles", "lifetime"}
)
_UPDATABLE_FIELDS: Final = frozenset({"lifetime"})


def _canonical_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def parse_jwks(value: Any) -> str:
    """Validate a JWKS given as an object or as its JSON text; return canonical JSON."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise bad_request(f"issuer_keys is not valid JSON: {e}") from e
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise bad_request('issuer_keys must be a JWKS: an object with a "keys" list')
    try:
        usable = usable_keys(jwt.PyJWKSet.from_dict(value))
    except (jwt.PyJWTError, TypeError, ValueError) as e:
        raise bad_request(f"issuer_keys is not a valid JWKS: {e}") from e
    if not usable:
        raise bad_request("issuer_keys has no RSA or EC signing key")
    return _canonical_json(value)


def _parse_roles(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(r, str) and r for r in value):
        raise bad_request("roles must be a list of role names")
    return tuple(value)


def parse_lifetime(body: Mapping[str, Any], key: str = "lifetime") -> int | None:
    """A positive number of seconds, or None when absent or null."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request(f"{key} must be a positive number of seconds")
    return value


def parse_identity(body: Mapping[str, Any], *, uid: str) -> Identity:
    """Build an identity from what ``chainctl iam identities create`` would send."""
    unknown_fields(body, _IDENTITY_FIELDS)
    name = optional_str(body, "name")
    issuer = optional_str(body, "issuer")
    if name is None:
        raise bad_request("name is required")
    if issuer is None:
        raise bad_request("issuer is required")
    subject = optional_str(body, "subject")
    pattern = optional_str(body, "subject_pattern")
    if (subject is None) == (pattern is None):
        raise bad_request("exactly one of subject and subject_pattern is required")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as e:
            raise bad_request(f"subject_pattern is not a valid regular expression: {e}") from e
    keys = body.get("issuer_keys")
    issuer_keys = parse_jwks(keys) if keys not in (None, "") else None
    if issuer_keys is None and not issuer.startswith(("https://", "http://")):
        raise bad_request("without issuer_keys, issuer must be an http(s) URL for OIDC discovery")
    return Identity(
        uid=uid,
        name=name,
        issuer=issuer,
        subject=subject,
        subject_pattern=pattern,
        audience=optional_str(body, "audience"),
        issuer_keys=issuer_keys,
        roles=_parse_roles(body.get("roles")),
        lifetime=parse_lifetime(body),
    )


def update_identity(identity: Identity, body: Mapping[str, Any]) -> Identity:
    """Apply a ``PATCH`` body; only the fields named in it change (null resets ``lifetime``)."""
    unknown_fields(body, _UPDATABLE_FIELDS)
    if "lifetime" in body:
        identity = replace(identity, lifetime=parse_lifetime(body))
    return identity


class IdentityStore:
    """Identities by UID, persisted as one JSON file rewritten atomically on each change."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._identities: dict[str, Identity] = {}
        if path.exists():
            data = json.loads(path.read_text())
            self._group: str = data["group"]
            for item in data["identities"]:
                identity = Identity.from_json(item)
                self._identities[identity.uid] = identity
        else:
            # Chainguard UIDs are "<40-hex group>/<16-hex id>"; one group per state dir.
            self._group = secrets.token_hex(20)
            self._save()

    def new_uid(self) -> str:
        return f"{self._group}/{secrets.token_hex(8)}"

    def get(self, uid: str) -> Identity | None:
        return self._identities.get(uid)

    def all(self) -> list[Identity]:
        return list(self._identities.values())

    def add(self, identity: Identity) -> None:
        """Add an identity, or replace the one with its UID."""
        self._identities[identity.uid] = identity
        self._save()

    def remove(self, uid: str) -> bool:
        if self._identities.pop(uid, None) is None:
            return False
        self._save()
        return True

    def _save(self) -> None:
        data = {"group": self._group, "identities": [i.to_json() for i in self.all()]}
        pki.write_private(self._path, json.dumps(data, indent=2).encode())
