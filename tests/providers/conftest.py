from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.providers.support import CONTRACTS, Contract


@pytest.fixture(params=sorted(CONTRACTS))
async def contract(request: pytest.FixtureRequest) -> AsyncIterator[Contract]:
    made = CONTRACTS[request.param]()
    yield made
    await made.provider.aclose()
