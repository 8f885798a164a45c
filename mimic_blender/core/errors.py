"""The failures the add-on reports to the animator, in words; each means nothing was changed."""

from __future__ import annotations


class JobError(Exception):
    """A problem in the scene or the job's inputs."""


class BackendError(Exception):
    """A failure of the backend, with a code (the protocol's error codes, plus the client's own
    below) and words for users."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class SetupError(Exception):
    """A setup step failed; the message says which and ends with its last output lines."""


# The client's own codes, beside the protocol's.
INTERPRETER_MISSING = "interpreter_missing"
PACKAGE_MISSING = "package_missing"
BACKEND_DIED = "backend_died"
TIMEOUT = "timeout"
