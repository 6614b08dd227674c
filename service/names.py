"""Names callers give to group their entries and costs: namespaces, tags, feature labels.

Letters of any script are allowed ("고객지원" is as good a namespace as "support"), read in
NFC so that one name typed two ways is one name. "/" is not: a tenant's namespaces are stored
as "<tenant>/<namespace>". A header cannot carry UTF-8 through the SDK (httpx encodes header
values as ASCII), so in headers a name may also be percent-encoded.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse

RULE = "use 1-128 letters (any script), digits, _ . : -"
_NAME = re.compile(r"[\w.:\-]{1,128}")


def checked_name(value: str, what: str) -> str:
    """`value` in NFC; ValueError naming `what` when it is not a name."""
    name = unicodedata.normalize("NFC", value)
    if not _NAME.fullmatch(name):
        raise ValueError(f"{what} {value[:60]!r}: {RULE}")
    return name


def header_name(raw: str, header: str) -> str:
    """A name sent in a header: percent-encoded UTF-8 ("%EA%B3%A0...") or raw UTF-8 bytes,
    which the server hands over decoded as Latin-1."""
    text = raw
    if "%" in raw:
        try:
            text = urllib.parse.unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise ValueError(f"{header}: not percent-encoded UTF-8") from None
    elif not raw.isascii():
        try:
            text = raw.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            raise ValueError(f"{header}: not UTF-8") from None
    return checked_name(text, header)
