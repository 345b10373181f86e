"""The one exception type for mistakes a user can make (exit status 2, no traceback)."""


class UserError(Exception):
    """A problem the user can fix: bad flag, unknown model, missing or corrupt file.

    The command line prints its message as one paragraph and exits with status 2.
    """
