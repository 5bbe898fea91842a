"""DCMTK storescu/echoscu against pacsd: every readable test file is stored intact, once."""

from __future__ import annotations

import functools
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydicom import dcmread

from pacsd.dicom.header import read_header
from tests.conftest import HOST, RECEIVE_PATHS, dcmtk, free_port, pacs_on_receive_path
from tests.stored_checks import assert_all_stored, dataset_bytes, storable_testdata

pytestmark = pytest.mark.both_databases


@pytest.fixture(params=RECEIVE_PATHS)
def pacs(request, pacs_factory, index_backend):
    """The running pacsd on each receive path (see `pacs_on_receive_path`)."""
    return pacs_on_receive_path(request.param, pacs_factory, index_backend)


@functools.lru_cache(maxsize=1)
def dcmtk_sendable() -> dict[str, Path]:
    """The storable test files whose SOP class DCMTK 3.6.7's storescu knows.

    storescu checks SOP classes before it connects and names the first file it refuses, so it
    is asked against a closed port until it refuses none.
    """
    chosen = storable_testdata()
    files = list(chosen.values())
    for _ in range(len(files)):
        result = dcmtk("storescu", "--required", HOST, str(free_port()), *map(str, files))
        unknown = re.search(r"unknown storage SOP class in file: (.+?): [0-9.]+$", result.stderr, re.M)
        if not unknown:
            break
        files.remove(Path(unknown.group(1)))
    return {uid: path for uid, path in chosen.items() if path in files}


# storescu proposes uncompressed syntaxes unless told; these options make it propose (and so
# send unchanged) a file's own transfer syntax.  Syntaxes missing here have no such option.
STORESCU_SYNTAX_OPTION = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


def unchanged_by_storescu() -> dict[str, Path]:
    """The DCMTK-sendable test files whose transfer syntax storescu can propose as it is."""
    return {uid: path for uid, path in dcmtk_sendable().items()
            if read_header(path).transfer_syntax in STORESCU_SYNTAX_OPTION}


_REFERENCE_RUN = r"""
set -e
ip link set lo up
out=$1; option=$2; shift 2
storescp +B +xa -od "$out" -aet REF 11112 & receiver=$!
for _ in $(seq 100); do echoscu -aec REF 127.0.0.1 11112 2>/dev/null && break; sleep 0.05; done
storescu -aec REF --required "$option" 127.0.0.1 11112 "$@" || true
kill $receiver
"""


@functools.lru_cache(maxsize=1)
def sent_by_storescu(tmp_root: str) -> dict[str, bytes]:
    """SOP Instance UID -> the dataset bytes storescu really sends for each file.

    DCMTK re-encodes what it reads (odd lengths padded, spaces stripped from UIDs), so the
    oracle is a DCMTK storescp in bit-preserving mode, run in a private network namespace.
    """
    sent: dict[str, bytes] = {}
    by_syntax: dict[str, list[Path]] = {}
    for path in unchanged_by_storescu().values():
        by_syntax.setdefault(read_header(path).transfer_syntax, []).append(path)
    for index, (syntax, group) in enumerate(by_syntax.items()):
        out = Path(tmp_root) / f"reference-{index}"
        out.mkdir(parents=True)
        subprocess.run(["unshare", "-n", "bash", "-c", _REFERENCE_RUN, "reference", str(out),
                        STORESCU_SYNTAX_OPTION[syntax], *map(str, group)], capture_output=True, timeout=120)
        for received in out.iterdir():
            sent[str(dcmread(received, stop_before_pixels=True).SOPInstanceUID)] = dataset_bytes(received)
    return sent


def storescu(pacs, files, aet: str = "MODALITY") -> list[subprocess.CompletedProcess]:
    """Send files with storescu, one run per transfer syntax so each is sent unchanged."""
    by_syntax: dict[str, list[Path]] = {}
    for path in files:
        by_syntax.setdefault(read_header(path).transfer_syntax, []).append(path)
    return [dcmtk("storescu", "-aet", aet, "-aec", pacs.aet, "--required", STORESCU_SYNTAX_OPTION[syntax],
                  HOST, str(pacs.port), *map(str, group)) for syntax, group in by_syntax.items()]


def test_echoscu(pacs):
    result = dcmtk("echoscu", "-aet", "ECHOER", "-aec", pacs.aet, HOST, str(pacs.port))
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def sent(tmp_path_factory) -> dict[str, bytes]:
    return sent_by_storescu(str(tmp_path_factory.mktemp("storescp")))


def test_storescu_sends_all_testdata_in_one_association(pacs, sent):
    expected = unchanged_by_storescu()
    assert len(expected) >= 25
    results = storescu(pacs, expected.values())
    assert pacs.instance_count() == len(expected), [r.stderr for r in results if r.returncode]
    assert_all_stored(pacs.archive.engine, pacs.storage, expected, sent)


def test_storescu_four_associations_at_once(pacs, sent):
    expected = unchanged_by_storescu()
    files = list(expected.values())
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: storescu(pacs, files[i::4], aet=f"MOD{i}"), range(4)))
    assert_all_stored(pacs.archive.engine, pacs.storage, expected, sent)


def test_connection_log_has_one_line_per_association(pacs_process, tmp_path):
    server = pacs_process()
    files = [str(p) for p in unchanged_by_storescu().values() if read_header(p).transfer_syntax == "1.2.840.10008.1.2.1"][:3]
    sent = dcmtk("storescu", "-aet", "LOGGER", "-aec", "PACSD", "-xe", HOST, str(server.port), *files)
    assert sent.returncode == 0, sent.stderr
    dcmtk("echoscu", "-aet", "LOGGER", "-aec", "PACSD", HOST, str(server.port))
    output = server.stop()
    assert "pacsd stopped" in output
    log = (tmp_path / "logs" / "connections.log").read_text()
    lines = [line for line in log.splitlines() if "calling=LOGGER" in line]
    assert len(lines) == 2
    assert "stored=3 failed=0" in lines[0] and "result=released" in lines[0]
    assert "called=PACSD" in lines[0] and f"peer={HOST}:" in lines[0]
    assert "calling=LOGGER" not in (tmp_path / "logs" / "pacsd.log").read_text()
