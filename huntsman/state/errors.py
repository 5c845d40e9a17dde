"""Errors of the application state: each says what was wrong and with which name."""

from __future__ import annotations

from huntsman.errors import HuntsmanError


class StateError(HuntsmanError):
    """Any failure of the application state a user can cause (bad name, bad role, bad value)."""


class NotFoundError(StateError):
    """A tenant, user, app, saved query or function that does not exist (or is not visible)."""


class ConflictError(StateError):
    """A duplicate name, or an update against a version that someone else has changed."""


class AuthError(StateError):
    """Credentials that do not verify, or a disabled principal."""
