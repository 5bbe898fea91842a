"""Scan-sheet fonts: a sheet's small fonts hold exactly its characters, drawn as the configured
fonts draw them (checked with fontTools against the font files), the fallback only when needed."""

from __future__ import annotations

import pytest
from fontTools.pens.recordingPen import DecomposingRecordingPen
from fontTools.ttLib import TTFont

from pacsd.config import ScanSheetSettings
from pacsd.errors import ConfigError
from pacsd.services.sheetfonts import SheetFonts

TEXT_FONT, CJK_FONT = ScanSheetSettings().fonts


def outline(font: TTFont, character: str) -> list:
    """What drawing `character` does, components resolved, in font units scaled to 1000/em."""
    pen = DecomposingRecordingPen(font.getGlyphSet())
    font.getGlyphSet()[font.getBestCmap()[ord(character)]].draw(pen)
    scale = 1000 / font["head"].unitsPerEm
    return [(operator, [tuple(round(c * scale, 3) for c in point) for point in points])
            for operator, points in pen.value]


def advance(font: TTFont, character: str) -> float:
    return font["hmtx"][font.getBestCmap()[ord(character)]][0] / font["head"].unitsPerEm


def test_a_latin_sheet_gets_one_font_with_exactly_its_characters(tmp_path):
    text = "Müller^Jürgen Иванов Παπαδόπουλος 2024-01-15"
    files = SheetFonts([TEXT_FONT, CJK_FONT]).files_for(text, tmp_path)
    assert len(files) == 1
    small, source = TTFont(files[0]), TTFont(TEXT_FONT)
    assert set(small.getBestCmap()) == {ord(c) for c in text}
    for character in set(text) - {" "}:  # ü is a composite glyph (u + dieresis) in DejaVu Sans
        assert outline(small, character) == outline(source, character), character
        assert advance(small, character) == advance(source, character), character


def test_characters_the_text_font_lacks_are_drawn_by_the_fallback(tmp_path):
    text = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    files = SheetFonts([TEXT_FONT, CJK_FONT]).files_for(text, tmp_path)
    assert len(files) == 1  # one font, so one font for fpdf2 to embed
    small = TTFont(files[0])
    assert set(small.getBestCmap()) == {ord(c) for c in text}
    for character, source in [*((c, TEXT_FONT) for c in "Yamada^Tarou="), *((c, CJK_FONT) for c in "山田太郎やまだたろう")]:
        assert outline(small, character) == outline(TTFont(source), character), character
        assert advance(small, character) == advance(TTFont(source), character), character


def test_without_any_configured_font_the_error_says_what_to_install(tmp_path):
    with pytest.raises(ConfigError, match="fonts-dejavu-core"):
        SheetFonts([tmp_path / "none.ttf"]).files_for("x", tmp_path)


def test_a_file_that_is_not_a_font_is_a_config_error(tmp_path):
    bogus = tmp_path / "bogus.ttf"
    bogus.write_bytes(b"not a font at all" * 10)
    with pytest.raises(ConfigError, match="not a TrueType font"):
        SheetFonts([bogus]).files_for("x", tmp_path)

