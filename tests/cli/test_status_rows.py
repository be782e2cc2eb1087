"""A managed Secret's annotations become one readable row; nothing from its data, ever."""

from __future__ import annotations

import json

from pull_secret_updater.core import annotations as keys
from pull_secret_updater.providers.chainguard import spec as chainguard_spec
from pull_secret_updater.tools.status import COLUMNS, render_json, render_table, secret_status

NOW = 1_750_000_000.0
UID = "45a0c61ea6fd977f050c5fb9ac06a69eed764595/d6bd5ea6e3ba0f1e"


def filled(namespace: str = "team-a") -> dict[str, str]:
    return {
        chainguard_spec.IDENTITY: UID,
        keys.EXPIRES_AT: keys.format_time(NOW + 41 * 60 + 5),
        keys.LAST_REFRESH: keys.format_time(NOW - 19 * 60),
    }


def test_a_filled_secret_shows_identity_expiry_and_refresh() -> None:
    row = secret_status(namespace="team-a", name="pull-secret", annotations=filled())
    assert row.identity == UID
    assert row.identity_state == "set"
    table = render_table([row], now=NOW).splitlines()
    assert table[0].split() == ["NAMESPACE", "NAME", "IDENTITY", "EXPIRES", "IN", "LAST",
                                "REFRESH", "LAST", "ERROR"]  # fmt: skip
    assert table[1].split() == ["team-a", "pull-secret", UID, "in", "41m", "19m", "ago", "-"]


def test_columns_line_up_under_their_headers() -> None:
    rows = [
        secret_status(namespace="a", name="pull-secret", annotations=filled()),
        secret_status(namespace="a-much-longer-namespace", name="p", annotations={}),
    ]
    lines = render_table(rows, now=NOW).splitlines()
    start = 0
    for header in COLUMNS:
        start = lines[0].index(header, start)
        for line in lines[1:]:
            assert line[start] != " ", f"no cell starts under {header}: {line!r}"
            assert start == 0 or line[start - 1] == " "
        start += len(header)


def test_an_expired_token_and_an_error_are_shown() -> None:
    annotations = {
        chainguard_spec.IDENTITY: UID,
        keys.EXPIRES_AT: keys.format_time(NOW - 180),
        keys.LAST_ERROR: "token service answered 404 not_found: identity not found",
    }
    row = secret_status(namespace="ns", name="pull-secret", annotations=annotations)
    line = render_table([row], now=NOW).splitlines()[1]
    assert "expired 3m ago" in line
    assert line.endswith("token service answered 404 not_found: identity not found")


def test_each_providers_identity_is_shown_and_a_bad_one_is_not_echoed() -> None:
    role = "arn:aws:iam::111122223333:role/puller"
    ecr = {
        "ecr.pull-secret-updater.chainguard.dev/role-arn": role,
        "ecr.pull-secret-updater.chainguard.dev/registries": (
            "111122223333.dkr.ecr.eu-west-1.amazonaws.com"
        ),
    }
    both = secret_status(namespace="a", name="pull-secret", annotations={**filled(), **ecr})
    assert both.identities == {"chainguard": UID, "ecr": role}
    assert both.identity == f"{UID}, ecr:{role}"
    alone = secret_status(namespace="a", name="pull-secret", annotations=ecr)
    assert (alone.identity, alone.identity_state) == (f"ecr:{role}", "set")
    planted = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"
    broken = secret_status(
        namespace="a",
        name="pull-secret",
        annotations={**ecr, "ecr.pull-secret-updater.chainguard.dev/role-arn": planted},
    )
    assert broken.identity_state == "invalid"
    assert broken.identity_problem is not None
    assert planted not in broken.identity_problem
    assert planted not in render_table([broken], now=NOW)


def test_a_missing_identity_reads_none() -> None:
    row = secret_status(namespace="ns", name="pull-secret", annotations={})
    assert row.identity_state == "missing"
    assert "<none>" in render_table([row], now=NOW)


def test_an_invalid_identity_is_not_echoed() -> None:
    pasted = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln and more"
    row = secret_status(
        namespace="ns", name="pull-secret", annotations={chainguard_spec.IDENTITY: pasted}
    )
    assert row.identity is None
    assert row.identity_state == "invalid"
    assert row.identity_problem is not None
    for output in (render_table([row], now=NOW), render_json([row], now=NOW)):
        assert "eyJ" not in output
    assert "<invalid>" in render_table([row], now=NOW)


def test_annotation_values_cannot_break_the_terminal_or_the_table() -> None:
    row = secret_status(
        namespace="ns",
        name="pull-secret",
        annotations={
            chainguard_spec.IDENTITY: UID,
            keys.LAST_ERROR: "line one\nline two\x1b[31m red",
        },
    )
    table = render_table([row], now=NOW)
    assert len(table.splitlines()) == 2
    assert "\x1b" not in table
    assert "line one line two?[31m red" in table


def test_json_has_the_same_facts_with_absolute_times() -> None:
    rows = [
        secret_status(namespace="team-a", name="pull-secret", annotations=filled()),
        secret_status(namespace="team-b", name="pull-secret", annotations={}),
    ]
    document = json.loads(render_json(rows, now=NOW))
    assert document[0] == {
        "namespace": "team-a",
        "name": "pull-secret",
        "identity": UID,
        "identities": {"chainguard": UID},
        "identityProblem": None,
        "expiresAt": keys.format_time(NOW + 41 * 60 + 5),
        "expiresInSeconds": 41 * 60 + 5,
        "lastRefresh": keys.format_time(NOW - 19 * 60),
        "lastError": None,
    }
    assert document[1]["identity"] is None
    assert "is missing" in document[1]["identityProblem"]
    assert document[1]["expiresInSeconds"] is None


def test_unreadable_times_are_unknown_rather_than_wrong() -> None:
    row = secret_status(
        namespace="ns",
        name="pull-secret",
        annotations={
            chainguard_spec.IDENTITY: UID,
            keys.EXPIRES_AT: "tomorrow",
            keys.LAST_REFRESH: "",
        },
    )
    assert row.expires_at is None
    assert row.last_refresh is None
