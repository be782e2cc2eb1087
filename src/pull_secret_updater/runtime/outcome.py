"""What one reconcile of one Secret concludes, shared by the step and the loop around it."""

from __future__ import annotations

from dataclasses import dataclass

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Look again after `requeue_after` seconds, or (None) only when the Secret changes."""

    requeue_after: float | None = None

    def sooner(self, other: Outcome) -> Outcome:
        """Whichever of the two looks again first."""
        if self.requeue_after is None:
            return other
        if other.requeue_after is None:
            return self
        return self if self.requeue_after <= other.requeue_after else other


DONE = Outcome()
