#!/usr/bin/env python3
"""`make viewer`: fetch the built OHIF viewer (npm package @ohif/app, folder dist/) with npm and
unpack it into the data folder, rebased to be served by pacsd at /viewer/.

The package is built for the site root; its index.html and webpack public path name '/', so
they are rewritten to '/viewer/'.  pacsd itself generates app-config.js (pointing at /dicom-web).
Usage: install_viewer.py TARGET_DIR [VERSION]; does nothing when VERSION is already there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

BASE = "/viewer/"
VERSION_FILE = ".ohif-version"


def install(target: Path, version: str) -> None:
    if (target / VERSION_FILE).is_file() and (target / VERSION_FILE).read_text().strip() == version:
        print(f"OHIF viewer {version} already in {target}")
        return
    if shutil.which("npm") is None:
        sys.exit("npm is missing: install it (Debian: apt-get install npm) to fetch the OHIF viewer")
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(["npm", "pack", f"@ohif/app@{version}", "--pack-destination", work, "--silent"],
                       check=True, stdout=subprocess.DEVNULL)
        [tarball] = Path(work).glob("*.tgz")
        staging = Path(work) / "dist"
        _unpack_dist(tarball, staging)
        _rebase(staging)
        (staging / VERSION_FILE).write_text(version + "\n")
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), target)
    print(f"OHIF viewer {version} installed in {target}")


def _unpack_dist(tarball: Path, staging: Path) -> None:
    """Extract package/dist/ only, refusing any member that would land outside `staging`."""
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            if not member.name.startswith("package/dist/") or not (member.isfile() or member.isdir()):
                continue
            relative = Path(member.name).relative_to("package/dist")
            if ".." in relative.parts or relative.is_absolute():
                sys.exit(f"refusing {member.name} in the package")
            destination = staging / relative
            if member.isdir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.extractfile(member) as source, open(destination, "wb") as out:
                shutil.copyfileobj(source, out)


def _rebase(dist: Path) -> None:
    index = dist / "index.html"
    html = index.read_text()
    html = html.replace('href="/', f'href="{BASE}').replace('src="/', f'src="{BASE}')
    html = html.replace("window.PUBLIC_URL = '/'", f"window.PUBLIC_URL = '{BASE}'")
    index.write_text(html)
    for bundle in dist.glob("*.js"):
        text = bundle.read_text(errors="surrogateescape")
        rebased = text.replace('__webpack_require__.p = "/";', f'__webpack_require__.p = "{BASE}";')
        if rebased != text:
            bundle.write_text(rebased, errors="surrogateescape")
    (dist / "app-config.js").unlink(missing_ok=True)  # pacsd serves its own
    for unused in ("sw.js", "_redirects", "_headers", "serve.json"):
        (dist / unused).unlink(missing_ok=True)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    install(Path(sys.argv[1]).resolve(), sys.argv[2] if len(sys.argv) == 3 else "3.12.10")
