"""A report as a list of blocks, rendered both as Markdown and as a standalone HTML page.

Reports are built once as blocks (headings, paragraphs, tables, figures and
raw Markdown) and rendered twice, so ``report.md`` and ``report.html`` always
say the same thing. Markdown links figures by file name; the HTML page embeds
them as base64 PNG so it opens anywhere on its own.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from simulator.report import html


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str  # inline Markdown: `code`, *emphasis*, **strong**


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Figure:
    filename: str  # a PNG beside the report
    caption: str


@dataclass(frozen=True)
class RawMarkdown:
    text: str  # paragraphs and pipe tables only (e.g. the metric definitions)


Block = Heading | Paragraph | Table | Figure | RawMarkdown


@dataclass
class Document:
    """An ordered list of blocks with a title."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> Document:
        self.blocks.append(Heading(text, level))
        return self

    def paragraph(self, text: str) -> Document:
        self.blocks.append(Paragraph(text))
        return self

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Document:
        self.blocks.append(Table(tuple(header), tuple(tuple(str(c) for c in row) for row in rows)))
        return self

    def figure(self, filename: str, caption: str) -> Document:
        self.blocks.append(Figure(filename, caption))
        return self

    def raw(self, markdown: str) -> Document:
        self.blocks.append(RawMarkdown(markdown))
        return self

    def to_markdown(self) -> str:
        parts = [f"# {self.title}"] + [_block_markdown(block) for block in self.blocks]
        return "\n\n".join(part.rstrip("\n") for part in parts) + "\n"

    def to_html(self, figure_dir: Path) -> str:
        """A standalone page; figures are read from ``figure_dir`` and embedded."""
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        body += [_block_html(block, Path(figure_dir)) for block in self.blocks]
        return html.page(self.title, "\n".join(body))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _block_markdown(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {block.text}"
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Table):
        return markdown_table(block.header, block.rows)
    if isinstance(block, Figure):
        return f"![{block.caption}]({block.filename})"
    return block.text


def _block_html(block: Block, figure_dir: Path) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{html.inline(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{html.inline(block.text)}</p>"
    if isinstance(block, Table):
        return html.table(block.header, block.rows)
    if isinstance(block, Figure):
        return _figure_html(block, figure_dir)
    return html.from_markdown(block.text)


def _figure_html(block: Figure, figure_dir: Path) -> str:
    path = figure_dir / block.filename
    if not path.is_file():
        return f"<p><em>figure {html.escape(block.filename)} is missing</em></p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = html.escape(block.caption)
    return (f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")
