"""DICOMweb under /dicom-web (QIDO-RS, WADO-RS, STOW-RS) and WADO-URI at /wado.

Each protocol is a small module with its own router; `routers()` gathers them for the app.
They translate HTTP into service calls (`pacsd.services`) and back, nothing more.
"""

from __future__ import annotations

from fastapi import APIRouter

from pacsd.web.dicomweb.resources import ROOT


def routers() -> list[APIRouter]:
    from pacsd.web.dicomweb import qido, stow, wado, wado_pixels, wado_uri

    dicomweb = APIRouter(prefix=ROOT, tags=["DICOMweb"])
    for module in (qido, wado, wado_pixels, stow):
        dicomweb.include_router(module.router)
    return [dicomweb, wado_uri.router]
