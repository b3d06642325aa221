"""The errors a user sees. Each is one line; the CLI prints it and exits with its code."""


class DlcliError(Exception):
    exit_code = 1


class BadInput(DlcliError):
    """Bad usage or bad input (recipe, data, arguments): exit 2.

    Formats as `file:line: key.path: message` with the parts that are known.
    """

    exit_code = 2

    def __init__(self, message: str, file=None, key: str | None = None, line: int | None = None):
        self.message = message
        self.file = None if file is None else str(file)
        self.key = key
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"
