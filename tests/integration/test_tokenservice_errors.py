"""The STS's error bodies in both dialects: string codes, or grpc-gateway's numeric ones.

Chainguard's STS sits behind grpc-gateway, which answers ``{"code": 7, "message": ...}``; a
client must read either form, so the local STS switches between them at runtime.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx2
import pytest

from devstack.tokenservice import TokenServiceAdmin, TokenServiceError
from tests.integration.tokenservice_support import SaSigner, exchange

pytestmark = pytest.mark.usefixtures("fresh_service_state")

UNKNOWN_UID = "0" * 40 + "/" + "1" * 16

Provoke = Callable[[httpx2.Client, TokenServiceAdmin, SaSigner, str], httpx2.Response]


def _other_subject(
    sts: httpx2.Client, a: TokenServiceAdmin, kube: SaSigner, uid: str
) -> httpx2.Response:
    return exchange(sts, uid, kube.token(sub="system:serviceaccount:default:default"))


def _unknown_identity(
    sts: httpx2.Client, a: TokenServiceAdmin, kube: SaSigner, uid: str
) -> httpx2.Response:
    return exchange(sts, UNKNOWN_UID, kube.token())


def _no_bearer(
    sts: httpx2.Client, a: TokenServiceAdmin, kube: SaSigner, uid: str
) -> httpx2.Response:
    return exchange(sts, uid, None)


def _no_audience(
    sts: httpx2.Client, a: TokenServiceAdmin, kube: SaSigner, uid: str
) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {kube.token()}"}
    return sts.get("/sts/exchange", params={"identity": uid}, headers=headers)


def _fault(status: int, target: str = "exchange", path: str = "/sts/exchange") -> Provoke:
    def provoke(
        sts: httpx2.Client, admin: TokenServiceAdmin, kube: SaSigner, uid: str
    ) -> httpx2.Response:
        admin.set_fault("status", status=status, target=target)
        if path != "/sts/exchange":
            return sts.get(path)
        return exchange(sts, uid, kube.token())

    return provoke


CASES: dict[str, tuple[Provoke, int, str, int]] = {
    "other subject": (_other_subject, 403, "permission_denied", 7),
    "unknown identity": (_unknown_identity, 404, "not_found", 5),
    "no bearer": (_no_bearer, 401, "unauthenticated", 16),
    "no audience": (_no_audience, 400, "invalid_argument", 3),
    "sts down": (_fault(503), 503, "unavailable", 14),
    "rate limited": (_fault(429), 429, "resource_exhausted", 8),
    "keys down": (_fault(503, "keys", "/.well-known/jwks.json"), 503, "unavailable", 14),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("style", ["string", "numeric"])
def test_sts_errors_carry_the_code_in_the_style_switched_on(
    case: str,
    style: str,
    sts: httpx2.Client,
    admin: TokenServiceAdmin,
    kube: SaSigner,
    identity: str,
) -> None:
    provoke, status, name, number = CASES[case]
    admin.set_error_codes("numeric" if style == "numeric" else "string")

    response = provoke(sts, admin, kube, identity)

    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == (number if style == "numeric" else name)
    assert isinstance(body["message"], str)
    assert body["message"]


def test_admin_errors_keep_string_codes_and_config_shows_the_switch(
    admin: TokenServiceAdmin,
) -> None:
    admin.set_error_codes("numeric")

    with pytest.raises(TokenServiceError) as raised:
        admin.delete_identity(UNKNOWN_UID)

    assert (raised.value.status, raised.value.code) == (404, "not_found")
    assert admin.config()["error_codes"] == "numeric"


def test_an_unknown_error_code_style_is_refused(admin: TokenServiceAdmin) -> None:
    with pytest.raises(TokenServiceError) as raised:
        admin.set_error_codes("roman")  # type: ignore[arg-type]

    assert raised.value.status == 400
    assert admin.config()["error_codes"] == "string"
