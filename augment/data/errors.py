"""DataError: the one exception bad input data raises, with a one-line message naming file, row/key and column.

Also the strict UTF-8 decoder every reader uses, so an undecodable byte is reported by line and column instead of
surfacing later as mojibake in a prompt.

    from augment.data.errors import DataError
    raise DataError("non-numeric rating 'abc'", file="ratings.csv", row="line 17", column="rating")
"""
from __future__ import annotations


class DataError(ValueError):
    """Bad input data. ``str(err)`` is a single line: ``<file>: <row>: column '<col>': <problem>``."""

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        row: str | None = None,
        column: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.row = row
        self.column = column
        parts = [p for p in (file, row, f"column {column!r}" if column else None, problem) if p]
        # One line, always: problems may quote user data that contains newlines.
        super().__init__(" ".join(": ".join(parts).split()))


def decode_utf8(data: bytes, file: str, sep: str | None = None) -> str:
    """Decode strictly as UTF-8 (a leading BOM is dropped); name the line and, given ``sep``, the column of a bad byte.

    The column is found by counting separators before the bad byte on its line, which is exact unless a quoted
    field before it contains the separator; good enough to point a person at the right cell.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line_start = data.rfind(b"\n", 0, err.start) + 1
        line_no = data.count(b"\n", 0, err.start) + 1
        column = None
        if sep:
            header = data[: data.find(b"\n")].decode("utf-8-sig", errors="replace").rstrip("\r").split(sep)
            field = data[line_start : err.start].count(sep.encode())
            column = header[field].strip().strip('"') if field < len(header) else f"#{field + 1}"
        bad = data[err.start : err.end].hex()
        raise DataError(f"invalid UTF-8 byte(s) 0x{bad}", file=file, row=f"line {line_no}", column=column) from None
