"""The one base class of user errors: bad input the user can fix, not a bug.

Stages (`pipeline.stage.run`) and the `tai` command catch it once, print its message as one
line and exit with status 2. Every message names the file, key or value and the fix."""

import re


class UserError(Exception):
    """Bad input: the message says what is wrong and how to fix it. Exit status 2, no traceback."""


class DatasetError(UserError, ValueError):
    """A dataset source is missing, incomplete or malformed (the message says where and how to fix it)."""


EXIT_USER_ERROR = 2


def one_line(error: BaseException) -> str:
    """The error's message on one line (a library's message, such as a parser's, may span several)."""
    return re.sub(r"\s*\n\s*", " ", str(error).strip())
