"""Storage SOP classes: the ones pynetdicom knows plus the retired and newer ones pydicom's
dictionary names, and turning user words into their UIDs.

A user may name a class by its UID, by its name ("CT Image Storage", "CTImageStorage"), or by
a modality shorthand ("CT" = every CT image storage class).  Unknown words are an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydicom.uid import UID, UID_dictionary
from pynetdicom import sop_class as pynetdicom_sop_classes
from pynetdicom.sop_class import _STORAGE_CLASSES

_COMPOSITE_STORAGE_ROOT = "1.2.840.10008.5.1.4.1.1."


def _storage_classes_pynetdicom_lacks() -> dict[str, str]:
    """Storage classes of the composite-object root in pydicom's dictionary that pynetdicom does
    not list: retired ones (Ultrasound Image Storage (Retired), ...) and ones newer than it.
    Modalities still send the retired ones; an archive keeps what it is sent (as storescp does)."""
    found = {}
    for uid, (name, kind, _, _, keyword) in UID_dictionary.items():
        if (kind == "SOP Class" and uid.startswith(_COMPOSITE_STORAGE_ROOT) and "Storage" in name
                and uid not in _STORAGE_CLASSES.values() and not hasattr(pynetdicom_sop_classes, keyword)):
            found[keyword] = uid
    return found


#: keyword -> UID of every storage SOP class pynetdicom knows, and those it lacks
STORAGE_CLASSES: dict[str, str] = {**_storage_classes_pynetdicom_lacks(), **_STORAGE_CLASSES}

# Modality shorthand -> regular expression over the storage class keywords it stands for.
_MODALITY_PATTERNS: dict[str, str] = {
    "CT": r"^(Enhanced|LegacyConvertedEnhanced)?CTImageStorage$",
    "MR": r"^(Enhanced|LegacyConvertedEnhanced)?MR(Color)?ImageStorage$|^MRSpectroscopyStorage$",
    "US": r"^Ultrasound|^EnhancedUSVolume|^Photoacoustic",
    "CR": r"^ComputedRadiography",
    "DX": r"^DigitalXRay",
    "MG": r"Mammography|^BreastTomosynthesis|^BreastProjection",
    "IO": r"^DigitalIntraOral",
    "XA": r"^XRayAngiographic|^EnhancedXAImage|^XRay3DAngiographic",
    "RF": r"^XRayRadiofluoroscopic|^EnhancedXRFImage",
    "NM": r"^NuclearMedicine",
    "PT": r"^PositronEmissionTomography|PETImageStorage$",
    "OT": r"SecondaryCaptureImageStorage$",
    "SC": r"SecondaryCaptureImageStorage$",
    "SR": r"SRStorage$|^KeyObjectSelection",
    "KO": r"^KeyObjectSelection",
    "PR": r"PresentationState|PresentationStage",
    "DOC": r"^Encapsulated",
    "SEG": r"SegmentationStorage$",
    "RTSTRUCT": r"^RTStructureSet",
    "RTPLAN": r"^RT(Ion)?Plan",
    "RTDOSE": r"^RTDose",
    "RTIMAGE": r"RTImageStorage$",
    "RT": r"^RT|^EnhancedRTImage|^EnhancedContinuousRTImage",
    "XC": r"^VLPhotographic|^VideoPhotographic",
    "ES": r"^VLEndoscopic|^VideoEndoscopic",
    "SM": r"^VLWholeSlide|^VLMicroscopic|^VLSlideCoordinates|^VideoMicroscopic",
    "OP": r"^OphthalmicPhotography|^WideFieldOphthalmic",
    "OPT": r"^OphthalmicTomography|OpticalCoherence",
    "ECG": r"ECGWaveform",
    "AU": r"AudioWaveform",
}

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


_BY_SQUASHED_NAME = {_squash(keyword): uid for keyword, uid in STORAGE_CLASSES.items()}
_BY_SQUASHED_NAME.update({_squash(UID(uid).name): uid for uid in STORAGE_CLASSES.values()})


def modality_sop_classes(modality: str) -> set[str]:
    pattern = _MODALITY_PATTERNS.get(modality.strip().upper())
    if pattern is None:
        return set()
    return {uid for keyword, uid in STORAGE_CLASSES.items() if re.search(pattern, keyword)}


def resolve_sop_classes(words: Iterable[str]) -> set[str]:
    """Turn UIDs, class names and modality shorthands into a set of SOP Class UIDs.

    Raises ValueError naming the first word that is none of those.
    """
    resolved: set[str] = set()
    for word in words:
        word = str(word).strip()
        if not word:
            continue
        if _UID_RE.match(word) and len(word) <= 64:
            resolved.add(word)
        elif classes := modality_sop_classes(word):
            resolved |= classes
        elif uid := _BY_SQUASHED_NAME.get(_squash(word)):
            resolved.add(uid)
        else:
            known = ", ".join(sorted(_MODALITY_PATTERNS))
            raise ValueError(
                f"{word!r} is not a SOP Class UID, a storage class name, or a modality ({known})"
            )
    return resolved


def sop_class_name(uid: str) -> str:
    """A readable name for a SOP Class UID (the UID itself when it is private or unknown)."""
    name = UID(uid).name
    return name if name and name != uid else uid
