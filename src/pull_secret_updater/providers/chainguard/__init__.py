"""Chainguard's registry (cgr.dev): identities that trust a Kubernetes ServiceAccount, tokens
from the Chainguard STS, verified against its published keys.

Its defaults are written here once and used by the controller's settings, the CLI and the
kubelet plugin alike.
"""

NAME = "chainguard"
DEFAULT_ISSUER = "https://issuer.enforce.dev"
DEFAULT_REGISTRY = "cgr.dev"
#: The audience the token service expects of a Kubernetes token.
DEFAULT_AUDIENCE = "issuer.enforce.dev"
#: Where the controller's Deployment projects a token with that audience.
DEFAULT_TOKEN_PATH = "/var/run/chainguard/oidc/oidc-token"
#: The registry's user name for a token (the password).
USERNAME = "_token"
