"""pydicom Datasets of raw elements, made without pydicom's constructor (the fast header parse's).

`Dataset(raw)` and `FileMetaDataset(meta)`, each followed by `set_original_encoding`, set about
fifteen instance attributes one by one through pydicom's `__setattr__` (which first asks whether
the name is a DICOM keyword): 18 us of a 64x64 image's 135 us header parse.  `quick_dataset`
gives the same object from a copy of the attributes a fresh instance has (its containers made
anew for each), in about 3 us.

This leans on pydicom's instance attributes, so it checks itself once, at import: a dataset made
both ways must have the same attributes with equal values and no shared container.  If a pydicom
release changes what its constructor sets, the check fails, one warning is logged, and the real
constructor is used from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any, TypeVar

from pydicom.dataset import Dataset, FileMetaDataset

log = logging.getLogger(__name__)

_D = TypeVar("_D", bound=Dataset)
_CONTAINERS = (dict, list, set)


def _by_pydicom(cls: type[_D], raw: MutableMapping, implicit: bool, charset: Any,
                file_meta: FileMetaDataset | None = None) -> _D:
    dataset = cls(raw)
    dataset.set_original_encoding(implicit, True, charset)
    if file_meta is not None:
        dataset.file_meta = file_meta
    return dataset


class _Maker:
    """Makes instances of one Dataset class from a fresh instance's attributes."""

    def __init__(self, cls: type[Dataset]) -> None:
        self.cls = cls
        fresh = cls()
        fresh.set_original_encoding(False, True, "iso8859")
        self.attributes = {name: value for name, value in fresh.__dict__.items() if name != "_dict"}
        self.containers = [name for name, value in self.attributes.items() if type(value) in _CONTAINERS]

    def __call__(self, raw: MutableMapping, implicit: bool, charset: Any,
                 file_meta: FileMetaDataset | None = None) -> Dataset:
        dataset = self.cls.__new__(self.cls)
        attributes = dataset.__dict__
        attributes.update(self.attributes)
        for name in self.containers:
            attributes[name] = attributes[name].copy()
        attributes["_dict"] = raw
        attributes["_read_implicit"] = implicit
        attributes["_read_charset"] = charset
        if file_meta is not None:
            attributes["file_meta"] = file_meta
        return dataset


def _same(made: Dataset, reference: Dataset, maker: _Maker) -> bool:
    """Equal attributes, and none of the fresh instance's containers shared."""
    ours, theirs = made.__dict__, reference.__dict__
    if type(made) is not type(reference) or ours.keys() != theirs.keys():
        return False
    if any(value != theirs[name] or type(value) is not type(theirs[name]) for name, value in ours.items()):
        return False
    return not any(ours[name] is maker.attributes[name] for name in maker.containers)


def _checked(cls: type[Dataset]) -> Callable[..., Dataset]:
    try:
        maker = _Maker(cls)
        meta = FileMetaDataset()
        works = all(_same(maker(raw, implicit, charset, file_meta), _by_pydicom(cls, raw, implicit, charset, file_meta),
                          maker)
                    for raw, implicit, charset, file_meta in (({}, False, "iso8859", None),
                                                              ({}, True, ["iso8859", "utf_8"], meta)))
        works = works and maker({}, False, "iso8859").__dict__["_read_little"] is True
    except Exception:  # noqa: BLE001 - whatever a changed pydicom raises: use its constructor
        works = False
    if works:
        return maker
    log.warning("pydicom %s makes %s differently than pacsd expects; headers are parsed with its "
                "constructor (a little slower)", __import__("pydicom").__version__, cls.__name__)
    return lambda raw, implicit, charset, file_meta=None: _by_pydicom(cls, raw, implicit, charset, file_meta)


_make_dataset = _checked(Dataset)
_make_file_meta = _checked(FileMetaDataset)


def quick_dataset(raw: MutableMapping, implicit: bool, charset: Any, file_meta: FileMetaDataset) -> Dataset:
    """What `Dataset(raw)`, `set_original_encoding(implicit, True, charset)` and setting its
    `file_meta` give."""
    return _make_dataset(raw, implicit, charset, file_meta)


def quick_file_meta(raw: MutableMapping, charset: Any) -> FileMetaDataset:
    """What `FileMetaDataset(raw)` and `set_original_encoding(False, True, charset)` give, for
    raw elements of group 0002 only (which pydicom's constructor would check)."""
    return _make_file_meta(raw, False, charset)  # type: ignore[return-value]
