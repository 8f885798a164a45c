"""The one exception type users see: a message that says what is wrong and what to do."""

from . import protocol as p


class MimicError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""

    def __init__(self, message: str, code: str = p.BAD_INPUT):
        super().__init__(message)
        self.code = code
