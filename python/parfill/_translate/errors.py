"""The one exception of the translator.

A :class:`TranslationError` means "this function is left to Python": it names
the construct that stopped the translation and where it is, so a user can see
why (``parfill.translate(f, ndim)``) and ``populate`` can fall back quietly.
It is a ``TypeError`` because the function is of a kind the native engine does
not take, like any other unsupported argument type.
"""
from __future__ import annotations


class TranslationError(TypeError):
    """A Python function that cannot be translated exactly into parfill's
    native engine. ``construct`` names what stopped the translation,
    ``filename`` and ``lineno`` say where it is (``lineno`` may be None)."""

    construct: str
    filename: str
    lineno: int | None

    def __init__(self, construct: str, filename: str = "<unknown>",
                 lineno: int | None = None) -> None:
        self.construct = construct
        self.filename = filename
        self.lineno = lineno
        where = filename if lineno is None else f"{filename}, line {lineno}"
        super().__init__(f"cannot translate {construct} ({where})")

    def __reduce__(self) -> tuple[type, tuple[str, str, int | None]]:
        # Picklable with its fields (the default would pass the message as
        # the construct).
        return (type(self), (self.construct, self.filename, self.lineno))


class Refusal(Exception):
    """Raised inside the translator with only the construct; the driver adds
    the file and the line of the instruction being translated. Never leaves
    the package."""

    def __init__(self, construct: str, lineno: int | None = None) -> None:
        super().__init__(construct)
        self.construct = construct
        self.lineno = lineno
