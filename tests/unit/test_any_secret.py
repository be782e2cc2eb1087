"""Whatever bytes and annotations a Secret holds, the decision has a defined outcome.

Anyone who may edit a managed Secret can put anything in it: any bytes in
`.dockerconfigjson`, any annotation values, JSON with lone surrogate escapes, duplicate keys,
deep nesting. `inspect` and `decide` never raise on any of it: the Secret is ignored, refused
as a whole (`Invalid`, which the controller reports), or each provider's part is filled,
reported or left waiting. And the document the controller writes back is always valid UTF-8
JSON that reads back with the credential it wrote.
"""

# NB: no `from __future__ import annotations` here: it would shadow the module of that name.

import json
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from pull_secret_updater.core import annotations
from pull_secret_updater.core.decision import (
    Fill,
    Ignore,
    Invalid,
    Request,
    SecretView,
    Untrusted,
    decide,
    inspect,
)
from pull_secret_updater.core.dockerconfig import parse_docker_config, with_entries
from pull_secret_updater.core.policy import ALLOW_ALL
from pull_secret_updater.core.schedule import Schedule
from pull_secret_updater.providers.chainguard.spec import IDENTITY, ChainguardSpec
from pull_secret_updater.providers.fake.spec import IDENTITY as FAKE_IDENTITY
from pull_secret_updater.providers.fake.spec import FakeSpec

PROVIDERS = (ChainguardSpec(), FakeSpec())
SCHEDULE = Schedule()
NOW = 1_800_000_000.0
UID = "45a0c61ea6fd977f050c5fb9ac06a69eed764595/d6bd5ea6e3ba0f1e"

_keys = st.sampled_from(
    [IDENTITY, FAKE_IDENTITY, annotations.EXPIRES_AT, annotations.LAST_REFRESH, "other/x"]
)
_values = st.one_of(st.text(max_size=300), st.just(UID), st.just("\ud800"), st.just(""))
_annotations = st.dictionaries(_keys, _values, max_size=5)

# JSON values, strings included that hold what a JSON escape can put in them (lone
# surrogates, control characters), and objects shaped like a Docker config.
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
_entries = st.dictionaries(
    st.sampled_from(["cgr.dev", "registry.fake.invalid", "https://cgr.dev", "ghcr.io"]),
    st.one_of(
        _json,
        st.fixed_dictionaries(
            {},
            optional={
                "username": st.one_of(st.text(max_size=10), st.just("_token")),
                "password": st.one_of(st.text(max_size=40), st.just("\ud800")),
                "auth": st.one_of(st.text(max_size=40), st.just("X3Rva2VuOg==")),
            },
        ),
    ),
    max_size=4,
)
_documents = st.one_of(
    st.binary(max_size=400),
    _json.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries({"auths": _entries}).map(lambda value: json.dumps(value).encode()),
)


def _secret(raw: bytes | None, found: Mapping[str, str], type_: str) -> SecretView:
    return SecretView(
        namespace="team-a",
        name="pull-secret",
        type=type_,
        annotations=found,
        docker_config_raw=raw,
        resource_version="1",
    )


@settings(max_examples=400)
@given(
    raw=st.one_of(st.none(), _documents),
    found=_annotations,
    type_=st.sampled_from(["kubernetes.io/dockerconfigjson", "Opaque"]),
)
def test_inspect_and_decide_never_raise_whatever_the_secret_holds(
    raw: bytes | None, found: dict[str, str], type_: str
) -> None:
    result = inspect(_secret(raw, found, type_), providers=PROVIDERS, policy=ALLOW_ALL,
                     namespace_labels=None)  # fmt: skip
    assert isinstance(result, Ignore | Invalid | Request)
    if not isinstance(result, Request):
        return
    assert result.parts or result.problems
    entries = {}
    for part in result.parts:
        # Whatever the entry held, with no trusted verdict the part is filled; a current
        # password is always one that could be written and compared.
        if part.current is not None:
            assert part.current.isascii()
            assert part.current.isprintable()
        verdict = None if part.current is None else Untrusted(why="planted")
        decision = decide(part, verdict=verdict, now=NOW, schedule=SCHEDULE)
        assert isinstance(decision, Fill)
        assert decision.stale is None
        entries.update(dict.fromkeys(part.want.registries, ("user", "new.token")))
    written = with_entries(result.config, entries)
    reread = parse_docker_config(written)
    assert written.decode("utf-8")
    for host in entries:
        entry = reread.entry(host)
        assert entry is not None
        assert entry.password == "new.token"


def test_a_lone_surrogate_in_our_entry_is_no_password_and_is_replaced() -> None:
    raw = b'{"auths": {"cgr.dev": {"username": "_token", "password": "\\ud800"}}}'
    result = inspect(_secret(raw, {IDENTITY: UID}, "kubernetes.io/dockerconfigjson"),
                     providers=PROVIDERS, policy=ALLOW_ALL, namespace_labels=None)  # fmt: skip
    assert isinstance(result, Request)
    (part,) = result.parts
    assert part.current is None
    fill = decide(part, verdict=None, now=NOW, schedule=SCHEDULE)
    assert isinstance(fill, Fill)
    written = with_entries(result.config, {"cgr.dev": ("_token", "t0k")})
    assert json.loads(written)["auths"]["cgr.dev"]["password"] == "t0k"


def test_a_lone_surrogate_in_someone_elses_entry_survives_the_write_with_its_meaning() -> None:
    raw = b'{"auths": {"ghcr.io": {"password": "\\ud800x"}}}'
    config = parse_docker_config(raw)
    written = with_entries(config, {"cgr.dev": ("_token", "t0k")})
    assert json.loads(written)["auths"]["ghcr.io"] == {"password": "\ud800x"}


def test_duplicate_keys_read_as_the_last_one_as_kubelet_does() -> None:
    # Go's encoding/json, which kubelet uses, keeps the last of duplicate keys too: what the
    # controller trusts is what kubelet would pull with.
    raw = (
        b'{"auths": {"cgr.dev": {"username": "_token", "password": "first"},'
        b' "cgr.dev": {"username": "_token", "password": "second"}}}'
    )
    entry = parse_docker_config(raw).entry("cgr.dev")
    assert entry is not None
    assert entry.password == "second"


@given(value=st.text(max_size=300))
def test_any_annotation_value_is_a_want_or_bad_input_that_quotes_nothing(value: str) -> None:
    result = inspect(_secret(b"{}", {IDENTITY: value, FAKE_IDENTITY: value},
                             "kubernetes.io/dockerconfigjson"),
                     providers=PROVIDERS, policy=ALLOW_ALL, namespace_labels=None)  # fmt: skip
    assert isinstance(result, Request)
    assert len(result.parts) + len(result.problems) == 2
    for problem in result.problems:
        assert problem.reason == "BadAnnotation"
        if len(value.strip()) > 3:
            assert value.strip() not in problem.message
        assert problem.message.isprintable()
