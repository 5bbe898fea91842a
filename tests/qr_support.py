"""Helpers of the Query/Retrieve tests: fill an archive, run findscu and read its answers, run
pacsd and a DCMTK storescp together in a private network namespace (storescp cannot bind one
address, so it only ever listens inside a namespace of its own).  DCMTK's tools are taken from
/usr/bin: pynetdicom installs apps of the same names into the virtualenv."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from pydicom import dcmread
from pydicom.dataset import Dataset

from pacsd.services.ingest import Source
from tests.conftest import HOST, TESTDATA, VENV_BIN, dcmtk

TESTDATA_CHARSETS = TESTDATA / "generated-pydicom"


def archive_files(archive, *paths: Path) -> None:
    """Archive files through ingest (the receive path has its own tests)."""
    for path in paths:
        temp = archive.blobs.new_temp_path()
        shutil.copyfile(path, temp)
        result = archive.ingest.store(temp, Source("import"))
        assert result.ok, result


def findscu(pacs, out: Path, *keys: str, model: str = "-S", level: str = "STUDY",
            query_file: Path | None = None, aet: str = "FINDSCU", extra: tuple[str, ...] = ()) -> tuple[list[Dataset], subprocess.CompletedProcess]:
    """Run findscu with `-k` keys (or a query file); the answers as datasets, and the run."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("rsp*.dcm"):
        old.unlink()
    args = [*extra, model, "-v", "-X", "-od", str(out), "-aet", aet, "-aec", pacs.aet, HOST, str(pacs.port)]
    if query_file is None:
        args += ["-k", f"QueryRetrieveLevel={level}"]
    else:
        args.append(str(query_file))
    for key in keys:
        args += ["-k", key]
    run = dcmtk("findscu", *args)
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))], run


_NAMESPACE_RUN = r"""
set -e
ip link set lo up
config=$1; store_out=$2; shift 2
storescp_opts=$1; shift
"$PACSD" serve --config "$config" > "$store_out/../pacsd.out" 2>&1 & pacsd=$!
storescp $storescp_opts -od "$store_out" -aet DEST 11113 & receiver=$!
for _ in $(seq 200); do
  echoscu -aec PACSD 127.0.0.1 11112 2>/dev/null && echoscu -aec DEST 127.0.0.1 11113 2>/dev/null && break
  sleep 0.05
done
status=0
"$@" || status=$?
kill $receiver || true; kill -INT $pacsd || true; wait $pacsd || true
exit $status
"""


def namespace_config(tmp_path: Path, **sections) -> Path:
    """A pacsd config for the namespace: port 11112, DEST = a storescp on 11113."""
    data = {
        "server": {"host": HOST, "port": 11112, "ae_title": "PACSD", "shutdown_grace": 1},
        "storage": {"directory": str(tmp_path / "storage")},
        "database": {"path": str(tmp_path / "index.sqlite")},
        "logging": {"directory": str(tmp_path / "logs")},
        "known_aes": [{"ae_title": "DEST", "host": HOST, "port": 11113}],
        **sections,
    }
    path = tmp_path / "namespace.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def with_pacsd_and_storescp(tmp_path: Path, storescp_opts: str, *command: str,
                            **sections) -> tuple[subprocess.CompletedProcess, Path]:
    """Run `command` beside `pacsd serve` (on 11112, over tmp_path's archive) and a storescp
    (AE DEST on 11113), all in one private network namespace; the run and storescp's folder."""
    received = tmp_path / "received"
    received.mkdir(exist_ok=True)
    config = namespace_config(tmp_path, **sections)
    run = subprocess.run(["unshare", "-n", "bash", "-c", _NAMESPACE_RUN, "qr", str(config), str(received),
                          storescp_opts, *command], capture_output=True, text=True, timeout=180,
                         env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PACSD": str(VENV_BIN / "pacsd")})
    return run, received
