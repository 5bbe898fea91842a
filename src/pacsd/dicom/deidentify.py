"""De-identify one dataset by PS3.15's Basic Application Level Confidentiality Profile and its options.

The action of each attribute comes from the generated Table E.1-1 (`deid_table`); it is applied
recursively into sequences. Pixel data is never touched. Files and keys are the service's business.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID_dictionary

from pacsd.dicom import deid_table
from pacsd.errors import InvalidDicom, PacsError

# PS3.16 CID 7050 (De-identification Method): option -> (code value, code meaning), scheme DCM.
OPTION_CODES = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "clean-graphics": ("113103", "Clean Graphics Option"),
    "clean-structured-content": ("113104", "Clean Structured Content Option"),
    "clean-descriptors": ("113105", "Clean Descriptors Option"),
    "retain-full-dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain-modified-dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "retain-patient-characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain-device-identity": ("113109", "Retain Device Identity Option"),
    "retain-uids": ("113110", "Retain UIDs Option"),
    "retain-safe-private": ("113111", "Retain Safe Private Option"),
    "retain-institution-identity": ("113112", "Retain Institution Identity Option"),
}
OPTIONS = frozenset(OPTION_CODES) - {"basic"}
# Modalities and SOP classes whose images commonly carry text burned into the pixels.
BURNING_MODALITIES = frozenset({"US", "SC"})
BURNING_SOP_CLASS_PREFIXES = ("1.2.840.10008.5.1.4.1.1.6.", "1.2.840.10008.5.1.4.1.1.3.", "1.2.840.10008.5.1.4.1.1.7")
# A combined action of the table (the choice depends on the attribute's type in its IOD): the one
# that keeps a Type 1 or 2 attribute valid, since the IOD is not looked up here.
COMBINED = {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U"}
DUMMY_TEXT = {"PN": "ANONYMIZED", "AE": "ANONYMIZED", "CS": "ANONYMIZED", "UR": "urn:anonymized",
              "DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000D", "IS": "0", "DS": "0"}
TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})
IDENTIFIER_VRS = frozenset({"PN", "LO", "SH"})
FREE_TEXT_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
CODE_KEYWORDS = frozenset({"CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning",
                           "LongCodeValue", "URNCodeValue", "MappingResource", "ContextIdentifier",
                           "ContextGroupExtensionCreatorUID", "TemplateIdentifier"})
DATE_VRS = frozenset({"DA", "DT"})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
STUDY_ID = 0x00200010
MIN_IDENTIFIER_LENGTH = 3  # shorter fragments of names are not searched for in free text
MAX_IDENTIFIERS = 256
DATE_OFFSET_RANGE_DAYS = 3650
FILE_META_DROPPED = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)


class DeidentificationRefused(PacsError):
    """The dataset cannot be de-identified safely as asked (burned-in annotation)."""


@dataclass(frozen=True)
class Profile:
    """What to do: the options in force, the project key for pseudonyms, where new UIDs live."""

    key: bytes
    options: frozenset[str] = frozenset()
    uid_root: str = "2.25"
    burned_in: str = "refuse"  # or "flag": pass through, marked in De-identification Method
    safe_private: frozenset[tuple[str, int]] = frozenset()  # (private creator, element byte)

    def __post_init__(self) -> None:
        unknown = set(self.options) - OPTIONS
        if unknown:
            raise PacsError(f"unknown de-identification option(s): {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(sorted(OPTIONS))})")
        if {"retain-full-dates", "retain-modified-dates"} <= self.options:
            raise PacsError("retain-full-dates and retain-modified-dates exclude each other")
        if self.burned_in not in ("refuse", "flag"):
            raise PacsError("burned_in must be 'refuse' or 'flag'")
        if len(self.key) < 16:
            raise PacsError("the de-identification key must be at least 16 bytes")


def parse_options(text: str | Iterable[str] | None) -> frozenset[str]:
    """'basic,retain-uids clean-descriptors' (or a list) -> the option set; 'basic' alone means none."""
    if text is None:
        return frozenset()
    words = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    return frozenset(w.strip().lower() for w in words if w.strip() and w.strip().lower() != "basic")


@dataclass
class _Run:
    profile: Profile
    patient_key: str
    identifiers: list[str] = field(default_factory=list)
    burned_in_flagged: bool = False

    def digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self.profile.key, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()


def pseudonym(profile: Profile, patient_key: str) -> str:
    """The stable pseudonym of a patient (same key and patient -> same text, in every run)."""
    digest = hmac.new(profile.key, f"patient\0{patient_key}".encode(), hashlib.sha256).hexdigest()
    return "ANON" + digest[:12].upper()


def new_uid(profile: Profile, uid: str) -> str:
    """The stable replacement of a UID: under the root, digits from the HMAC, at most 64 characters."""
    number = int.from_bytes(hmac.new(profile.key, f"uid\0{uid}".encode(), hashlib.sha256).digest()[:16], "big")
    digits = str(number)[: 64 - len(profile.uid_root) - 1]
    return f"{profile.uid_root}.{digits.lstrip('0') or '0'}"


def date_offset_days(profile: Profile, patient_key: str) -> int:
    """Days every date of this patient moves back under retain-modified-dates (1..3650, per patient)."""
    digest = hmac.new(profile.key, f"date-offset\0{patient_key}".encode(), hashlib.sha256).digest()
    return 1 + int.from_bytes(digest[:4], "big") % DATE_OFFSET_RANGE_DAYS


def deidentify(ds: Dataset, profile: Profile) -> Dataset:
    """De-identify `ds` in place (file meta included) and return it; pixel data bytes are kept as they are."""
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise InvalidDicom("not a composite instance (no SOP Class or SOP Instance UID): nothing to de-identify")
    run = _Run(profile, _patient_key(ds))
    _check_burned_in(ds, run)
    run.identifiers = _identifiers(ds, profile.options)
    _apply(ds, run, "plain")
    ds.PatientName = pseudonym(profile, run.patient_key)
    ds.PatientID = pseudonym(profile, run.patient_key)
    _mark(ds, run)
    _fix_file_meta(ds, run)
    return ds


def _patient_key(ds: Dataset) -> str:
    patient_id = str(ds.get("PatientID", "") or "").strip()
    issuer = str(ds.get("IssuerOfPatientID", "") or "").strip()
    return f"{issuer}|{patient_id}" if patient_id else f"name|{ds.get('PatientName', '')}"


def _check_burned_in(ds: Dataset, run: _Run) -> None:
    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    modality = str(ds.get("Modality", "") or "").strip().upper()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    suspect = burned == "YES" or (not burned and (
        modality in BURNING_MODALITIES or sop_class.startswith(BURNING_SOP_CLASS_PREFIXES)))
    if not suspect:
        return
    if run.profile.burned_in == "refuse":
        why = "Burned In Annotation is YES" if burned == "YES" else f"{modality or 'this SOP class'} without Burned In Annotation"
        raise DeidentificationRefused(f"{why}: text in the pixels may identify the patient "
                                      "(set deidentify.burned_in: flag to pass such images through, marked)")
    run.burned_in_flagged = True


def action_for(tag: BaseTag, options: frozenset[str]) -> str | None:
    """The table's action for `tag` under `options` (K, C or the basic action); None if not listed."""
    if tag.is_private:
        basic, by_option = deid_table.PRIVATE
    elif int(tag) in deid_table.ATTRIBUTES:
        basic, by_option = deid_table.ATTRIBUTES[int(tag)]
    else:
        row = next(((b, o) for mask, value, b, o in deid_table.GROUP_PATTERNS if int(tag) & mask == value), None)
        if row is None:
            return None
        basic, by_option = row
    chosen = {by_option[o] for o in options if o in by_option}
    if "K" in chosen:
        return "K"
    if "C" in chosen:
        return "C"
    return basic


