"""The scan sheet's PDF: study and patient details, the series table, a thumbnail per series.

Drawn with fpdf2 (pure Python; embeds TrueType fonts and falls back to a second font for glyphs
the first lacks, so Latin, Cyrillic, Greek and CJK names all print).  The fonts it gets are the
small per-sheet ones of `pacsd.services.sheetfonts`, made from every string the sheet prints.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace
from PIL import Image

from pacsd.services.sheetfonts import SheetFonts

_PAGE_MARGIN = 10  # mm
_THUMB_MM = 42
_CAPTION_MM = 5
_TITLE, _NO_VALUE = "Scan sheet", "-"


def _load_fonts(pdf: FPDF, fonts: Sequence[Path]) -> None:
    names = [f"font{index}" for index in range(len(fonts))]
    for name, path in zip(names, fonts):
        pdf.add_font(name, fname=str(path))
    pdf.set_font(names[0], size=9)
    pdf.set_fallback_fonts(names[1:], exact_match=False)


def _details(pdf: FPDF, fields: Sequence[tuple[str, str]]) -> None:
    """Label/value pairs two to a line; a value too long for half a line gets a whole one."""
    half, label_width, line = (pdf.epw - 4) / 2, 38, 5.5
    column = 0
    for label, value in fields:
        wide = pdf.get_string_width(value) > half - label_width - 2
        if column == 1 and wide:
            pdf.ln(line)
            column = 0
        pdf.set_x(pdf.l_margin + column * (half + 4))
        pdf.set_text_color(90)
        pdf.cell(label_width, line, label)
        pdf.set_text_color(0)
        pdf.cell((pdf.epw if wide else half) - label_width, line, value or _NO_VALUE)
        column = 0 if wide or column == 1 else 1
        if column == 0:
            pdf.ln(line)
    pdf.ln(line if column else 3)


_COLUMN_MM = [13, 56, 17, 50, 15, 15, 13, 13, 12, 13, 20, 19]


def _column_widths(pdf: FPDF, texts: Sequence[Sequence[str]]) -> list[float]:
    """Widths (mm) from _COLUMN_MM, each widened to hold its longest word (a line breaks between
    words, never inside one: 'RTSTRUCT', not 'RTSTRUC/T'); the widening is taken from the room
    other columns have beyond their own longest word, so the table stays on the page."""
    columns = list(zip(*texts))
    longest = [max(pdf.get_string_width(word) for text in column for word in (text.split() or [""]))
               + 2 * pdf.c_margin + 0.5 for column in columns]
    widths = [max(base, need) for base, need in zip(_COLUMN_MM, longest)]
    excess = sum(widths) - max(sum(_COLUMN_MM[: len(columns)]), pdf.epw)
    spare = [width - need for width, need in zip(widths, longest)]
    if excess > 0 and sum(spare) > 0:
        share = min(1.0, excess / sum(spare))
        widths = [width - room * share for width, room in zip(widths, spare)]
    return widths


def _series_table(pdf: FPDF, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[str]]) -> None:
    widths = _column_widths(pdf, [[title for title, _ in columns], *rows])
    with pdf.table(col_widths=widths, width=sum(widths), align="LEFT", line_height=5,
                   headings_style=FontFace(fill_color=(225, 225, 225))) as table:
        heading = table.row()
        for title, _ in columns:
            heading.cell(title)
        for cells in rows:
            row = table.row()
            for cell in cells:
                row.cell(cell)
    pdf.ln(4)


def _thumbnails(pdf: FPDF, items: Sequence[tuple[str, Image.Image | None]]) -> None:
    per_line = int((pdf.epw + 4) // (_THUMB_MM + 4))
    for index, (caption, image) in enumerate(items):
        column = index % per_line
        if column == 0:
            if index:
                pdf.ln(_THUMB_MM + _CAPTION_MM + 3)
            if pdf.get_y() + _THUMB_MM + _CAPTION_MM > pdf.h - pdf.b_margin:
                pdf.add_page()
            top = pdf.get_y()
        x = pdf.l_margin + column * (_THUMB_MM + 4)
        if image is not None:
            pdf.image(image, x=x, y=top, w=_THUMB_MM, h=_THUMB_MM, keep_aspect_ratio=True)
        else:
            pdf.rect(x, top, _THUMB_MM, _THUMB_MM)
        pdf.set_xy(x, top + _THUMB_MM)
        pdf.cell(_THUMB_MM, _CAPTION_MM, caption, align="C")
    pdf.ln(_THUMB_MM + _CAPTION_MM)


def render_sheet_pdf(sheet: Any, columns: Any, thumbnails: Any, fonts: SheetFonts) -> bytes:
    """The PDF bytes of `sheet` (a StudySheet); `thumbnails`: (SeriesRow, image or None) pairs."""
    rows = [row.cells() for row in sheet.series]
    captions = [(f"{row.number} {row.description}".strip(), image) for row, image in thumbnails]
    printed = [_TITLE, _NO_VALUE, *(part for pair in sheet.fields for part in pair),
               *(title for title, _ in columns), *(cell for cells in rows for cell in cells),
               *(caption for caption, _ in captions)]
    with tempfile.TemporaryDirectory(prefix="pacsd-sheet-") as folder:
        pdf = FPDF(orientation="landscape", format="A4")
        pdf.set_margins(_PAGE_MARGIN, _PAGE_MARGIN)
        pdf.set_auto_page_break(True, _PAGE_MARGIN)
        pdf.set_title(f"Scan sheet {sheet.study_uid}")
        pdf.set_creator("pacsd")
        _load_fonts(pdf, fonts.files_for("".join(printed), Path(folder)))
        pdf.add_page()
        pdf.set_font(size=15)
        pdf.cell(0, 9, _TITLE, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(size=9)
        _details(pdf, sheet.fields)
        _series_table(pdf, columns, rows)
        _thumbnails(pdf, captions)
        return bytes(pdf.output())
