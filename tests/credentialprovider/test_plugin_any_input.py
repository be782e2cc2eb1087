"""Whatever the kubelet (or anyone who can run the plugin) writes on stdin, the plugin ends
with a defined outcome: an answer, or one line on stderr and exit status 2, never a traceback
and never the token it was given."""

from __future__ import annotations

import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from pull_secret_updater.credentialprovider.plugin import USAGE, run
from pull_secret_updater.credentialprovider.protocol import BadRequest, parse_request

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30))
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=12,
)
_requests = st.fixed_dictionaries(
    {"apiVersion": st.sampled_from(["credentialprovider.kubelet.k8s.io/v1", "v1", ""])},
    optional={
        "kind": st.sampled_from(["CredentialProviderRequest", "Other"]),
        "image": st.one_of(st.text(max_size=40), st.just("cgr.dev/chainguard/static")),
        "serviceAccountToken": st.one_of(_json, st.text(max_size=40), st.just("\ud800")),
        "serviceAccountAnnotations": st.one_of(
            _json,
            st.dictionaries(
                st.sampled_from(["pull-secret-updater.chainguard.dev/identity", "x"]),
                st.one_of(st.text(max_size=40), st.just("\ud800")),
            ),
        ),
    },
)
_stdin = st.one_of(
    st.binary(max_size=300),
    _json.map(lambda value: json.dumps(value).encode()),
    _requests.map(lambda value: json.dumps(value).encode()),
)


@settings(max_examples=300, deadline=None)
@given(raw=_stdin)
def test_any_request_parses_or_is_refused_as_a_bad_request(raw: bytes) -> None:
    refused: BadRequest | None = None
    try:
        request = parse_request(raw)
    except BadRequest as e:
        refused = e
    if refused is not None:
        assert refused.message.isprintable()
        return
    token = request.service_account_token
    assert token is None or (token.isascii() and token.isprintable())


@settings(max_examples=150, deadline=None)
@given(raw=_stdin)
def test_the_plugin_never_fails_unexplained_whatever_stdin_holds(raw: bytes) -> None:
    stdout, stderr = io.BytesIO(), io.StringIO()
    # No token service: every request that gets as far as an exchange must fail before
    # reaching one (the issuer below does not resolve), with exit status 1.
    code = run(["--issuer", "https://issuer.invalid", "--timeout", "0.5", "--deadline", "1"],
               stdin=io.BytesIO(raw), stdout=stdout, stderr=stderr)  # fmt: skip
    lines = stderr.getvalue().splitlines()
    assert code in (USAGE, 1)
    assert stdout.getvalue() == b""
    assert len(lines) == 1
    assert "Traceback" not in stderr.getvalue()
    assert "unexpected" not in lines[0]