def _unlisted_action(element: DataElement, options: frozenset[str], context: str) -> str:
    """Safety net for attributes the table does not list: instance UIDs, dates and names go too, and
    inside a sequence the table replaces (Content Sequence: D) so does free text (an SR's Text Value)."""
    if element.VR == "SQ":
        return "K"
    if context != "plain" and element.VR in FREE_TEXT_VRS and element.keyword not in CODE_KEYWORDS:
        return "D"
    if element.VR == "UI" and "retain-uids" not in options and not _well_known(element):
        return "U"
    if element.VR in DATE_VRS:
        if "retain-full-dates" in options:
            return "K"
        return "C" if "retain-modified-dates" in options else "D"
    if element.VR == "PN":
        return "Z"
    return "K"


def _well_known(element: DataElement) -> bool:
    """Every value is a UID the standard defines (SOP classes, transfer syntaxes...): nobody's identity."""
    return all(str(v) in UID_dictionary for v in _values(element))


def _identifiers(ds: Dataset, options: frozenset[str]) -> list[str]:
    """Texts that identify (names, and IDs or names the profile removes or replaces), longest first."""
    found: set[str] = set()

    def visit(dataset: Dataset) -> None:
        for element in dataset:
            if element.VR == "SQ":
                for item in element.value or []:
                    visit(item)
                continue
            if element.VR not in IDENTIFIER_VRS or element.tag.is_private:
                continue
            action = action_for(element.tag, options)
            if action in (None, "K", "C") and element.VR != "PN":
                continue  # kept, or itself to be cleaned: not an identifier to look for
            for value in _values(element):
                text = str(value)
                pieces = [text] + (text.replace("=", "^").split("^") if element.VR == "PN" else [])
                found.update(p.strip() for p in pieces if len(p.strip()) >= MIN_IDENTIFIER_LENGTH)

    visit(ds)
    return sorted(found, key=len, reverse=True)[:MAX_IDENTIFIERS]


