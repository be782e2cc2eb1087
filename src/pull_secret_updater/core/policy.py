"""Which identities may be used in which namespaces: the operator's answer to the confused deputy.

Anyone who can create a Secret with a managed name can ask the controller for a token of any
identity that trusts the controller. The policy, owned by whoever runs the controller, says
which identities each namespace may ask for. The caller loads it (from YAML) and hands the
parsed object to `parse_policy`; no policy at all is `None` at the caller and allows all.

Shape::

    rules:                      # or just the list of rules
      - identities: ["<uid>", "<org uid>/*"]     # fnmatch globs, case-sensitive
        provider: ecr                             # optional; a glob; default: the default one
        namespaces: ["team-a", "team-b-*"]       # optional
        namespaceSelector:                        # optional, a Kubernetes LabelSelector
          matchLabels: {team: a}
          matchExpressions: [{key: env, operator: In, values: [prod]}]

A rule grants its identities of its provider (a registry provider's name, such as
`chainguard` or `ecr`) to the namespaces it names or selects (either suffices); a rule with
neither grants them everywhere. A rule without `provider` speaks of the default provider's
identities only (the caller names it): rules written before there were several providers keep
their meaning, and a `*` for Chainguard identities grants no role of another registry. Parsing is
strict, because here a typo widens access: `namespace: [a]` silently ignored would make a rule
apply to every namespace.

NB: in a glob `*` also matches `/`, so `<org uid>/*` covers every identity under that org.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal, TypeGuard

from pull_secret_updater.core.errors import BadInput, kind_of
from pull_secret_updater.core.reasons import Reason

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
_OPERATORS: tuple[Operator, ...] = ("In", "NotIn", "Exists", "DoesNotExist")

# Identity UIDs, role ARNs (arn:aws:iam::1234:role/x), service-account e-mails, client IDs.
_IDENTITY_PATTERN = re.compile(r"[A-Za-z0-9/_.\-:@+=,*?\[\]!]+")
_PROVIDER_PATTERN = re.compile(r"[a-z0-9\-*?\[\]!]+")
_NAMESPACE_PATTERN = re.compile(r"[a-z0-9\-*?\[\]!]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Requirement:
    """One `matchExpressions` item."""

    key: str
    operator: Operator
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        if self.operator == "In":
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelSelector:
    """A Kubernetes LabelSelector: all labels and expressions must match; empty matches all."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    identities: tuple[str, ...]
    provider: str = "*"
    namespaces: tuple[str, ...] | None = None
    namespace_selector: LabelSelector | None = None

    def grants(self, *, provider: str, identity: str) -> bool:
        return fnmatchcase(provider, self.provider) and any(
            fnmatchcase(identity, pattern) for pattern in self.identities
        )

    def covers(self, *, namespace: str, namespace_labels: Mapping[str, str] | None) -> bool:
        if self.namespaces is None and self.namespace_selector is None:
            return True
        if self.namespaces is not None and any(
            fnmatchcase(namespace, pattern) for pattern in self.namespaces
        ):
            return True
        # Unknown labels never satisfy a selector: NotIn/DoesNotExist would otherwise
        # match a namespace we simply could not read.
        return (
            self.namespace_selector is not None
            and namespace_labels is not None
            and self.namespace_selector.matches(namespace_labels)
        )


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[Rule, ...]

    @property
    def needs_labels(self) -> bool:
        """Whether `allows` may look at namespace labels (so the caller should read them)."""
        return any(rule.namespace_selector is not None for rule in self.rules)

    def allows(
        self,
        *,
        provider: str,
        identity: str,
        namespace: str,
        namespace_labels: Mapping[str, str] | None,
    ) -> bool:
        """Whether `provider`'s `identity` may be used in `namespace`.

        `namespace_labels` None means unknown; a selector then does not match.
        """
        return any(
            rule.grants(provider=provider, identity=identity)
            and rule.covers(namespace=namespace, namespace_labels=namespace_labels)
            for rule in self.rules
        )


#: Every identity of every provider in every namespace: chosen explicitly (`allow_any_identity`),
#: or where the token service itself confines identities to namespaces (`token_subject: namespace`).
ALLOW_ALL = Policy((Rule(identities=("*",)),))


def parse_policy(obj: object, *, default_provider: str) -> Policy:
    """Build a Policy from parsed YAML/JSON; raises BadInput("BadPolicy") naming the field.

    A rule without `provider` is about `default_provider`'s identities.
    """
    if isinstance(obj, dict):
        obj = _object(obj, path="policy", allowed={"rules"})
        if "rules" not in obj:
            raise _bad("policy", "has no rules")
        items = obj["rules"]
        path = "rules"
    else:
        items = obj
        path = "policy"
    if not isinstance(items, list):
        raise _bad(path, f"is {kind_of(items)}, expected a list of rules")
    return Policy(
        tuple(
            _parse_rule(item, path=f"{path}[{i}]", default_provider=default_provider)
            for i, item in enumerate(items)
        )
    )


