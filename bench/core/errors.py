"""User-facing errors of eraselab.

Anything a user can cause (a bad catalog, an unknown method, a missing image) raises
`EraselabError` with a one-line, specific message; the CLI prints it and exits non-zero
without a traceback. Programming errors stay ordinary exceptions.
"""


class EraselabError(Exception):
    """An error caused by user input; its message is one line and says what to fix."""

    exit_code = 1

    def __init__(self, message: str):
        # One line only: the CLI prints it as-is, and multi-line messages hide the cause.
        super().__init__(" ".join(str(message).split("\n")))


class UsageError(EraselabError):
    """A malformed command line (exit code 2, as argparse uses)."""

    exit_code = 2


class ValidationError(EraselabError):
    """A catalog, suite or config that breaks its schema; may carry several problems."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(self.problems[0] if len(self.problems) == 1 else
                         f"{len(self.problems)} problems: " + "; ".join(self.problems))
