"""The Google stand-in: Security Token Service and IAM Credentials as Google documents them.

No third-party emulator of Google's STS exists, so this one is written from the published
protocols (``sts.googleapis.com/v1/token``, RFC 8693; ``iamcredentials.googleapis.com``
``generateAccessToken``) and judged by Google's own SDK, google-auth, in ``tests/stack``.

Modules, by noun: ``errors`` (Google's two error shapes), ``directory`` (what an admin
creates: pools' OIDC providers, service accounts, IAM bindings; pure), ``ledger`` (tokens
issued, config, stats, kept by the token service's ``cloud``), ``sts`` and ``iamcredentials``
(the two calls), ``registry`` (the Artifact Registry realm: ``oauth2accesstoken`` with an
access token issued here) and ``front`` (the app and its admin routes).
"""