def _parse_rule(obj: object, *, path: str, default_provider: str) -> Rule:
    obj = _object(
        obj, path=path, allowed={"identities", "provider", "namespaces", "namespaceSelector"}
    )
    if "identities" not in obj:
        raise _bad(path, "has no identities")
    identities = _patterns(
        obj["identities"],
        path=f"{path}.identities",
        allowed=_IDENTITY_PATTERN,
        what="letters, digits, / _ . - : @ + = , and glob characters * ? [ ] !",
    )
    provider = obj.get("provider", default_provider)
    if not isinstance(provider, str) or not _PROVIDER_PATTERN.fullmatch(provider):
        raise _bad(
            f"{path}.provider",
            "must be a provider name (lower-case letters, digits, -) or a glob of one",
        )
    namespaces = None
    if "namespaces" in obj:
        namespaces = _patterns(
            obj["namespaces"],
            path=f"{path}.namespaces",
            allowed=_NAMESPACE_PATTERN,
            what="lower-case letters, digits, - and glob characters * ? [ ] !",
            empty_hint="; omit namespaces to cover every namespace",
        )
    selector = None
    if "namespaceSelector" in obj:
        selector = _parse_selector(obj["namespaceSelector"], path=f"{path}.namespaceSelector")
    return Rule(
        identities=identities,
        provider=provider,
        namespaces=namespaces,
        namespace_selector=selector,
    )


def _patterns(
    obj: object, *, path: str, allowed: re.Pattern[str], what: str, empty_hint: str = ""
) -> tuple[str, ...]:
    if not isinstance(obj, list):
        raise _bad(path, f"is {kind_of(obj)}, expected a list of strings")
    if not obj:
        raise _bad(path, f"is empty{empty_hint}")
    for i, item in enumerate(obj):
        if not isinstance(item, str):
            raise _bad(f"{path}[{i}]", f"is {kind_of(item)}, expected a string")
        if not allowed.fullmatch(item):
            raise _bad(f"{path}[{i}]", f"may only contain {what}")
    return tuple(obj)


def _parse_selector(obj: object, *, path: str) -> LabelSelector:
    obj = _object(obj, path=path, allowed={"matchLabels", "matchExpressions"})
    labels = obj.get("matchLabels", {})
    if not isinstance(labels, dict):
        raise _bad(f"{path}.matchLabels", f"is {kind_of(labels)}, expected an object")
    for key, value in labels.items():
        # NB: YAML reads `env: true` or `tier: 1` as a boolean or a number; say so plainly.
        if not isinstance(key, str):
            raise _bad(f"{path}.matchLabels", f"has {kind_of(key)} as a key; quote it")
        if not isinstance(value, str):
            raise _bad(f"{path}.matchLabels.{key}", f"is {kind_of(value)}; quote it")
    expressions = obj.get("matchExpressions", [])
    if not isinstance(expressions, list):
        raise _bad(f"{path}.matchExpressions", f"is {kind_of(expressions)}, expected a list")
    return LabelSelector(
        match_labels=tuple(labels.items()),
        match_expressions=tuple(
            _parse_requirement(item, path=f"{path}.matchExpressions[{i}]")
            for i, item in enumerate(expressions)
        ),
    )


def _parse_requirement(obj: object, *, path: str) -> Requirement:
    obj = _object(obj, path=path, allowed={"key", "operator", "values"})
    key = obj.get("key")
    if not isinstance(key, str) or not key:
        raise _bad(f"{path}.key", "must be a non-empty string")
    operator = obj.get("operator")
    if not _is_operator(operator):
        raise _bad(f"{path}.operator", f"must be one of {', '.join(_OPERATORS)}")
    values = obj.get("values", [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise _bad(f"{path}.values", "must be a list of strings")
    if operator in ("In", "NotIn") and not values:
        raise _bad(f"{path}.values", f"must not be empty for {operator}")
    if operator in ("Exists", "DoesNotExist") and values:
        raise _bad(f"{path}.values", f"must be empty for {operator}")
    return Requirement(key=key, operator=operator, values=frozenset(values))


def _object(obj: object, *, path: str, allowed: set[str]) -> dict[str, object]:
    if not isinstance(obj, dict):
        raise _bad(path, f"is {kind_of(obj)}, expected an object")
    result: dict[str, object] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or key not in allowed:
            name = repr(key) if isinstance(key, str) else kind_of(key)
            raise _bad(path, f"has unknown field {name}; expected {', '.join(sorted(allowed))}")
        result[key] = value
    return result


def _is_operator(obj: object) -> TypeGuard[Operator]:
    return obj in _OPERATORS


def _bad(path: str, problem: str) -> BadInput:
    return BadInput(Reason.BAD_POLICY, f"{path} {problem}")
