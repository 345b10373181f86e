"""The one exception type for mistakes a user can make (exit status 2, no traceback)."""


class UserError(Exception):
    """A problem the user can fix: bad flag, unknown model, missing or corrupt file.

    The command line prints its message as one paragraph and exits with status 2. Where the
    web server may pass it on, `key` names its sentence in the message catalogs
    (`server.error.<key>`, convnet/locales) and `values` fill that sentence, so the page
    can show it in its own language; the message itself stays English.
    """

    def __init__(self, message: str, key: str | None = None, **values: object) -> None:
        super().__init__(message)
        self.key, self.values = key, values
