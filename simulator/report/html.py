"""The HTML side of reports: a self-contained page, tables, and the little Markdown reports use.

Only what reports write is supported: paragraphs, pipe tables, `code`,
*emphasis* and **strong**. Everything is escaped; the page has its own CSS
and no scripts, so it renders the same in a browser and in a notebook.
"""

from __future__ import annotations

import html as _html
import re
from collections.abc import Sequence

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f4f4f4; padding: 0 0.2em; border-radius: 3px; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
"""


def escape(text: str) -> str:
    return _html.escape(str(text), quote=True)


def inline(text: str) -> str:
    """Escape ``text`` and render `code`, **strong** and *emphasis*."""
    parts = re.split(r"(`[^`]*`)", str(text))
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) >= 2:
            out.append(f"<code>{escape(part[1:-1])}</code>")
            continue
        part = escape(part)
        part = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", part)
        out.append(re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", part))
    return "".join(out)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{inline(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{inline(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def from_markdown(text: str) -> str:
    """Paragraphs and pipe tables of ``text`` as HTML."""
    out, lines = [], text.strip("\n").splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(_pipe_table(block))
            continue
        paragraph = []
        while i < len(lines) and lines[i].strip() and not lines[i].startswith("|"):
            paragraph.append(lines[i])
            i += 1
        if paragraph:
            out.append(f"<p>{inline(' '.join(paragraph))}</p>")
        else:
            i += 1
    return "\n".join(out)


def _pipe_table(lines: list[str]) -> str:
    cells = [_split_row(line) for line in lines if not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip())]
    return table(cells[0], cells[1:]) if cells else ""


def _split_row(line: str) -> list[str]:
    # Pipes inside `code` do not split cells.
    cells, current, in_code = [], [], False
    for char in line.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    cells.append("".join(current).strip())
    return cells


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")
