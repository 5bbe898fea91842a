"""Scan-sheet fonts: each configured TrueType font is read once per process, and each sheet gets
small fonts holding only the glyphs of its own text, so fpdf2 parses and subsets a few dozen
glyphs per sheet instead of whole fonts.  A fallback font (the large CJK one) is read only when a
sheet first holds a character the fonts before it lack.
"""

from __future__ import annotations

import copy
import logging
import struct
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from fontTools.fontBuilder import FontBuilder
from fontTools.ttLib import TTFont, TTLibError, newTable
from fontTools.ttLib.tables._g_l_y_f import Glyph

from pacsd.errors import ConfigError

log = logging.getLogger(__name__)

_NOTDEF = ".notdef"


class SourceFont:
    """One configured font file, parsed once: its character map, outlines and metrics."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._font = TTFont(path, recalcTimestamp=False)
            self.cmap: dict[int, str] = self._font.getBestCmap() or {}
            # Outlines in `glyf` can be copied into a small font; other fonts (CFF) are embedded whole.
            self.copies_glyphs = "glyf" in self._font and "hmtx" in self._font
            if self.copies_glyphs:
                for table in ("glyf", "hmtx", "hhea", "OS/2", "post", "name", "head"):
                    self._font[table]  # read now, once, rather than by the first sheet in the middle of it
        except (TTLibError, OSError, KeyError, ValueError, AssertionError, struct.error) as exc:
            raise ConfigError(f"{path}: not a TrueType font scan sheets can use ({exc})") from None
        self._prepared: dict[str, Glyph] = {}  # at most one entry per glyph of the font
        self._lock = threading.Lock()  # fontTools expands glyphs lazily: one sheet at a time

    def has(self, codepoint: int) -> bool:
        return codepoint in self.cmap

    def small_font(self, codepoints: Iterable[int], target: Path) -> Path:
        """Write a TrueType font with only `codepoints` (those it has) and .notdef to `target`;
        a font whose outlines cannot be copied is used whole (its own path is returned)."""
        if not self.copies_glyphs:
            return self.path
        with self._lock:
            builder = self._builder({codepoint: self.cmap[codepoint] for codepoint in codepoints
                                     if codepoint in self.cmap})
        builder.save(str(target))
        return target

    def _builder(self, cmap: dict[int, str]) -> FontBuilder:
        font = self._font
        glyf, hmtx = font["glyf"], font["hmtx"]
        order = _with_components(glyf, [_NOTDEF, *sorted(set(cmap.values()) - {_NOTDEF})])
        glyphs = {name: self._glyph(name) for name in order}
        hhea, os2, post, names = font["hhea"], font["OS/2"], font["post"], font["name"]
        head = font["head"]
        builder = FontBuilder(head.unitsPerEm, isTTF=True)
        # The glyphs are compiled already, with their bounds: written as they are.
        builder.font.recalcBBoxes = False
        builder.setupGlyphOrder(order)
        builder.setupCharacterMap(cmap)
        # What FontBuilder.setupGlyf does, without expanding the glyphs to check their outlines.
        builder.font["loca"], builder.font["glyf"] = newTable("loca"), newTable("glyf")
        builder.font["glyf"].glyphs, builder.font["glyf"].glyphOrder = glyphs, order
        for bound in ("xMin", "yMin", "xMax", "yMax"):
            setattr(builder.font["head"], bound, getattr(head, bound))
        builder.setupHorizontalMetrics({name: hmtx[name] for name in order})
        builder.setupHorizontalHeader(ascent=hhea.ascent, descent=hhea.descent, lineGap=hhea.lineGap)
        builder.setupNameTable({"familyName": names.getBestFamilyName() or self.path.stem,
                                "styleName": names.getBestSubFamilyName() or "Regular"})
        builder.setupOS2(sTypoAscender=os2.sTypoAscender, sTypoDescender=os2.sTypoDescender,
                         sTypoLineGap=os2.sTypoLineGap, usWinAscent=os2.usWinAscent, usWinDescent=os2.usWinDescent,
                         usWeightClass=os2.usWeightClass, sCapHeight=getattr(os2, "sCapHeight", hhea.ascent),
                         yStrikeoutPosition=os2.yStrikeoutPosition, yStrikeoutSize=os2.yStrikeoutSize)
        builder.setupPost(keepGlyphNames=False, isFixedPitch=post.isFixedPitch, italicAngle=post.italicAngle,
                          underlinePosition=post.underlinePosition, underlineThickness=post.underlineThickness)
        return builder

    def _glyph(self, name: str) -> Glyph:
        """The glyph `name` without its hinting program (the fpgm and prep tables it would call
        are not copied), prepared once per glyph: a simple glyph as compiled bytes; a composite
        one expanded, since its compiled form names its parts by their number in this font."""
        glyph = self._prepared.get(name)
        if glyph is None:
            glyf = self._font["glyf"]
            glyph = copy.deepcopy(glyf[name])
            glyph.removeHinting()
            if not glyph.isComposite():
                glyph = Glyph(glyph.compile(glyf, recalcBBoxes=False))
            self._prepared[name] = glyph
        return glyph


def _with_components(glyf, names: list[str]) -> list[str]:
    """`names` and, after them, every glyph their composite glyphs are built from."""
    order, seen, pending = [], set(), list(reversed(names))
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        order.append(name)
        glyph = glyf[name]
        if glyph.isComposite():
            pending.extend(component.glyphName for component in reversed(glyph.components))
    return order


_sources: dict[Path, SourceFont] = {}
_sources_lock = threading.Lock()


def source_font(path: Path) -> SourceFont:
    """The parsed font of `path`, read on first use and kept for the life of the process."""
    with _sources_lock:
        font = _sources.get(path)
        if font is None:
            log.debug("reading scan-sheet font %s", path)
            font = _sources[path] = SourceFont(path)
        return font


class SheetFonts:
    """The configured fonts in order: the first that exists sets the text, the others fill in
    characters it lacks."""

    def __init__(self, configured: Sequence[Path]) -> None:
        self.configured = [Path(path) for path in configured]

    def files_for(self, text: str, folder: Path) -> list[Path]:
        """Font files for a sheet whose every string is in `text`, written to `folder`: the text
        font first, then only the fallbacks that hold a character of `text` no earlier font has."""
        present = [path for path in self.configured if path.is_file()]
        if not present:
            raise ConfigError("scan sheets need a Unicode TrueType font and none of scan_sheets.fonts exists "
                              f"({', '.join(map(str, self.configured))}); "
                              "install fonts-dejavu-core and fonts-droid-fallback")
        wanted = sorted({ord(character) for character in text if character.isprintable()})
        fonts = [source_font(present[0])]
        assigned: list[list[int]] = [[codepoint for codepoint in wanted if fonts[0].has(codepoint)]]
        missing = [codepoint for codepoint in wanted if not fonts[0].has(codepoint)]
        for path in present[1:]:
            if not missing:
                break
            fallback = source_font(path)
            found = [codepoint for codepoint in missing if fallback.has(codepoint)]
            if found:
                fonts.append(fallback)
                assigned.append(found)
                missing = [codepoint for codepoint in missing if not fallback.has(codepoint)]
        if missing:
            log.debug("no configured font has %d character(s) of a scan sheet", len(missing))
        return [font.small_font(codepoints, folder / f"font{index}.ttf")
                for index, (font, codepoints) in enumerate(zip(fonts, assigned))]
