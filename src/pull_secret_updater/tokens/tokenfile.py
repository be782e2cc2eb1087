"""The projected service-account token file: read afresh at every use.

The kubelet writes the file and rotates it well before expiry, so caching it would outlive a
rotation. The controller reads its own token here (``token_source: file``), and the kubelet
plugin reads the node's fallback token the same way. Kept apart from the TokenRequest source
(`satoken`) so that reading a file loads no Kubernetes client.

The token is a credential: no message here includes it, not even a prefix of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pull_secret_updater.tokens.errors import TokenSourceError

__all__ = ["DEFAULT_TOKEN_PATH", "ProjectedFileTokenSource"]

DEFAULT_TOKEN_PATH = Path("/var/run/chainguard/oidc/oidc-token")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectedFileTokenSource:
    """Reads the token kubelet projects into the pod, afresh at every call."""

    path: Path = DEFAULT_TOKEN_PATH

    async def get(self) -> str:
        # NB: read synchronously: it is a tiny file on a tmpfs, cheaper than a thread hop.
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError as e:
            raise TokenSourceError(
                f"service-account token file {self.path} does not exist; mount a projected "
                "serviceAccountToken volume there, or set token_source to tokenrequest"
            ) from e
        except IsADirectoryError as e:
            raise TokenSourceError(
                f"service-account token path {self.path} is a directory, not a file"
            ) from e
        except PermissionError as e:
            raise TokenSourceError(
                f"service-account token file {self.path} cannot be read: permission denied"
            ) from e
        except OSError as e:
            raise TokenSourceError(
                f"service-account token file {self.path} cannot be read: "
                f"{e.strerror or type(e).__name__}"
            ) from e
        token, problem = _decode_token(raw)
        if problem is not None:
            raise TokenSourceError(f"service-account token file {self.path} {problem}")
        return token


def _decode_token(raw: bytes) -> tuple[str, str | None]:
    # NB: the problem is returned, not raised inside `except`: UnicodeDecodeError.object is
    # the file's content, which must not stay reachable from our exception.
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return "", "is not ASCII text, so it is not a token"
    token = text.strip()
    if not token:
        return "", "is empty"
    if any(c.isspace() for c in token):
        return "", "holds more than one word, so it is not a token"
    return token, None
