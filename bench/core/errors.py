"""User-facing errors of eraselab.

Anything a user can cause (a bad catalog, an unknown method, a missing image) raises
`EraselabError` with a one-line, specific message; the CLI prints it and exits non-zero
without a traceback. Programming errors stay ordinary exceptions.

A value from user input is quoted in a message with ``quoted(value)``: its repr, cut to
``QUOTE_LIMIT`` characters, so a huge value (a megabyte-long string, a YAML alias expansion)
never turns a one-line error into megabytes of output. The message as a whole is cut at
``MESSAGE_LIMIT`` characters as a backstop for messages that quote without the helper.
"""

QUOTE_LIMIT = 200
MESSAGE_LIMIT = 2000


def shorten(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def quoted(value, limit: int = QUOTE_LIMIT) -> str:
    """The repr of a user-supplied value for an error message, at most ``limit`` characters.

    Containers are repr'd piecewise up to the limit, so quoting an alias-expanded list of a
    billion items costs microseconds, not the time (and memory) of its full repr."""
    text = _bounded_repr(value, limit + 1)
    return text if len(text) <= limit else text[:limit] + "..."


def _bounded_repr(value, budget: int) -> str:
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        brackets = {list: "[]", tuple: "()"}.get(type(value), "{}")
        items = value.items() if isinstance(value, dict) else value
        parts, used = [], 1
        for item in items:
            if used >= budget:
                break
            if isinstance(value, dict):
                key, val = item
                piece = _bounded_repr(key, budget - used) + ": " + _bounded_repr(val, budget - used)
            else:
                piece = _bounded_repr(item, budget - used)
            parts.append(piece)
            used += len(piece) + 2
        text = brackets[0] + ", ".join(parts) + brackets[1]
        return text if used < budget else text[:budget]
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return text[:budget]


SUGGEST_CUTOFF = 0.5  # difflib similarity a name must reach to be offered as "did you mean"


def suggest(name, known, fallback: bool = True) -> str:
    """The hint for an unknown ``name``: "did you mean 'a', 'b'?" (up to three close names),
    else "known: ..." listing ``known`` (capped), or "" when ``fallback`` is False."""
    import difflib

    known = [str(k) for k in known]
    close = difflib.get_close_matches(str(name)[:100], known, n=3, cutoff=SUGGEST_CUTOFF)
    if close:
        return f"did you mean {', '.join(repr(c) for c in close)}?"
    return shorten(f"known: {', '.join(known)}") if fallback and known else ""


class EraselabError(Exception):
    """An error caused by user input; its message is one line and says what to fix."""

    exit_code = 1

    def __init__(self, message: str):
        # One line only: the CLI prints it as-is, and multi-line messages hide the cause.
        super().__init__(shorten(" ".join(str(message).split("\n")), MESSAGE_LIMIT))


class UsageError(EraselabError):
    """A malformed command line (exit code 2, as argparse uses)."""

    exit_code = 2


class ValidationError(EraselabError):
    """A catalog, suite or config that breaks its schema; may carry several problems."""

    def __init__(self, problems: list[str]):
        self.problems = [shorten(" ".join(str(p).split("\n")), MESSAGE_LIMIT) for p in problems]
        super().__init__(self.problems[0] if len(self.problems) == 1 else
                         f"{len(self.problems)} problems: " + "; ".join(self.problems))