def _values(element: DataElement) -> list:
    if element.value is None or element.value == "":
        return []
    if element.VM > 1:
        return list(element.value)
    return [element.value]


def _concrete(action: str, vr: str, context: str) -> str:
    """One action of X Z D U K C for the table's action, the element's VR and the sequence it is in.

    A combined action keeps the attribute (Z, D or U) since its type in the IOD is not looked up here;
    on a sequence every combination keeps the items, de-identified by their own rules. X or Z on a date
    or time becomes a dummy (Z allows one): some are Type 1 in some IODs (Presentation Creation Date),
    DICOMDIR study records need Study Date and Time, and a dummy tells nothing.
    """
    if vr == "SQ" and "/" in action:
        return "D"
    action = COMBINED.get(action, action)
    if action in ("X", "Z") and vr in DATE_VRS | {"TM"}:
        action = "D"
    if context == "clean" and action in ("X", "Z", "D") and vr in FREE_TEXT_VRS:
        return "C"
    return action


def _drop_orphan_overlays(ds: Dataset) -> None:
    """An overlay whose data the profile removed is removed whole (its other attributes would be invalid)."""
    for group in {e.tag.group for e in ds if 0x6000 <= e.tag.group <= 0x601E and not e.tag.group & 1}:
        if (group, 0x3000) not in ds:
            for tag in [e.tag for e in ds if e.tag.group == group]:
                del ds[tag]


def _apply(ds: Dataset, run: _Run, context: str) -> None:
    options = run.profile.options
    safe_private = _safe_private_elements(ds, run.profile)
    for element in list(ds):
        tag = element.tag
        if tag.element == 0 and tag.group != 0x0002:
            del ds[tag]  # group lengths would be wrong after any change
            continue
        if tag.is_private:
            if (tag.group, tag.element) in safe_private:
                continue
            del ds[tag]
            continue
        action = action_for(tag, options)
        if action is None:
            action = _unlisted_action(element, options, context)
        _act(ds, element, _concrete(action, element.VR, context), run, context)
    _drop_orphan_overlays(ds)


def _safe_private_elements(ds: Dataset, profile: Profile) -> set[tuple[int, int]]:
    """(group, element) of the private elements kept as safe, with the creator elements of their blocks."""
    if "retain-safe-private" not in profile.options or not profile.safe_private:
        return set()
    creators = {(e.tag.group, e.tag.element): str(e.value).strip() for e in ds
                if e.tag.is_private and 0x10 <= e.tag.element <= 0xFF}
    kept: set[tuple[int, int]] = set()
    for element in ds:
        group, number = element.tag.group, element.tag.element
        if element.tag.is_private and number >= 0x1000:
            creator = creators.get((group, number >> 8))
            if creator is not None and (creator, number & 0xFF) in profile.safe_private:
                kept.update({(group, number), (group, number >> 8)})
    return kept


def _act(ds: Dataset, element: DataElement, action: str, run: _Run, context: str) -> None:
    if element.VR == "SQ":
        if action == "X":
            del ds[element.tag]
        elif action == "Z":
            element.value = Sequence()
        else:  # K, C, D, U: keep the sequence, its items de-identified by their own rules
            inner = {"C": "clean", "D": "dummy"}.get(action, context)
            inner = "clean" if context == "clean" else inner
            for item in element.value or []:
                _apply(item, run, inner)
        return
    if action == "K":
        return
    if action == "X":
        del ds[element.tag]
    elif action == "Z" and element.tag == STUDY_ID:
        element.value = _study_id(run, ds)  # Type 1 in DICOMDIR study records (PS3.3 F.5): Z allows a dummy
    elif action == "Z":
        element.value = b"" if element.VR in BINARY_VRS else ("" if element.VR in TEXT_VRS | DATE_VRS | {"TM", "AS", "IS", "DS", "UI"} else None)
    elif action == "U":
        _replace_uids(element, run)
    elif action == "D":
        _dummy(element, run)
    elif action == "C":
        _clean(element, run)


