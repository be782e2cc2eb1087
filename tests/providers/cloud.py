"""What the in-process clouds (`aws`, `gcp`, `azure`) share: two services behind one mock
transport, each request counted per service, and a failure a test may put in their way."""

from __future__ import annotations

from abc import ABC, abstractmethod

import httpx2

#: An answer a test imposes on a service: (status, body, headers).
Failure = tuple[int, bytes, dict[str, str]]


class FakeCloud(ABC):
    """Requests to either of a cloud's services, counted in `calls` per service and answered
    with `failing[service]` while a test has set it, or else by `answer` as the cloud would."""

    calls: dict[str, int]
    failing: dict[str, Failure]

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        service = self.service_of(request)
        self.calls[service] += 1
        if service in self.failing:
            status, content, headers = self.failing[service]
            return httpx2.Response(status, content=content, headers=headers)
        return self.answer(service, request, body)

    @abstractmethod
    def service_of(self, request: httpx2.Request) -> str:
        """Which of the cloud's two services `request` is for."""

    @abstractmethod
    def answer(self, service: str, request: httpx2.Request, body: bytes) -> httpx2.Response:
        """The answer of `service` to `request`, whose body is `body`."""
