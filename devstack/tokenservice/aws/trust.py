"""A role's trust policy, judged as IAM judges it for ``sts:AssumeRoleWithWebIdentity``.

Pure: a policy document (the dict IAM's GetRole returns) and the request's context in, a
verdict out. What is evaluated: ``Effect`` (an explicit Deny wins over any Allow),
``Principal.Federated`` (the OIDC provider's ARN, a string or a list, or ``*``), ``Action``
(strings or lists, with ``*`` and ``?`` wildcards, as ``sts:*``), ``NotAction`` and the
string condition operators with IAM's semantics: every operator of a statement must hold,
any value of an operator's list may match, keys are case-insensitive, and ``...IfExists``
holds for an absent key. A statement with an operator this module does not know never
applies: the stand-in refuses rather than guesses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

ACTION: Final = "sts:AssumeRoleWithWebIdentity"


@dataclass(frozen=True)
class TrustRequest:
    """Who asks to assume a role: the OIDC provider's ARN and the condition keys' values
    (``<issuer host/path>:sub``, ``...:aud``, ``sts:RoleSessionName``...)."""

    provider_arn: str
    context: Mapping[str, str]
    action: str = ACTION


def glob_matches(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    """IAM's StringLike: ``*`` any run of characters (also none), ``?`` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.fullmatch(regex, value, flags | re.DOTALL) is not None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


_Compare = Callable[[str, str], bool]
_STRING_OPERATORS: Final[Mapping[str, tuple[_Compare, bool]]] = {
    # name -> (does one pattern match the value, is the operator negated)
    "stringequals": (lambda p, v: p == v, False),
    "stringnotequals": (lambda p, v: p == v, True),
    "stringequalsignorecase": (lambda p, v: p.lower() == v.lower(), False),
    "stringnotequalsignorecase": (lambda p, v: p.lower() == v.lower(), True),
    "stringlike": (glob_matches, False),
    "stringnotlike": (glob_matches, True),
}


def _operator_holds(operator: str, block: Any, context: Mapping[str, str]) -> bool:
    name = operator.lower()
    if_exists = name.endswith("ifexists")
    if if_exists:
        name = name.removesuffix("ifexists")
    if name not in _STRING_OPERATORS or not isinstance(block, Mapping):
        return False
    compare, negated = _STRING_OPERATORS[name]
    lowered = {k.lower(): v for k, v in context.items()}
    for key, patterns in block.items():
        value = lowered.get(str(key).lower())
        if value is None:
            # NB: IAM: a negated operator holds for an absent key, a positive one does not.
            if not (if_exists or negated):
                return False
            continue
        matched = any(compare(str(p), value) for p in _as_list(patterns))
        if matched == negated:
            return False
    return True


def _conditions_hold(conditions: Any, context: Mapping[str, str]) -> bool:
    if conditions is None:
        return True
    if not isinstance(conditions, Mapping):
        return False
    return all(_operator_holds(str(op), block, context) for op, block in conditions.items())


def _principal_matches(principal: Any, provider_arn: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    return any(p in ("*", provider_arn) for p in _as_list(principal.get("Federated")))


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    if "NotAction" in statement:
        return not any(
            glob_matches(str(a), action, case_sensitive=False)
            for a in _as_list(statement["NotAction"])
        )
    return any(
        glob_matches(str(a), action, case_sensitive=False)
        for a in _as_list(statement.get("Action"))
    )


def _applies(statement: Mapping[str, Any], request: TrustRequest) -> bool:
    return (
        _principal_matches(statement.get("Principal"), request.provider_arn)
        and _action_matches(statement, request.action)
        and _conditions_hold(statement.get("Condition"), request.context)
    )


def allows(policy: Mapping[str, Any], request: TrustRequest) -> bool:
    """Whether the trust policy lets ``request`` assume the role: some Allow statement applies
    and no Deny statement does."""
    statements = [s for s in _as_list(policy.get("Statement")) if isinstance(s, Mapping)]
    applying = [s for s in statements if _applies(s, request)]
    if any(s.get("Effect") == "Deny" for s in applying):
        return False
    return any(s.get("Effect") == "Allow" for s in applying)


def web_identity_policy(
    provider_arn: str, issuer_host_path: str, *, subjects: list[str], audience: str
) -> dict[str, Any]:
    """The trust policy EKS documents for IRSA: this provider, this audience, these subjects
    (StringLike when one of them has a wildcard, StringEquals otherwise)."""
    like = any("*" in s or "?" in s for s in subjects)
    subject_value: str | list[str] = subjects[0] if len(subjects) == 1 else list(subjects)
    conditions: dict[str, dict[str, Any]] = {
        "StringEquals": {f"{issuer_host_path}:aud": audience},
    }
    if like:
        conditions["StringLike"] = {f"{issuer_host_path}:sub": subject_value}
    else:
        conditions["StringEquals"][f"{issuer_host_path}:sub"] = subject_value
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": ACTION,
                "Condition": conditions,
            }
        ],
    }
