"""The GitHub REST API through PyGithub: one client, bounded waits, errors people can act on.

The API's address comes from `GITHUB_API_URL` (GitHub Actions sets it, GitHub Enterprise has
its own; the tests point it at a local server that answers as the real API does), the token
from `GITHUB_TOKEN`. The token goes only into PyGithub's Authorization header: it is never
part of a message, a log line or the ledger.

PyGithub's own retry waits until a rate limit resets, which may be an hour: here a limit
that resets within RATE_WAIT_S is waited for once, and a later one is an error naming when
to try again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from release.errors import BadInput, InfrastructureError

if TYPE_CHECKING:
    from github import Github

API_URL_VARIABLE = "GITHUB_API_URL"
TOKEN_VARIABLE = "GITHUB_TOKEN"  # noqa: S105 (the name of the variable, not a token)
DEFAULT_API = "https://api.github.com"
RATE_WAIT_S = 60.0
T = TypeVar("T")


class NotFound(BadInput):
    """The API answered 404: the thing does not exist, or this token cannot see it."""


class Unprocessable(InfrastructureError):
    """The API answered 422: e.g. an asset of that name exists already (another run's)."""


def client(token: str | None = None) -> Github:
    from github import Auth, Github

    token = token if token is not None else os.environ.get(TOKEN_VARIABLE) or None
    return Github(
        auth=Auth.Token(token) if token else None,
        base_url=os.environ.get(API_URL_VARIABLE) or DEFAULT_API,
        timeout=30,
        per_page=100,
        retry=None,
        seconds_between_requests=None,
    )


def _reset_in(headers: dict[str, str] | None) -> float | None:
    value = (headers or {}).get("x-ratelimit-reset") or (headers or {}).get("X-RateLimit-Reset")
    try:
        return float(value) - time.time() if value is not None else None
    except ValueError:
        return None


def call(what: str, action: Callable[[], T], *, repository: str = "") -> T:
    """Run one API action, mapping PyGithub's errors to the toolkit's (token never shown)."""
    import requests
    from github import (
        BadCredentialsException,
        GithubException,
        RateLimitExceededException,
        UnknownObjectException,
    )

    for attempt in (1, 2):
        try:
            return action()
        except BadCredentialsException:
            raise BadInput(
                f"GitHub refused the token while {what} (401 Bad credentials)",
                fix=f"set {TOKEN_VARIABLE} to a valid token that can read {repository or 'the repository'}",
            ) from None
        except RateLimitExceededException as exc:
            left = _reset_in(exc.headers)
            if attempt == 1 and left is not None and left <= RATE_WAIT_S:
                time.sleep(max(left, 0.0) + 0.5)
                continue
            when = (
                datetime.fromtimestamp(time.time() + left, UTC).strftime("%H:%M:%S UTC")
                if left is not None
                else "later"
            )
            raise InfrastructureError(
                f"the GitHub API rate limit was reached while {what}; it resets at {when}",
                fix=f"run again after that, or with a token ({TOKEN_VARIABLE}), which has a higher limit",
            ) from None
        except UnknownObjectException:
            raise NotFound(
                f"GitHub has no {what.removeprefix('reading ')} (404)",
                fix=f"check the name; a private repository needs a token ({TOKEN_VARIABLE}) that can "
                "read it",
            ) from None
        except GithubException as exc:
            message = exc.message or (exc.data or {}).get("message", "")
            kind = Unprocessable if exc.status == 422 else InfrastructureError
            raise kind(f"GitHub answered {exc.status} while {what}: {message}") from None
        except requests.RequestException as exc:
            raise InfrastructureError(
                f"GitHub could not be reached while {what}: {type(exc).__name__}"
            ) from None
    raise AssertionError("unreachable")
