"""Which passwords are acceptable (NIST SP 800-63B): long enough, not absurdly long, not a
common or breached password, not built from the account's own email or name. No composition
rules. Pure: the schemas, the CLI and the password change all ask here.
"""

from __future__ import annotations

import gzip
import itertools
import string
from functools import cache
from importlib import resources

MIN_LENGTH = 12  # code points, as Python counts a str
MAX_LENGTH = 256

_LIST = "common-passwords.txt.gz"
_PADDING = string.digits + string.punctuation + string.whitespace

COMMON = "is one of the most common passwords; choose one that is harder to guess"
COMMON_PADDED = (
    "is a common password with a few digits or symbols added; choose one that is harder to guess"
)
REPETITIVE = "is too repetitive (such as aaaa or abcd); choose one that is harder to guess"
HAS_EMAIL = "must not contain your email address"
HAS_NAME = "must not contain your name"
HAS_SERVICE = "must not contain the name of this service"
SERVICE_WORDS = ("farmstand",)


@cache
def common_passwords() -> frozenset[str]:
    """The bundled list of common and breached passwords, lower case (see data/README.md)."""
    data = resources.files("farmstand.accounts").joinpath("data", _LIST).read_bytes()
    lines = gzip.decompress(data).decode("utf-8").splitlines()
    return frozenset(line.strip().casefold() for line in lines if line.strip())


def _repetitive(text: str) -> bool:
    if len(set(text)) < 4:
        return True
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(text)}
    if len(steps) == 1 and steps <= {-1, 1}:  # abcdefghijkl, 987654321...
        return True
    for size in range(1, len(text) // 2 + 1):  # a short unit over and over
        unit = text[:size]
        if len(text) % size == 0 and unit * (len(text) // size) == text:
            return size <= 6 or unit in common_passwords()
    return False


def problems(password: str, *, email: str | None = None, name: str | None = None) -> list[str]:
    """What is wrong with ``password`` for the account of ``email`` and ``name`` (empty: fine).

    Length is checked by the schemas (they document it); this checks it too for other callers.
    """
    found: list[str] = []
    if len(password) < MIN_LENGTH:
        found.append(f"must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        found.append(f"must be at most {MAX_LENGTH} characters")
    if not password.strip():
        return found or ["must not be only spaces"]
    folded = password.casefold()
    common = common_passwords()
    if folded in common or folded.strip() in common:
        found.append(COMMON)
    else:
        core = folded.strip(_PADDING)
        if core != folded and len(core) >= 4 and core in common:
            found.append(COMMON_PADDED)
        elif _repetitive(folded):
            found.append(REPETITIVE)
    if any(word in folded for word in SERVICE_WORDS):
        found.append(HAS_SERVICE)
    if email:
        address = email.strip().casefold()
        local = address.partition("@")[0]
        if address in folded or (len(local) >= 3 and local in folded):
            found.append(HAS_EMAIL)
    if name:
        full = " ".join(name.casefold().split())
        compact = folded.replace(" ", "")
        words = [word for word in full.split(" ") if len(word) >= 4]
        if (len(full) >= 3 and full.replace(" ", "") in compact) or any(
            word in folded for word in words
        ):
            found.append(HAS_NAME)
    return found
