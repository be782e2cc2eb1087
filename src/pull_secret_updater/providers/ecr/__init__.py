"""Amazon ECR private registries: an IAM role that trusts the cluster's ServiceAccount tokens
(an IAM OIDC provider), assumed with STS `AssumeRoleWithWebIdentity`; with its temporary
credentials, ECR `GetAuthorizationToken` (SigV4-signed) gives a registry password that lives
12 hours and is good for every registry the role may pull from in that region.

ECR passwords cannot be verified offline: one found in a Secret is trusted only while it is
byte-identical to one this process obtained, and its times are the exchange's answer.
"""

NAME = "ecr"
#: Every annotation of this provider starts with it.
PREFIX = "ecr.pull-secret-updater.chainguard.dev/"
#: The registry's user name for an ECR password.
USERNAME = "AWS"
#: The audience AWS STS expects of a web identity token (an IAM OIDC provider's client ID).
DEFAULT_AUDIENCE = "sts.amazonaws.com"
#: Where the controller's Deployment projects a token with that audience (as EKS does).
DEFAULT_TOKEN_PATH = "/var/run/secrets/sts.amazonaws.com/serviceaccount/token"
#: Seconds the role session lasts: the credentials sign one request right away, so the
#: shortest AWS allows.
DEFAULT_SESSION_DURATION = 900
#: ECR passwords live 12 hours; an answer saying longer is trusted only this far.
MAX_LIFETIME = 12 * 3600.0
