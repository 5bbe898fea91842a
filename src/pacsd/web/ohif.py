"""The OHIF viewer at /viewer: the files of the built app (`make viewer` installs them in
`http.viewer_dir`), an app-config.js generated for this server's DICOMweb, and index.html for
every other path of the single-page app, to logged-in users (a browser is sent to the login
page first).  Only files listed when the app was first asked for are served: no path is built
from the request.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from pacsd.config import Settings
from pacsd.web.access import current_user

router = APIRouter()

BASE = "/viewer"
_NOT_INSTALLED = "the OHIF viewer is not installed: run `make viewer` (needs npm)"

_APP_CONFIG = """window.config = {
  routerBasename: '%(base)s',
  showStudyList: true,
  extensions: [],
  modes: [],
  investigationalUseDialog: { option: 'never' },
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  maxNumberOfWebWorkers: 3,
  defaultDataSourceName: 'pacsd',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'pacsd',
      configuration: {
        friendlyName: 'pacsd',
        name: 'pacsd',
        wadoUriRoot: %(origin)s + '/wado',
        qidoRoot: %(origin)s + '/dicom-web',
        wadoRoot: %(origin)s + '/dicom-web',
        qidoSupportsIncludeField: true,
        supportsReject: false,
        supportsStow: false,  // a browser session's POST needs the CSRF token OHIF does not send
        dicomUploadEnabled: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: true,
        supportsWildcard: true,
        omitQuotationForMultipartRequest: true,
        bulkDataURI: { enabled: true },
      },
    },
  ],
};
"""


# OHIF 3 opens a study at its mode's route, "viewer", under its routerBasename: /viewer/viewer
# here (our basename is /viewer); at the basename itself it shows its study list.
MODE_ROUTE = "/viewer"


def ohif_study_link(settings: Settings, study_uid: str) -> str:
    """Where OHIF opens a study: on `web.ohif_url` when set (an OHIF at its own root), else on
    our /viewer when the built viewer is installed (`http.viewer_dir` holds index.html); ''
    when there is no OHIF."""
    query = f"?StudyInstanceUIDs={quote(study_uid, safe='')}"
    if settings.web.ohif_url:
        return settings.web.ohif_url.rstrip("/") + MODE_ROUTE + query
    if not (Path(settings.http.viewer_dir) / "index.html").is_file():
        return ""
    return BASE + MODE_ROUTE + query


@router.get(BASE + "/app-config.js")
def app_config(request: Request) -> Response:
    current_user(request)  # a browser not logged in is sent to the login page first
    _viewer_files(request)  # 404 when the viewer is not installed
    public_url = request.app.state.settings.http.public_url.rstrip("/")
    origin = f"({json.dumps(public_url)} || window.location.origin)"
    return Response(_APP_CONFIG % {"base": BASE, "origin": origin}, media_type="text/javascript",
                    headers={"Cache-Control": "no-cache"})


@router.get(BASE)
@router.get(BASE + "/{name:path}")
def viewer_file(request: Request, name: str = "") -> Response:
    current_user(request)
    files = _viewer_files(request)
    if name.strip("/") == "" and "StudyInstanceUIDs" in request.query_params:
        # /viewer?StudyInstanceUIDs=... (the URL OHIF's documentation shows) opens the study too
        return RedirectResponse(BASE + MODE_ROUTE + "?" + str(request.query_params), status_code=307)
    found = files.get(name)
    if found is None and "." in name.rsplit("/", 1)[-1]:
        raise HTTPException(404, f"the viewer has no file {name[:80]!r}")
    return FileResponse(found or files["index.html"])


def _viewer_files(request: Request) -> dict[str, Path]:
    """Relative name -> file of the installed viewer, listed once per process."""
    files = getattr(request.app.state, "viewer_files", None)
    if not files:
        files = _list_files(Path(request.app.state.settings.http.viewer_dir))
        if "index.html" not in files:
            raise HTTPException(404, _NOT_INSTALLED)
        request.app.state.viewer_files = files
    return files


def _list_files(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        return {}
    return {path.relative_to(root).as_posix(): path for path in root.rglob("*")
            if path.is_file() and not path.name.startswith(".")}
