"""A provider that mints random, opaque credentials in-process: for testing the machinery.

It is a full peer of the real providers (its own annotations, settings section, exchange and
errors), and the one whose credentials cannot be verified offline, like an ECR password: a
credential found in a Secret is trusted only while byte-identical to one this process
obtained. No registry accepts its credentials; it is never enabled unless a `{"kind": "fake"}`
entry is configured. It still asks for the subject's Kubernetes token at every exchange, so
namespace-scoped subjects and their failures take the same path as with a real provider.
"""

NAME = "fake"
PREFIX = "fake.pull-secret-updater.chainguard.dev/"
USERNAME = "fake"
DEFAULT_REGISTRY = "registry.fake.invalid"
DEFAULT_AUDIENCE = "fake.pull-secret-updater.invalid"
DEFAULT_LIFETIME = 3600.0
