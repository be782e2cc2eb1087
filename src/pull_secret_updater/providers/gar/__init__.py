"""Google Artifact Registry and Container Registry: a workload identity pool provider that
trusts the cluster's ServiceAccount tokens, exchanged at Google's Security Token Service
(``sts.googleapis.com``) for a federated access token; optionally that token impersonates a
Google service account through IAM Credentials ``generateAccessToken``. The registry takes the
access token as the password of user ``oauth2accesstoken``.

Access tokens are opaque and cannot be verified offline: one found in a Secret is trusted only
while it is byte-identical to one this process obtained, and its times are the exchange's
answer (``expires_in``, ``expireTime``).

Why not google-auth: it is synchronous, built on requests, and costs its import time in the
kubelet plugin, which starts once per pull; the two calls are two small HTTPS requests.
"""

NAME = "gar"
#: Every annotation of this provider starts with it.
PREFIX = "gar.pull-secret-updater.chainguard.dev/"
#: The registry's user name for an OAuth access token.
USERNAME = "oauth2accesstoken"
#: The audience of the Kubernetes tokens exchanged, unless the section names another: listed in
#: the pool provider's allowed audiences (``--allowed-audiences``). Google's own default is the
#: provider's full name, ``https://iam.googleapis.com/projects/.../providers/<id>``, which the
#: section's ``sa_audience`` may be set to instead, binding the controller to that provider.
DEFAULT_AUDIENCE = "sts.googleapis.com"
#: Where the controller's Deployment projects a token with the section's audience.
DEFAULT_TOKEN_PATH = "/var/run/secrets/iam.googleapis.com/serviceaccount/token"
DEFAULT_STS_ENDPOINT = "https://sts.googleapis.com"
DEFAULT_IAMCREDENTIALS_ENDPOINT = "https://iamcredentials.googleapis.com"
#: The scope asked for, at both calls: what Artifact Registry's reader role needs.
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
#: Google's federated tokens live at most an hour, and the access tokens asked of
#: ``generateAccessToken`` are asked for an hour; an answer saying longer is trusted this far.
MAX_LIFETIME = 3600.0
#: The ``lifetime`` asked of ``generateAccessToken``.
IMPERSONATION_LIFETIME = 3600
#: A federated token lives no longer than the Kubernetes token it came from: tokens of the
#: provider's audience should be asked for at least this long.
MIN_SA_TOKEN_LIFETIME = 3600
