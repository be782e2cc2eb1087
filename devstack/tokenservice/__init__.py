"""A local stand-in for the Chainguard STS and for a distribution registry's token endpoint.

The controller's whole job is a token exchange, so the local stack needs an issuer that judges
service-account tokens the way an assumable identity does and that can misbehave on request.
One process (``python -m devstack.tokenservice serve``) serves three HTTPS listeners, each for
one kind of client:

- the STS listener (``--listen``): ``/sts/exchange`` and the OIDC discovery documents. This is
  the one the controller talks to, and the only one faults act on. ``refuse`` really closes its
  socket (and drops open keep-alive connections), which is why nothing else lives on it;
- the registry listener (``--registry-listen``): ``/registry/token``, the ``auth.token.realm``
  of the distribution registry. It stays up while the STS is faulted, so a still-valid
  credential keeps working, as it would against cgr.dev while the STS is down. The STS
  listener serves the same endpoint too, for a realm that must be known before the registry
  listener's port is (it then goes down with ``refuse``);
- the admin listener (``--admin-listen``): identities, statistics, faults, runtime config,
  signing-key rotation, minting tokens, and every token issued (``/admin/issued``, for leak
  scans), behind a bearer token. It must stay reachable to clear a ``refuse`` fault.

State that must survive a restart (identities, the signing keys) lives in ``--state-dir``.
Once every listener is up, the ports, URLs and admin token are written to ``--ready-file``
(see ``ReadyInfo``).

Modules, by noun:

- ``protocol``: wire names, the ``{"code", "message"}`` error shape and ``ApiError``;
- ``keys``: the STS's rotatable keys and the registry token signer;
- ``identities``: ``Identity``, its parsing and the ``IdentityStore``;
- ``oidc``: verifying a service-account token for an identity (``IssuerKeys``);
- ``faults``, ``stats``: what tests switch on and read back;
- ``cloud``: what the cloud stand-ins (``aws``, ``gcp``, ``azure``) keep alike: credentials
  issued, their faults and their calls;
- ``minting``: the claims of the STS tokens;
- ``sts``, ``registry_tokens``, ``admin_api``: the handlers; ``server``: ``TokenService``,
  which puts them on ``listeners``; ``wire``: aiohttp request and error plumbing;
- ``settings``, ``state``, ``ready``, ``cli``: start-up and shared state;
- ``client``: ``TokenServiceAdmin``, the synchronous admin client.

This ``__init__`` re-exports only what imports no aiohttp (the client, the ready file, the
wire names), so ``devstack.chainctl``, ``devstack.stack`` and tests stay light; import the
server from its modules.
"""

from devstack.tokenservice.client import TokenServiceAdmin, TokenServiceError
from devstack.tokenservice.protocol import REGISTRY_PULL, code_for_status, grpc_code_for_status
from devstack.tokenservice.ready import ReadyInfo, wait_ready

__all__ = [
    "REGISTRY_PULL",
    "ReadyInfo",
    "TokenServiceAdmin",
    "TokenServiceError",
    "code_for_status",
    "grpc_code_for_status",
    "wait_ready",
]
