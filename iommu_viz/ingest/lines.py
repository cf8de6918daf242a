"""Reading a log's lines: one numbering for every source.

A log reaches the replay as a path, a text or binary file object (standard
input included), a string holding the log's text, or an iterable of lines.
Whatever the source, a line ends at ``\\n``, ``\\r\\n``, ``\\r\\r\\n`` (the
serial-console ending) or a lone ``\\r``: carriage returns followed by a
line feed end one line with it, and a carriage return not followed by a
line feed ends a line by itself. So line numbers are those ``grep -n``
gives for a log with ``\\n``, ``\\r\\n`` or ``\\r\\r\\n`` endings, from a
file, from standard input or from a notebook's string.

An iterable's items are lines already: each is one line, whatever it
holds (its own trailing line ending is dropped by the readers).

:func:`open_text` returns a :class:`TextSource`: blocks of whole lines,
each ending in ``"\\n"``, and what is needed for a progress bar.
"""

from __future__ import annotations

import codecs
import io
import os
import re

__all__ = ["TextSource", "open_text", "is_log_text", "strip_quote",
           "source_name"]

#: bytes read from a file at a time
BLOCK = 1 << 15
_CR_RUN = re.compile(r"\r*\n|\r")
#: A mail quote: one or more '>' (with optional spaces) at the start.
_QUOTE = re.compile(r"[ \t]*(?:>[ \t]?)+")


def is_log_text(source) -> bool:
    """True when ``source`` is a str holding a log's text rather than a
    path: it has a line break in it."""
    return isinstance(source, str) and ("\n" in source or "\r" in source)


def strip_quote(line: str) -> str:
    """``line`` without the mail quoting (``> ``, ``>> ``, ``> > ``) at
    its start."""
    m = _QUOTE.match(line)
    return line[m.end():] if m else line


def source_name(source) -> str:
    """How an error names ``source``: a path in quotes, 'standard input',
    'the given text' or 'the given lines'."""
    if isinstance(source, os.PathLike) or (isinstance(source, str)
                                           and not is_log_text(source)):
        return repr(os.fspath(source))
    if isinstance(source, str):
        return "the given text"
    name = getattr(source, "name", None)
    if name in ("<stdin>", 0) or source is getattr(
            __import__("sys"), "stdin", None):
        return "standard input"
    if isinstance(name, str):
        return repr(name)
    return "the given lines"


class TextSource:
    """Blocks of whole lines read from a file-like source (see
    :func:`open_text`). Iterating gives str blocks, each a run of lines
    ending in ``"\\n"``; a last line without an ending is given one.
    ``tell()`` is the bytes (or characters) read so far, ``total`` the
    size when known. ``binary`` becomes True when the data has NUL bytes,
    which no text log has."""

    def __init__(self, read, total=None, close=None, decode=None,
                 block=BLOCK):
        self._read = read
        self.block = block
        self._decode = decode
        self.total = total
        self._close = close
        self._done = 0
        self.binary = False
        self.replaced = 0

    def tell(self) -> int:
        return self._done

    def close(self):
        if self._close is not None:
            self._close()
            self._close = None

    def __iter__(self):
        carry = ""
        dec = self._decode
        while True:
            chunk = self._read(self.block)
            if not chunk:
                break
            self._done += len(chunk)
            if dec is not None:
                if not self.binary and b"\x00" in chunk:
                    self.binary = True
                chunk = dec.decode(chunk)
            elif not self.binary and "\x00" in chunk:
                self.binary = True
            if "\ufffd" in chunk:
                self.replaced += chunk.count("\ufffd")
            text = carry + chunk
            tail = ""
            if "\r" in text:
                # CRs at the very end may meet their LF in the next chunk
                body = text.rstrip("\r")
                tail = text[len(body):]
                text = _CR_RUN.sub("\n", body)
            cut = text.rfind("\n") + 1
            if cut:
                yield text[:cut]
            carry = text[cut:] + tail
        if dec is not None:
            carry += dec.decode(b"", final=True)
        if carry:
            carry = _CR_RUN.sub("\n", carry)
            yield carry if carry.endswith("\n") else carry + "\n"


def open_text(source, block=BLOCK):
    """A :class:`TextSource` for a path, a file object or a log's text
    (read ``block`` bytes or characters at a time); ``None`` for an
    iterable of lines (read item by item)."""
    if isinstance(source, (bytes, bytearray)):
        raise TypeError("give a path, a file object or lines, not bytes")
    if is_log_text(source):
        s = io.StringIO(source, newline="")
        return TextSource(s.read, len(source), block=block)
    if isinstance(source, (str, os.PathLike)):
        f = open(os.fspath(source), "rb")
        return TextSource(f.read, os.fstat(f.fileno()).st_size, f.close,
                          _decoder(), block)
    if isinstance(source, io.TextIOWrapper):
        # read the bytes: the wrapper's universal newlines would make a
        # lone CR a line and CR CR LF two
        buf = source.buffer
        total = None
        try:
            total = os.fstat(source.fileno()).st_size
        except (OSError, io.UnsupportedOperation, AttributeError):
            pass
        return TextSource(buf.read, total, None, _decoder(), block)
    if isinstance(source, (io.BufferedIOBase, io.RawIOBase)):
        return TextSource(source.read, None, None, _decoder(), block)
    if isinstance(source, io.TextIOBase):
        return TextSource(source.read, block=block)
    return None


def _decoder():
    return codecs.getincrementaldecoder("utf-8")(errors="replace")
