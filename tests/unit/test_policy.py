"""The identity policy: who may use which identity where, and strict parsing of the file."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pull_secret_updater.core.errors import BadInput
from pull_secret_updater.core.policy import Policy, parse_policy

ORG = "45a0c61ea6fd977f050c5fb9ac06a69eed764595"
IDENTITY = f"{ORG}/d6bd5ea6e3ba0f1e"

POLICY_YAML = f"""
rules:
  - identities: ["{IDENTITY}"]
    namespaces: ["team-a", "team-b-*"]
  - identities: ["{ORG}/*"]
    namespaceSelector:
      matchLabels: {{pull-secrets: "allowed"}}
      matchExpressions:
        - {{key: env, operator: In, values: [prod, staging]}}
        - {{key: quarantine, operator: DoesNotExist}}
  - identities: ["public-*"]
"""


@pytest.fixture
def policy() -> Policy:
    return parse_policy(yaml.safe_load(POLICY_YAML), default_provider="chainguard")


@pytest.mark.parametrize(
    ("identity", "namespace", "labels", "allowed"),
    [
        # Rule 1: named namespaces and globs.
        (IDENTITY, "team-a", None, True),
        (IDENTITY, "team-b-prod", None, True),
        (IDENTITY, "team-c", {}, False),
        # Rule 2: any identity of the org, selected namespaces only.
        (f"{ORG}/other", "anywhere", {"pull-secrets": "allowed", "env": "prod"}, True),
        (IDENTITY, "anywhere", {"pull-secrets": "allowed", "env": "staging"}, True),
        (f"{ORG}/other", "anywhere", {"pull-secrets": "allowed", "env": "dev"}, False),
        (f"{ORG}/other", "anywhere", {"env": "prod"}, False),
        (
            f"{ORG}/other",
            "anywhere",
            {"pull-secrets": "allowed", "env": "prod", "quarantine": "yes"},
            False,
        ),
        # Unknown labels never satisfy a selector.
        (f"{ORG}/other", "anywhere", None, False),
        # `*` spans '/'.
        (f"{ORG}/a/b", "x", {"pull-secrets": "allowed", "env": "prod"}, True),
        # Rule 3: no namespaces and no selector: everywhere.
        ("public-1", "kube-system", None, True),
        # Listed nowhere.
        ("ffff/0000", "team-a", {"pull-secrets": "allowed", "env": "prod"}, False),
        # Globs are case-sensitive.
        (IDENTITY.upper(), "team-a", None, False),
    ],
)
def test_allows(
    policy: Policy, identity: str, namespace: str, labels: dict[str, str] | None, allowed: bool
) -> None:
    assert (
        policy.allows(
            provider="chainguard", identity=identity, namespace=namespace, namespace_labels=labels
        )
        is allowed
    )


def test_namespaces_or_selector_either_suffices() -> None:
    policy = parse_policy(
        [
            {
                "identities": ["x"],
                "namespaces": ["a"],
                "namespaceSelector": {"matchLabels": {"k": "v"}},
            }
        ],
        default_provider="chainguard",
    )
    assert policy.allows(provider="chainguard", identity="x", namespace="a", namespace_labels=None)
    assert policy.allows(
        provider="chainguard", identity="x", namespace="b", namespace_labels={"k": "v"}
    )
    assert not policy.allows(
        provider="chainguard", identity="x", namespace="b", namespace_labels={"k": "w"}
    )


@pytest.mark.parametrize(
    ("expression", "labels", "matches"),
    [
        ({"key": "k", "operator": "In", "values": ["a"]}, {"k": "a"}, True),
        ({"key": "k", "operator": "In", "values": ["a"]}, {}, False),
        ({"key": "k", "operator": "NotIn", "values": ["a"]}, {"k": "b"}, True),
        ({"key": "k", "operator": "NotIn", "values": ["a"]}, {}, True),
        ({"key": "k", "operator": "NotIn", "values": ["a"]}, {"k": "a"}, False),
        ({"key": "k", "operator": "Exists"}, {"k": ""}, True),
        ({"key": "k", "operator": "Exists", "values": []}, {}, False),
        ({"key": "k", "operator": "DoesNotExist"}, {}, True),
        ({"key": "k", "operator": "DoesNotExist"}, {"k": "a"}, False),
    ],
)
def test_match_expressions_follow_kubernetes_semantics(
    expression: dict[str, Any], labels: dict[str, str], matches: bool
) -> None:
    policy = parse_policy(
        [{"identities": ["x"], "namespaceSelector": {"matchExpressions": [expression]}}],
        default_provider="chainguard",
    )
    assert (
        policy.allows(provider="chainguard", identity="x", namespace="n", namespace_labels=labels)
        is matches
    )


def test_an_empty_selector_matches_every_namespace_whose_labels_are_known() -> None:
    policy = parse_policy(
        [{"identities": ["x"], "namespaceSelector": {}}], default_provider="chainguard"
    )
    assert policy.allows(provider="chainguard", identity="x", namespace="n", namespace_labels={})


def test_no_rules_allows_nothing() -> None:
    policy = parse_policy({"rules": []}, default_provider="chainguard")
    assert not policy.allows(
        provider="chainguard", identity="x", namespace="n", namespace_labels={}
    )


def test_needs_labels_only_when_a_selector_is_used(policy: Policy) -> None:
    assert policy.needs_labels
    assert not parse_policy(
        [{"identities": ["x"], "namespaces": ["a"]}], default_provider="chainguard"
    ).needs_labels


def test_a_bare_list_is_the_same_as_rules() -> None:
    rules = [{"identities": ["x"], "namespaces": ["a"]}]
    assert parse_policy(rules, default_provider="chainguard") == parse_policy(
        {"rules": rules}, default_provider="chainguard"
    )


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (None, "policy is null, expected a list of rules"),
        ("rules", "policy is a string, expected a list of rules"),
        ({}, "policy has no rules"),
        ({"rules": {}}, "rules is an object, expected a list of rules"),
        ({"rule": []}, "policy has unknown field 'rule'"),
        ([1], "policy[0] is a number, expected an object"),
        ([{}], "policy[0] has no identities"),
        ([{1: "x"}], "policy[0] has unknown field a number"),
        ({"rules": [{"identities": []}]}, "rules[0].identities is empty"),
        ({"rules": [{"identities": "x"}]}, "rules[0].identities is a string, expected a list"),
        ({"rules": [{"identities": ["x", 3]}]}, "rules[0].identities[1] is a number"),
        ({"rules": [{"identities": ["a b"]}]}, "rules[0].identities[0] may only contain"),
        # A typo must not widen a rule to every namespace.
        ({"rules": [{"identities": ["x"], "namespace": ["a"]}]}, "unknown field 'namespace'"),
        (
            {"rules": [{"identities": ["x"], "namespaces": []}]},
            "rules[0].namespaces is empty; omit namespaces to cover every namespace",
        ),
        ({"rules": [{"identities": ["x"], "namespaces": ["Team"]}]}, "namespaces[0] may only"),
        (
            [{"identities": ["x"], "namespaceSelector": []}],
            "policy[0].namespaceSelector is a list, expected an object",
        ),
        (
            [{"identities": ["x"], "namespaceSelector": {"matchLabel": {}}}],
            "unknown field 'matchLabel'",
        ),
        (
            [{"identities": ["x"], "namespaceSelector": {"matchLabels": {"env": True}}}],
            "policy[0].namespaceSelector.matchLabels.env is a boolean; quote it",
        ),
        (
            [{"identities": ["x"], "namespaceSelector": {"matchLabels": {1: "a"}}}],
            "matchLabels has a number as a key",
        ),
        (
            [{"identities": ["x"], "namespaceSelector": {"matchLabels": []}}],
            "matchLabels is a list, expected an object",
        ),
        (
            [{"identities": ["x"], "namespaceSelector": {"matchExpressions": {}}}],
            "matchExpressions is an object, expected a list",
        ),
        (
            [{"identities": ["x"], "namespaceSelector": {"matchExpressions": [{"key": "k"}]}}],
            "matchExpressions[0].operator must be one of In, NotIn, Exists, DoesNotExist",
        ),
        (
            [
                {
                    "identities": ["x"],
                    "namespaceSelector": {"matchExpressions": [{"operator": "Exists"}]},
                }
            ],
            "matchExpressions[0].key must be a non-empty string",
        ),
        (
            [
                {
                    "identities": ["x"],
                    "namespaceSelector": {"matchExpressions": [{"key": "k", "operator": "In"}]},
                }
            ],
            "matchExpressions[0].values must not be empty for In",
        ),
        (
            [
                {
                    "identities": ["x"],
                    "namespaceSelector": {
                        "matchExpressions": [{"key": "k", "operator": "Exists", "values": ["a"]}]
                    },
                }
            ],
            "matchExpressions[0].values must be empty for Exists",
        ),
        (
            [
                {
                    "identities": ["x"],
                    "namespaceSelector": {
                        "matchExpressions": [{"key": "k", "operator": "In", "values": [1]}]
                    },
                }
            ],
            "matchExpressions[0].values must be a list of strings",
        ),
    ],
)
def test_bad_policies_name_the_wrong_field(obj: object, message: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_policy(obj, default_provider="chainguard")
    assert caught.value.reason == "BadPolicy"
    assert message in caught.value.message


ROLE = "arn:aws:iam::123456789012:role/team-a-pull"
ACCOUNT = "puller@project.iam.gserviceaccount.com"


def test_a_rule_without_provider_is_about_the_default_providers_identities_only() -> None:
    # Rules written before there were several providers keep their meaning: `*` there grants
    # every Chainguard identity, and no identity of another registry.
    policy = parse_policy([{"identities": ["*"]}], default_provider="chainguard")
    assert policy.allows(provider="chainguard", identity=IDENTITY, namespace="a",
                         namespace_labels=None)  # fmt: skip
    assert not policy.allows(provider="ecr", identity=ROLE, namespace="a", namespace_labels=None)


def test_a_rule_names_its_provider_or_a_glob_of_providers() -> None:
    policy = parse_policy(
        [
            {"provider": "ecr", "identities": ["arn:aws:iam::123456789012:role/team-a-*"],
             "namespaces": ["team-a"]},
            {"provider": "*", "identities": [ACCOUNT], "namespaces": ["shared"]},
        ],
        default_provider="chainguard",
    )  # fmt: skip
    allows = policy.allows
    assert allows(provider="ecr", identity=ROLE, namespace="team-a", namespace_labels=None)
    assert not allows(provider="ecr", identity=ROLE, namespace="team-b", namespace_labels=None)
    assert not allows(provider="gar", identity=ROLE, namespace="team-a", namespace_labels=None)
    # The same identity string under another provider is another identity.
    assert not allows(provider="chainguard", identity=ROLE, namespace="team-a",
                      namespace_labels=None)  # fmt: skip
    for provider in ("gar", "chainguard", "ecr"):
        assert allows(provider=provider, identity=ACCOUNT, namespace="shared",
                      namespace_labels=None)  # fmt: skip


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        ("ECR", "rules[0].provider must be a provider name"),
        ("", "rules[0].provider must be a provider name"),
        (["ecr"], "rules[0].provider must be a provider name"),
        ("ecr/x", "rules[0].provider must be a provider name"),
    ],
)
def test_a_bad_provider_in_a_rule_names_the_field(provider: object, message: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_policy({"rules": [{"provider": provider, "identities": ["x"]}]},
                     default_provider="chainguard")  # fmt: skip
    assert str(caught.value).startswith(message)