def _study_id(run: _Run, ds: Dataset) -> str:
    """A dummy Study ID, the same for every instance of a study (derived from its UID and the key)."""
    return "S" + run.digest("study-id", str(ds.get("StudyInstanceUID", ""))).hex()[:12].upper()


def _replace_uids(element: DataElement, run: _Run) -> None:
    if element.VR != "UI":
        _dummy(element, run)
        return
    values = [new_uid(run.profile, str(v)) for v in _values(element)]
    element.value = values if len(values) > 1 else (values[0] if values else "")


def _dummy(element: DataElement, run: _Run) -> None:
    vr = element.VR
    if vr == "UI":
        _replace_uids(element, run)
    elif vr in BINARY_VRS:
        element.value = b"\x00\x00"
    elif vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"):
        element.value = 0
    elif vr == "AT":
        return
    elif element.tag in (0x00100010, 0x00100020):
        element.value = pseudonym(run.profile, run.patient_key)
    else:
        element.value = DUMMY_TEXT.get(vr, "ANONYMIZED")


def _clean(element: DataElement, run: _Run) -> None:
    """Clean: dates moved by the patient's offset; text kept with every identifying text cut out."""
    vr = element.VR
    if vr in DATE_VRS:
        if "retain-modified-dates" in run.profile.options:
            element.value = _shift_dates(element, date_offset_days(run.profile, run.patient_key))
        elif "retain-full-dates" not in run.profile.options:
            _dummy(element, run)
        return
    if vr == "TM":
        if not {"retain-modified-dates", "retain-full-dates"} & run.profile.options:
            _dummy(element, run)
        return  # a shift by whole days leaves times of day as they are
    if vr in TEXT_VRS:
        cleaned = [_cut_identifiers(str(v), run.identifiers) for v in _values(element)]
        element.value = cleaned if len(cleaned) > 1 else (cleaned[0] if cleaned else "")


def _cut_identifiers(text: str, identifiers: list[str]) -> str:
    lowered = text.lower()
    for identifier in identifiers:
        needle = identifier.lower()
        start = lowered.find(needle)
        while start >= 0:
            text = text[:start] + "*" * len(needle) + text[start + len(needle):]
            lowered = text.lower()
            start = lowered.find(needle, start + len(needle))
    return text


def _shift_dates(element: DataElement, days: int) -> list[str] | str:
    shifted = [_shift_one(str(v), element.VR, days) for v in _values(element)]
    return shifted if len(shifted) > 1 else (shifted[0] if shifted else "")


def _shift_one(text: str, vr: str, days: int) -> str:
    text = text.strip()
    try:
        day = datetime.date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return DUMMY_TEXT[vr]  # not a date we can move: not kept either
    moved = (day - datetime.timedelta(days=days)).strftime("%Y%m%d")
    return moved + text[8:] if vr == "DT" else moved


def _mark(ds: Dataset, run: _Run) -> None:
    """Patient Identity Removed, De-identification Method and its Code Sequence, dates' status."""
    options = sorted(run.profile.options)
    ds.PatientIdentityRemoved = "YES"
    methods = [f"PS3.15-{deid_table.EDITION} Basic Profile (pacsd)"] + [OPTION_CODES[o][1][:64] for o in options]
    if run.burned_in_flagged:
        methods.append("BURNED IN ANNOTATION NOT REMOVED")
    ds.DeidentificationMethod = methods
    codes = []
    for option in ["basic", *options]:
        code = Dataset()
        code.CodeValue, code.CodeMeaning = OPTION_CODES[option]
        code.CodingSchemeDesignator = "DCM"
        codes.append(code)
    ds.DeidentificationMethodCodeSequence = Sequence(codes)
    if "retain-full-dates" in run.profile.options:
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    elif "retain-modified-dates" in run.profile.options:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"


def _fix_file_meta(ds: Dataset, run: _Run) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return
    for tag in FILE_META_DROPPED:
        if tag in meta:
            del meta[tag]
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
