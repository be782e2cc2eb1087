"""The AWS stand-in: STS and ECR as AWS documents them, built on moto's server.

moto (a third-party AWS emulator) keeps IAM (OIDC providers, roles, trust policies) and mints
STS credentials, but checks no web identity token, no trust policy and no signature, and its
ECR passwords expired in 2015. ``front.AwsFront`` stands before it on a listener of its own
and does what AWS does and moto does not.

Modules, by noun: ``trust`` (a trust policy judged, pure), ``sigv4`` (a request's signature
checked), ``errors`` (AWS's error shapes), ``ledger`` (credentials and passwords issued,
config, stats, kept by the token service's ``cloud``), ``moto_backend`` (boto3 against moto),
``sts_front`` and ``ecr_front`` (the two calls), ``ecr_registry`` (the registries' token
realm) and ``front`` (the app and its admin routes). Only ``trust`` is imported by the stack
(no aiohttp, no boto3).
"""
