"""Trust policies judged as IAM judges them for AssumeRoleWithWebIdentity (no stack needed)."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.tokenservice.aws.trust import TrustRequest, allows, glob_matches, web_identity_policy

PROVIDER = "arn:aws:iam::123456789012:oidc-provider/issuer.example/cluster"
ISSUER = "issuer.example/cluster"


def _request(sub: str, aud: str = "sts.amazonaws.com", provider: str = PROVIDER) -> TrustRequest:
    return TrustRequest(provider, {f"{ISSUER}:sub": sub, f"{ISSUER}:aud": aud})


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _allow(**condition: Any) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": {"Federated": PROVIDER},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": condition,
    }


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("system:serviceaccount:ns:*", "system:serviceaccount:ns:app", True),
        ("system:serviceaccount:ns:*", "system:serviceaccount:other:app", False),
        ("system:serviceaccount:ns-?:app", "system:serviceaccount:ns-1:app", True),
        ("system:serviceaccount:ns-?:app", "system:serviceaccount:ns-10:app", False),
        ("a.b[c]", "a.b[c]", True),  # no character classes, no regex dots
        ("a.b", "axb", False),
        ("*", "", True),
    ],
)
def test_string_like_globs(pattern: str, value: str, matches: bool) -> None:
    assert glob_matches(pattern, value) is matches


def test_the_documented_policy_allows_its_subject_and_audience_only() -> None:
    policy = web_identity_policy(PROVIDER, ISSUER, subjects=["system:serviceaccount:a:b"],
                                 audience="sts.amazonaws.com")  # fmt: skip
    assert allows(policy, _request("system:serviceaccount:a:b"))
    assert not allows(policy, _request("system:serviceaccount:a:c"))
    assert not allows(policy, _request("system:serviceaccount:a:b", aud="other"))
    assert not allows(policy, _request("system:serviceaccount:a:b", provider=PROVIDER + "x"))


def test_a_list_of_values_allows_any_of_them() -> None:
    policy = _policy(_allow(StringEquals={f"{ISSUER}:sub": ["s1", "s2"]}))
    assert allows(policy, _request("s1"))
    assert allows(policy, _request("s2"))
    assert not allows(policy, _request("s3"))


def test_an_explicit_deny_wins_and_negated_operators_hold_for_others() -> None:
    policy = _policy(
        _allow(StringLike={f"{ISSUER}:sub": "system:serviceaccount:*"}),
        {**_allow(StringEquals={f"{ISSUER}:sub": "system:serviceaccount:kube-system:x"}),
         "Effect": "Deny"},
    )  # fmt: skip
    assert allows(policy, _request("system:serviceaccount:ns:app"))
    assert not allows(policy, _request("system:serviceaccount:kube-system:x"))
    negated = _policy(_allow(StringNotLike={f"{ISSUER}:sub": "system:serviceaccount:kube-*"}))
    assert allows(negated, _request("system:serviceaccount:ns:app"))
    assert not allows(negated, _request("system:serviceaccount:kube-system:x"))


def test_condition_keys_are_case_insensitive_and_unknown_operators_never_apply() -> None:
    upper = _policy(_allow(StringEquals={f"{ISSUER.upper()}:SUB": "s1"}))
    assert allows(upper, _request("s1"))
    unknown = _policy(_allow(NumericEquals={f"{ISSUER}:sub": "1"}))
    assert not allows(unknown, _request("1"))
    absent = _policy(_allow(StringEquals={f"{ISSUER}:amr": "x"}))
    assert not allows(absent, _request("s1"))
    if_exists = _policy(_allow(StringEqualsIfExists={f"{ISSUER}:amr": "x"}))
    assert allows(if_exists, _request("s1"))


def test_principal_and_action_must_match() -> None:
    other_action = {**_allow(), "Action": "sts:AssumeRole"}
    assert not allows(_policy(other_action), _request("s"))
    wildcard = {**_allow(), "Action": ["sts:*"]}
    assert allows(_policy(wildcard), _request("s"))
    aws_principal = {**_allow(), "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}
    assert not allows(_policy(aws_principal), _request("s"))
    assert not allows({}, _request("s"))
