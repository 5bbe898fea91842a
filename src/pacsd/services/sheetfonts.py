"""Scan-sheet fonts: each configured TrueType font is read once per process, and each sheet gets
one small font holding only the glyphs of its own text (each from the first configured font that
has it), so fpdf2 parses and subsets a few dozen glyphs per sheet instead of whole fonts.  A
fallback font (the large CJK one) is read only when a sheet first holds a character the fonts
before it lack.
"""

from __future__ import annotations

import copy
import logging
import struct
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

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
        # (name, scale, prefix): at most one entry per glyph and place the font is configured at
        self._prepared: dict[tuple[str, int | float, str], tuple[Glyph, tuple[int, int]]] = {}
        self._lock = threading.Lock()

    def has(self, codepoint: int) -> bool:
        return codepoint in self.cmap

    @property
    def units_per_em(self) -> int:
        return self._font["head"].unitsPerEm

    def glyphs_for(self, codepoints: Iterable[int], with_notdef: bool) -> list[str]:
        """The glyph names drawing `codepoints` (those it has), and the parts of composite ones."""
        names = sorted({self.cmap[codepoint] for codepoint in codepoints if codepoint in self.cmap} - {_NOTDEF})
        return _with_components(self._font["glyf"], [_NOTDEF, *names] if with_notdef else names)

    def prepared(self, name: str, scale: int | float, prefix: str) -> tuple[Glyph, tuple[int, int]]:
        """Glyph `name` and its (advance, left side bearing), scaled by `scale`, its parts named
        with `prefix`, without its hinting program (the fpgm and prep tables it would call are not
        copied); made once per glyph and kept: a simple glyph as compiled bytes, a composite one
        expanded, since its compiled form numbers its parts by their place in this font."""
        key = (name, scale, prefix)
        with self._lock:  # fontTools expands glyphs lazily
            ready = self._prepared.get(key)
            if ready is None:
                ready = self._prepared[key] = self._prepare(name, scale, prefix)
        return ready

    def _prepare(self, name: str, scale: int | float, prefix: str) -> tuple[Glyph, tuple[int, int]]:
        glyf = self._font["glyf"]
        glyph = copy.deepcopy(glyf[name])
        glyph.removeHinting()
        advance, bearing = self._font["hmtx"][name]
        if scale != 1:
            advance, bearing = round(advance * scale), round(bearing * scale)
            for bound in ("xMin", "yMin", "xMax", "yMax"):
                if hasattr(glyph, bound):
                    setattr(glyph, bound, round(getattr(glyph, bound) * scale))
        if glyph.isComposite():
            for component in glyph.components:
                component.glyphName = prefix + component.glyphName
                if scale != 1:
                    component.x, component.y = round(component.x * scale), round(component.y * scale)
            return glyph, (advance, bearing)
        if scale != 1 and glyph.numberOfContours > 0:
            glyph.coordinates.scale((scale, scale))
            glyph.coordinates.toInt()
            glyph.recalcBounds(glyf)
        return Glyph(glyph.compile(glyf, recalcBBoxes=False)), (advance, bearing)

    def save_with(self, order: list[str], glyphs: dict[str, Glyph], metrics: dict[str, tuple[int, int]],
                  cmap: dict[int, str], target: Path) -> None:
        """Write a font of `glyphs` with this font's em, metrics, names and style to `target`."""
        font = self._font
        head, hhea, os2, post, names = font["head"], font["hhea"], font["OS/2"], font["post"], font["name"]
        builder = FontBuilder(head.unitsPerEm, isTTF=True)
        builder.font.recalcBBoxes = False  # the glyphs come compiled, with their bounds
        for bound in ("xMin", "yMin", "xMax", "yMax"):
            setattr(builder.font["head"], bound, getattr(head, bound))
        builder.setupGlyphOrder(order)
        builder.setupCharacterMap(cmap)
        # What FontBuilder.setupGlyf does, without expanding the glyphs to check their outlines.
        builder.font["loca"], builder.font["glyf"] = newTable("loca"), newTable("glyf")
        builder.font["glyf"].glyphs, builder.font["glyf"].glyphOrder = glyphs, order
        builder.setupHorizontalMetrics(metrics)
        builder.setupHorizontalHeader(ascent=hhea.ascent, descent=hhea.descent, lineGap=hhea.lineGap)
        builder.setupNameTable({"familyName": names.getBestFamilyName() or self.path.stem,
                                "styleName": names.getBestSubFamilyName() or "Regular"})
        builder.setupOS2(sTypoAscender=os2.sTypoAscender, sTypoDescender=os2.sTypoDescender,
                         sTypoLineGap=os2.sTypoLineGap, usWinAscent=os2.usWinAscent, usWinDescent=os2.usWinDescent,
                         usWeightClass=os2.usWeightClass, sCapHeight=getattr(os2, "sCapHeight", hhea.ascent),
                         yStrikeoutPosition=os2.yStrikeoutPosition, yStrikeoutSize=os2.yStrikeoutSize)
        builder.setupPost(keepGlyphNames=False, isFixedPitch=post.isFixedPitch, italicAngle=post.italicAngle,
                          underlinePosition=post.underlinePosition, underlineThickness=post.underlineThickness)
        builder.save(str(target))


def small_font(parts: Sequence[tuple[SourceFont, list[int]]], target: Path) -> Path:
    """Write to `target` one TrueType font drawing each part's characters with that part's font:
    the first part's metrics and names, the others' glyphs scaled to its em and renamed apart.
    One font instead of a text font and fallbacks: fpdf2 embeds (and subsets) each font it has."""
    text_font = parts[0][0]
    order: list[str] = []
    glyphs: dict[str, Glyph] = {}
    metrics: dict[str, tuple[int, int]] = {}
    cmap: dict[int, str] = {}
    for index, (font, codepoints) in enumerate(parts):
        prefix = f"f{index}." if index else ""
        scale = text_font.units_per_em / font.units_per_em
        scale = int(scale) if scale.is_integer() else scale
        for name in font.glyphs_for(codepoints, with_notdef=index == 0):
            glyphs[prefix + name], metrics[prefix + name] = font.prepared(name, scale, prefix)
            order.append(prefix + name)
        cmap.update({codepoint: prefix + font.cmap[codepoint] for codepoint in codepoints
                     if codepoint in font.cmap})
    text_font.save_with(order, glyphs, metrics, cmap, target)
    return target


def _with_components(glyf: Any, names: list[str]) -> list[str]:  # a fontTools glyf table
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
        """The font files for a sheet whose every string is in `text`: one small font written to
        `folder`, each character drawn by the first configured font that has it (a fallback is
        read only for a character no earlier font has); or, when a font needed has no TrueType
        outlines (CFF), those fonts whole, the text font first."""
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
        parts = list(zip(fonts, assigned))
        if all(font.copies_glyphs for font in fonts):
            return [small_font(parts, folder / "sheet.ttf")]
        return [font.path for font in fonts]  # fonts without TrueType outlines: embedded whole
