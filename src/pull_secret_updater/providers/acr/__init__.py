"""Azure Container Registry: an Entra ID app registration (or user-assigned managed identity)
with a federated identity credential trusting the cluster's ServiceAccount tokens. Entra's
token endpoint takes the Kubernetes token as a client assertion and answers with an access
token for the registry's audience (``https://containerregistry.azure.net/.default``); the
registry's ``/oauth2/exchange`` trades that for an ACR refresh token, which is the registry
password (user ``00000000-0000-0000-0000-000000000000``) and lives about 3 hours.

NB: the scope is the registry's own audience, not Azure Resource Manager's: a registry may
refuse ARM-audience tokens (``azureADAuthenticationAsArmPolicy`` disabled), and then an
exchange built on the ARM scope fails where this one keeps working.

An ACR refresh token is a JWT, but signed with a key nobody outside the registry can fetch:
one found in a Secret is trusted only while byte-identical to one this process obtained, and
its expiry is its own ``exp`` claim, read without verification from the answer this process
received over verified TLS, and never believed beyond `MAX_LIFETIME`.
"""

NAME = "acr"
#: Every annotation of this provider starts with it.
PREFIX = "acr.pull-secret-updater.chainguard.dev/"
#: The registry's user name for an ACR refresh token.
USERNAME = "00000000-0000-0000-0000-000000000000"
#: The audience Entra ID expects of a federated client assertion.
DEFAULT_AUDIENCE = "api://AzureADTokenExchange"
#: Where the controller's Deployment projects a token with that audience (as AKS does).
DEFAULT_TOKEN_PATH = "/var/run/secrets/azure/tokens/azure-identity-token"
#: Microsoft Entra ID's public cloud; sovereign clouds have their own.
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
#: The scope of the access token: the registries' own audience (never ARM's).
SCOPE = "https://containerregistry.azure.net/.default"
#: ACR refresh tokens live 3 hours; a longer `exp` is trusted only this far.
MAX_LIFETIME = 3 * 3600.0
