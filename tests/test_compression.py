"""Lossless compression of the archive (`pacsd compress`, the background job): every uncompressed
file of the shared test data in each syntax, pixels checked with pydicom as the oracle, the index
row switched (path, size, checksum, syntax), `pacsd check` clean; a crash at each step leaves one
valid indexed file and `pacsd check` clears the rest."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    RLELossless,
    generate_uid,
)
from sqlalchemy import func, select

from pacsd.index.schema import compression_journal, compression_outcomes, instances, studies
from pacsd.services.archive import Archive
from tests.conftest import HOST, TESTDATA, VENV_BIN, dcmtk, make_settings
from tests.qr_support import archive_files, with_pacsd_and_storescp
from tests.stored_checks import dataset_bytes, storable_testdata

CT = TESTDATA / "dicompyler-core" / "ct.0.dcm"
SYNTAXES = {"jpeg-ls": JPEGLSLossless, "jpeg2000": JPEG2000Lossless, "rle": RLELossless}


def uncompressed_testdata() -> dict[str, Path]:
    """SOP Instance UID -> file, of the storable shared test files stored uncompressed."""
    return {uid: path for uid, path in storable_testdata().items()
            if not dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID.is_compressed}


def multiframe_ct(folder: Path) -> Path:
    """A 3-frame 16-bit image made of the CT's pixels (the shared data has no uncompressed one this large)."""
    source, dataset = dcmread(CT), dcmread(CT)
    dataset.SOPClassUID = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.NumberOfFrames = 3
    frames = np.stack([source.pixel_array, source.pixel_array[::-1], source.pixel_array[:, ::-1]])
    dataset.PixelData = frames.astype(source.pixel_array.dtype).tobytes()
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    path = folder / "multiframe.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path


def settings_compressing(tmp_path: Path, syntax: str = "jpeg-ls", database: dict | None = None):
    return make_settings(tmp_path, compression={"rules": [{"syntax": syntax}], "after": 0},
                         **({"database": database} if database else {}))


def rows_by_uid(archive: Archive) -> dict[str, object]:
    with archive.engine.connect() as conn:
        return {row.sop_uid: row for row in conn.execute(select(instances)).all()}


def pacsd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "pacsd"), *args], capture_output=True, text=True, timeout=timeout)


def pixels(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(path).pixel_array


@pytest.mark.parametrize("name", SYNTAXES)
def test_every_uncompressed_test_file_is_compressed_losslessly_or_skipped_with_a_reason(tmp_path, name):
    originals = {**uncompressed_testdata()}
    made = multiframe_ct(tmp_path / "made")
    originals[str(dcmread(made, stop_before_pixels=True).SOPInstanceUID)] = made
    settings = settings_compressing(tmp_path, name)
    archive = Archive(settings)
    try:
        archive_files(archive, *originals.values())
        before = rows_by_uid(archive)
        report = archive.compressor.run()
        after = rows_by_uid(archive)
        with archive.engine.connect() as conn:
            outcomes = {row.instance_pk: row for row in conn.execute(select(compression_outcomes)).all()}
            study_sizes = dict(conn.execute(select(studies.c.study_uid, studies.c.size_bytes)).all())
        again = archive.compressor.run()
    finally:
        archive.close()
    syntax = SYNTAXES[name]
    compressed = {uid for uid, row in after.items() if row.transfer_syntax == syntax}
    assert report.compressed == len(compressed) > 0
    # the images every codec takes: CT, MR and US of 16 and 8 bits, the 3-frame image
    assert {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in
            (CT, made, TESTDATA / "debian-dicom3tools" / "0051.dcm",
             TESTDATA / "deid-data" / "ultrasounds" / "GREYSCALE_IMAGE.dcm")} <= compressed
    storage = Path(settings.storage.directory)
    for uid, original in originals.items():
        row, old = after[uid], before[uid]
        if uid in compressed:
            copy = dcmread(storage / row.path)
            assert copy.file_meta.TransferSyntaxUID == syntax
            assert str(copy.SOPInstanceUID) == uid
            assert np.array_equal(copy.pixel_array, pixels(original)), original.name
            assert row.size_bytes == (storage / row.path).stat().st_size < old.size_bytes
            assert row.checksum == hashlib.sha256((storage / row.path).read_bytes()).hexdigest()
            assert not (storage / old.path).exists()
            header = dcmread(original, stop_before_pixels=True)
            for element in header:  # the header is the original's, element by element
                assert copy[element.tag].value == element.value, (original.name, element.keyword)
        else:  # left as it was, and why is recorded
            assert (row.path, row.checksum, row.transfer_syntax) == (old.path, old.checksum, old.transfer_syntax)
            assert outcomes[row.pk].permanent and outcomes[row.pk].reason, original.name
    assert len(report.skipped) == len(originals) - len(compressed)
    assert report.bytes_saved == sum(before[uid].size_bytes - after[uid].size_bytes for uid in compressed) > 0
    # each study's size is the sum of its instances' sizes
    assert sum(study_sizes.values()) == sum(row.size_bytes for row in after.values())
    assert (again.compressed, again.skipped, again.failed) == (0, [], [])  # nothing is tried twice
    check = pacsd("check", "--config", str(tmp_path / "pacsd.yaml"), "--checksums", "--grace", "0", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["unindexed"] == []


@pytest.mark.both_databases
def test_dry_run_lists_what_a_run_compresses_and_changes_nothing(tmp_path, index_database):
    settings = settings_compressing(tmp_path, "rle", database=index_database)
    archive = Archive(settings)
    try:
        archive_files(archive, CT, TESTDATA / "dicompyler-core" / "rtss.dcm")
        before = rows_by_uid(archive)
    finally:
        archive.close()
    run = pacsd("compress", "--config", str(tmp_path / "pacsd.yaml"), "--dry-run", "--json")
    assert run.returncode == 0, run.stderr
    planned = json.loads(run.stdout)["planned"]
    assert {item["sop_instance_uid"] for item in planned} == set(before)
    assert {item["syntax"] for item in planned} == {"RLE Lossless"}
    archive = Archive(settings)
    try:
        assert rows_by_uid(archive) == before
    finally:
        archive.close()
    run = pacsd("compress", "--config", str(tmp_path / "pacsd.yaml"))
    assert run.returncode == 0, run.stderr
    assert "compressed 1 instance(s)" in run.stdout and "skipped 1" in run.stdout
    skipped = json.loads(pacsd("compress", "--config", str(tmp_path / "pacsd.yaml"), "--skipped", "--json").stdout)
    rtss = str(dcmread(TESTDATA / "dicompyler-core" / "rtss.dcm", stop_before_pixels=True).SOPInstanceUID)
    assert [(item["sop_instance_uid"], item["why"], item["for_good"]) for item in skipped] == [
        (rtss, "no pixel data: nothing a lossless image codec encodes", True)]


def test_rules_choose_the_syntax_by_modality_and_leave_what_no_rule_names(tmp_path):
    mr = TESTDATA / "debian-dicom3tools" / "0051.dcm"
    us = TESTDATA / "deid-data" / "ultrasounds" / "GREYSCALE_IMAGE.dcm"
    settings = make_settings(tmp_path, compression={"after": 0, "rules": [
        {"modalities": ["CT"], "syntax": "JPEG 2000 Lossless"},
        {"modalities": ["mr"], "syntax": "1.2.840.10008.1.2.5"}]})
    archive = Archive(settings)
    try:
        archive_files(archive, CT, mr, us)
        archive.compressor.run()
        syntaxes = {uid: row.transfer_syntax for uid, row in rows_by_uid(archive).items()}
    finally:
        archive.close()
    uid = {path: str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in (CT, mr, us)}
    assert syntaxes[uid[CT]] == JPEG2000Lossless
    assert syntaxes[uid[mr]] == RLELossless
    assert syntaxes[uid[us]] == str(dcmread(us, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def test_a_lossy_syntax_in_a_rule_is_a_config_error(tmp_path):
    from pacsd.errors import ConfigError

    with pytest.raises(ConfigError, match="lossless only"):
        make_settings(tmp_path, compression={"rules": [{"syntax": "JPEG Baseline (Process 1)"}]})


# A child process compresses the archive and dies (os._exit, as kill -9 would) at one step.
_CRASH = r"""
import os, sys
from pacsd.config import load_settings
from pacsd.services.archive import Archive
import pacsd.index.compression as index
import pacsd.storage.blobstore as blobstore

point = sys.argv[2]
if point == "before-switch":  # the compressed file placed and durable, the row not switched
    index.switch_to_compressed = lambda *args, **kwargs: os._exit(9)
elif point == "after-switch":  # the row switched, the original not removed yet
    original = index.switch_to_compressed
    def switch_then_die(*args, **kwargs):
        original(*args, **kwargs)
        os._exit(9)
    index.switch_to_compressed = switch_then_die
archive = Archive(load_settings(sys.argv[1]), node="crasher")
archive.compressor.run()
os._exit(0)
"""


@pytest.mark.both_databases
@pytest.mark.parametrize("point", ["before-switch", "after-switch"])
def test_a_crash_at_each_step_leaves_one_valid_indexed_file_and_check_clears_the_other(tmp_path, point,
                                                                                      index_database):
    settings = settings_compressing(tmp_path, database=index_database)
    archive = Archive(settings)
    try:
        archive_files(archive, CT)
        before = rows_by_uid(archive)
    finally:
        archive.close()
    crash = subprocess.run([sys.executable, "-c", _CRASH, str(tmp_path / "pacsd.yaml"), point],
                           capture_output=True, text=True, timeout=120)
    assert crash.returncode == 9, crash.stderr
    storage = Path(settings.storage.directory)
    archive = Archive(settings)
    try:
        (row,) = rows_by_uid(archive).values()
        with archive.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(compression_journal)).scalar_one() == 1
    finally:
        archive.close()
    images = sorted(p for p in storage.rglob("*.dcm") if ".incoming" not in p.parts)
    assert len(images) == 2  # the original and the compressed file, one of them indexed
    assert hashlib.sha256((storage / row.path).read_bytes()).hexdigest() == row.checksum
    assert np.array_equal(pixels(storage / row.path), pixels(CT))
    if point == "before-switch":
        assert row.path == next(iter(before.values())).path
    else:
        assert row.transfer_syntax == JPEGLSLossless
    check = pacsd("check", "--config", str(tmp_path / "pacsd.yaml"), "--grace", "0", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    assert len(json.loads(check.stdout)["compression_leftovers"]) == 1
    assert sorted(p for p in storage.rglob("*.dcm") if ".incoming" not in p.parts) == [storage / row.path]
    again = pacsd("check", "--config", str(tmp_path / "pacsd.yaml"), "--grace", "0", "--json")
    assert json.loads(again.stdout)["compression_leftovers"] == [] and again.returncode == 0


def compressed_archive(archive: Archive, *files: Path) -> dict[str, Path]:
    """Archive `files` and compress them (JPEG-LS by the archive's rules): UID -> compressed file."""
    archive_files(archive, *files)
    assert archive.compressor.run().compressed == len(files)
    return {uid: archive.blobs.root / row.path for uid, row in rows_by_uid(archive).items()}


def by_uid(folder: Path) -> dict[str, Path]:
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("option, syntax", [("+xe", ExplicitVRLittleEndian), ("+xt", JPEGLSLossless)],
                         ids=["proposing-uncompressed", "proposing-jpeg-ls"])
def test_getscu_gets_the_compressed_file_when_it_takes_jpeg_ls_and_decoded_pixels_otherwise(
        pacs_factory, tmp_path, option, syntax):
    pacs = pacs_factory(compression={"rules": [{"syntax": "jpeg-ls"}], "after": 0})
    originals = [CT, multiframe_ct(tmp_path / "made")]
    stored = compressed_archive(pacs.archive, *originals)
    study = str(dcmread(CT, stop_before_pixels=True).StudyInstanceUID)
    out = tmp_path / "got"
    out.mkdir()
    run = dcmtk("getscu", "-v", "-S", option, "-aet", "GETTER", "-aec", pacs.aet, "-od", str(out), HOST,
                str(pacs.port), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}")
    got = by_uid(out)
    assert set(got) == set(stored), run.stderr[-3000:]
    for original in originals:
        uid = str(dcmread(original, stop_before_pixels=True).SOPInstanceUID)
        copy = dcmread(got[uid])
        assert copy.file_meta.TransferSyntaxUID == syntax
        assert np.array_equal(copy.pixel_array, pixels(original))
        if syntax == JPEGLSLossless:  # the very bytes stored
            assert dataset_bytes(got[uid]) == dataset_bytes(stored[uid])


@pytest.mark.parametrize("storescp_option, syntax", [("+xe", ExplicitVRLittleEndian), ("+xt", JPEGLSLossless)],
                         ids=["taking-uncompressed", "taking-jpeg-ls"])
def test_movescu_destination_gets_the_compressed_file_or_decoded_pixels(tmp_path, storescp_option, syntax):
    archive = Archive(make_settings(tmp_path, compression={"rules": [{"syntax": "jpeg-ls"}], "after": 0}))
    try:
        stored = compressed_archive(archive, CT)
    finally:
        archive.close()
    (uid,) = stored
    run, received = with_pacsd_and_storescp(tmp_path, f"+B {storescp_option}", "movescu", "-S", "-aet", "MOVER",
                                            "-aec", "PACSD", "-aem", "DEST", "-k", "QueryRetrieveLevel=IMAGE",
                                            "-k", f"SOPInstanceUID={uid}", HOST, "11112")
    arrived = by_uid(received)
    assert set(arrived) == {uid}, run.stderr[-3000:]
    copy = dcmread(arrived[uid])
    assert copy.file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(copy.pixel_array, pixels(CT))
    if syntax == JPEGLSLossless:
        assert dataset_bytes(arrived[uid]) == dataset_bytes(stored[uid])


@pytest.mark.parametrize("media_types, syntax", [
    ((("application/dicom", ExplicitVRLittleEndian),), ExplicitVRLittleEndian),
    ((("application/dicom", "*"),), JPEGLSLossless),
    (None, JPEGLSLossless)], ids=["explicit-le", "any", "as-stored"])
def test_wado_rs_sends_the_compressed_file_or_transcodes_it_as_asked(pacs_factory, tmp_path, media_types, syntax):
    from pacsd.services.users import add_user
    from pacsd.web.server import WebServer
    from tests.dicomweb_support import ADMIN, PASSWORD, client

    pacs = pacs_factory(compression={"rules": [{"syntax": "jpeg-ls"}], "after": 0})
    stored = compressed_archive(pacs.archive, CT)
    header = dcmread(CT, stop_before_pixels=True)
    add_user(pacs.archive.engine, ADMIN, PASSWORD, is_admin=True)
    server = WebServer(pacs.archive, HOST, 0, pacs.server.connections)
    server.start()
    try:
        instance = client(f"http://{HOST}:{server.address[1]}").retrieve_instance(str(header.StudyInstanceUID), str(header.SeriesInstanceUID),
                                            str(header.SOPInstanceUID), media_types=media_types)
    finally:
        server.stop()
    assert str(instance.SOPInstanceUID) in stored
    assert instance.file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(instance.pixel_array, pixels(CT))


def ct_copies(folder: Path, count: int) -> list[Path]:
    """`count` copies of the CT, each a new instance of one new study."""
    study, series = generate_uid(), generate_uid()
    paths = []
    for number in range(count):
        dataset = dcmread(CT)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        paths.append(folder / f"{number}.dcm")
        paths[-1].parent.mkdir(parents=True, exist_ok=True)
        dataset.save_as(paths[-1], enforce_file_format=True)
    return paths


def test_background_process_killed_while_compressing_then_restarted(pacs_process, tmp_path):
    """The server's background process compresses the archive and is killed (SIGKILL) three times at
    random moments: every indexed row names a file with its checksum at every point, and after the
    restarts everything is compressed, one file per instance, `pacsd check --checksums` clean."""
    import os
    import random
    import signal

    import yaml

    from pacsd.index.engine import open_index
    from tests.conftest import wait_until
    from tests.test_processes import child_pids

    compression = {"enabled": True, "after": 0, "idle_wait": 0.2, "batch": 5, "rules": [{"syntax": "jpeg-ls"}]}
    archive = Archive(make_settings(tmp_path, compression=compression))
    try:
        archive_files(archive, *ct_copies(tmp_path / "copies", 40))
    finally:
        archive.close()
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"server": {"workers": 2, "shutdown_grace": 2}, "compression": compression}))
    server = pacs_process("--config", str(config))
    engine = open_index(server.database_target, upgrade=False)
    storage = tmp_path / "storage"

    def compressed() -> int:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(instances)
                                .where(instances.c.transfer_syntax == JPEGLSLossless)).scalar_one()

    def assert_every_row_has_its_file() -> None:
        with engine.connect() as conn:
            rows = conn.execute(select(instances.c.path, instances.c.checksum)).all()
        assert len(rows) == 40
        for row in rows:
            assert hashlib.sha256((storage / row.path).read_bytes()).hexdigest() == row.checksum, row.path

    try:
        for _ in range(3):
            victim = wait_until(lambda: child_pids(tmp_path, "background"), 30, "a background process")[0]
            already = compressed()
            wait_until(lambda before=already: compressed() > before or compressed() == 40, 60, "compression going on")
            if compressed() == 40:
                break
            time.sleep(random.uniform(0, 0.1))
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda killed=victim: child_pids(tmp_path, "background") not in ([], [killed]), 30,
                       "background restarted")
            assert_every_row_has_its_file()
        wait_until(lambda: compressed() == 40, 120, "everything compressed")
        server.stop()
        assert_every_row_has_its_file()
    finally:
        engine.dispose()
    check = pacsd("check", "--config", str(config), "--storage-dir", str(storage), "--index-db",
                  str(tmp_path / "index.sqlite"), "--checksums", "--grace", "0", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    assert sorted(p for p in storage.rglob("*.dcm") if ".incoming" not in p.parts) == \
        sorted(p for p in storage.rglob("*.jls.dcm"))
    assert len(list(storage.rglob("*.jls.dcm"))) == 40


def twelve_bit_ct(folder: Path, high_bits: bool) -> Path:
    """The CT as 12-bit unsigned data; with `high_bits`, 100 stored words also carry bit 14 (as an
    old overlay in the pixel data's unused bits would): pydicom decodes both to the same values."""
    dataset = dcmread(CT)
    dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 12, 11, 0
    words = (np.frombuffer(dataset.PixelData, dtype="<i2").astype(np.int32) + 1024).clip(0, 4095).astype("<u2")
    if high_bits:
        words[:100] |= 0x4000
    dataset.PixelData = words.tobytes()
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = folder / f"ct12{'-high' if high_bits else ''}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("name", SYNTAXES)
def test_content_above_bits_stored_is_never_dropped(tmp_path, name):
    """Each codec keeps Bits Stored bits only, and pydicom's decoded values agree with or without
    what lies above: a file with such content is skipped (its stored words are the oracle), a
    clean 12-bit file is compressed."""
    clean, marked = twelve_bit_ct(tmp_path / "made", False), twelve_bit_ct(tmp_path / "made", True)
    archive = Archive(settings_compressing(tmp_path, name))
    try:
        archive_files(archive, clean, marked)
        report = archive.compressor.run()
        rows = rows_by_uid(archive)
        storage = archive.blobs.root
    finally:
        archive.close()
    uid = {path: str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in (clean, marked)}
    assert rows[uid[clean]].transfer_syntax == SYNTAXES[name]
    assert rows[uid[marked]].transfer_syntax != SYNTAXES[name]
    assert dcmread(storage / rows[uid[marked]].path).PixelData == dcmread(marked).PixelData
    assert [why for _, why in report.skipped] == ["bits above Bits Stored (12) are set in the stored pixel words"]


def test_the_original_sent_again_after_compression_is_a_duplicate_not_a_conflict(tmp_path, caplog):
    """The same instance in another syntax has another checksum: it is no conflict; other content
    in the stored syntax still is."""
    archive = Archive(settings_compressing(tmp_path))
    try:
        stored = compressed_archive(archive, CT)
        caplog.clear()
        archive_files(archive, CT)  # kept: the compressed copy stays
        assert not [r for r in caplog.records if "conflict" in r.getMessage()]
        changed = dcmread(stored[next(iter(stored))])
        changed.PatientName = "OTHER^CONTENT"
        changed.save_as(tmp_path / "changed.dcm")
        archive_files(archive, tmp_path / "changed.dcm")
        assert [r for r in caplog.records if "conflict" in r.getMessage()]
        assert {uid: archive.blobs.root / row.path for uid, row in rows_by_uid(archive).items()} == stored
    finally:
        archive.close()


def test_instances_received_are_compressed_after_the_acknowledgement(pacs_process, tmp_path):
    """storescu sends uncompressed CTs; each is acknowledged as stored, and the server's background
    process then compresses it, off the receive path."""
    import yaml

    from pacsd.index.engine import open_index
    from tests.conftest import wait_until

    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"compression": {"enabled": True, "after": 0, "idle_wait": 0.2,
                                                      "rules": [{"modalities": ["CT"], "syntax": "rle"}]}}))
    server = pacs_process("--config", str(config))
    files = ct_copies(tmp_path / "send", 3)
    run = dcmtk("storescu", "-aec", "PACSD", HOST, str(server.port), *map(str, files))
    assert run.returncode == 0, run.stderr
    engine = open_index(server.database_target, upgrade=False)
    try:
        def syntaxes() -> list[str]:
            with engine.connect() as conn:
                return list(conn.execute(select(instances.c.transfer_syntax)).scalars())
        wait_until(lambda: syntaxes() == [RLELossless] * 3, 60, "the received CTs compressed")
        with engine.connect() as conn:
            paths = list(conn.execute(select(instances.c.path)).scalars())
    finally:
        engine.dispose()
    server.stop()
    assert all(path.endswith(".rle.dcm") for path in paths)
    copies = {str(dcmread(tmp_path / "storage" / p).SOPInstanceUID): tmp_path / "storage" / p for p in paths}
    for original in files:
        assert np.array_equal(pixels(copies[str(dcmread(original).SOPInstanceUID)]), pixels(original))


def test_compress_without_rules_says_so_in_one_line(tmp_path):
    Archive(make_settings(tmp_path)).close()
    run = pacsd("compress", "--config", str(tmp_path / "pacsd.yaml"))
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "pacsd: no compression.rules in the config: nothing says what to compress, or how"]


def test_a_retrieve_that_selected_the_original_before_it_was_compressed_sends_the_compressed_file(tmp_path):
    """C-MOVE/C-GET and WADO-RS select the instances first and read each file later: one compressed
    in between is found again under its new path and syntax, not failed as missing."""
    from pydicom.uid import ExplicitVRLittleEndian as EXPLICIT

    from pacsd.index.repository import current_instance, instances_of
    from pacsd.services.retrieve import RetrieveService, prepare

    archive = Archive(settings_compressing(tmp_path))
    try:
        archive_files(archive, CT)
        header = dcmread(CT, stop_before_pixels=True)
        service = RetrieveService(archive.engine, archive.blobs)
        (dimse,) = service.select("IMAGE", {"StudyInstanceUID": str(header.StudyInstanceUID),
                                            "SeriesInstanceUID": str(header.SeriesInstanceUID),
                                            "SOPInstanceUID": str(header.SOPInstanceUID)})
        (web,) = instances_of(archive.engine, None, str(header.StudyInstanceUID))
        assert archive.compressor.run().compressed == 1
        assert not dimse.file.exists()
        now = service.current(dimse)
        assert now.transfer_syntax == JPEGLSLossless
        assert prepare(now, {str(header.SOPClassUID): {JPEGLSLossless}}) == now.file
        decoded = prepare(now, {str(header.SOPClassUID): {EXPLICIT}})
        assert np.array_equal(decoded.pixel_array, pixels(CT))
        web_now = current_instance(archive.engine, archive.blobs.path_of, web)
        assert (web_now.transfer_syntax, archive.blobs.path_of(web_now.path)) == (JPEGLSLossless, now.file)
    finally:
        archive.close()


def test_a_failure_that_may_pass_is_tried_three_times_then_left(tmp_path):
    """An instance whose file is missing fails (it may be restored): tried again by later runs, at
    most MAX_ATTEMPTS times, then no more; it never blocks the others."""
    from pacsd.index.compression import MAX_ATTEMPTS

    archive = Archive(settings_compressing(tmp_path))
    try:
        archive_files(archive, CT, TESTDATA / "debian-dicom3tools" / "0051.dcm")
        rows = rows_by_uid(archive)
        missing = str(dcmread(CT, stop_before_pixels=True).SOPInstanceUID)
        (archive.blobs.root / rows[missing].path).unlink()
        runs = [archive.compressor.run() for _ in range(MAX_ATTEMPTS + 1)]
        with archive.engine.connect() as conn:
            outcome = conn.execute(select(compression_outcomes)).one()
    finally:
        archive.close()
    assert [len(run.failed) for run in runs] == [1] * MAX_ATTEMPTS + [0]
    assert runs[0].compressed == 1 and sum(run.compressed for run in runs[1:]) == 0
    assert (outcome.attempts, outcome.permanent) == (MAX_ATTEMPTS, False)
    assert "No such file" in outcome.reason


def test_a_rule_naming_an_area_compresses_only_what_is_in_that_area(tmp_path):
    """`areas: [long_term]`: a study moved to the long-term area is compressed there (its file
    stays in that area), one left in the short-term area is not."""
    from pacsd.services.area_moves import move_study
    from tests.studies import write_study

    storage = {"directory": str(tmp_path / "fast"),
               "areas": {"short_term": str(tmp_path / "fast"), "long_term": str(tmp_path / "slow")}}
    settings = make_settings(tmp_path, storage=storage, compression={
        "after": 0, "rules": [{"areas": ["long_term"], "syntax": "JPEG-LS Lossless"}]})
    archive = Archive(settings)
    try:
        kept, moved = (write_study(tmp_path / name, series=1, per_series=2) for name in ("kept", "moved"))
        archive_files(archive, *kept, *moved)
        moved_study = str(dcmread(moved[0], stop_before_pixels=True).StudyInstanceUID)
        move_study(archive, moved_study, "long_term")
        assert archive.compressor.run().compressed == 2
        rows = rows_by_uid(archive)
    finally:
        archive.close()
    for path in moved:
        row = rows[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)]
        assert row.transfer_syntax == JPEGLSLossless
        assert row.path.startswith(".areas/long_term/")
        assert np.array_equal(pixels(tmp_path / "slow" / row.path.removeprefix(".areas/long_term/")), pixels(path))
    for path in kept:
        row = rows[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)]
        assert row.transfer_syntax == str(dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        assert not row.path.startswith(".areas/")


def test_a_compression_rule_naming_an_unknown_area_is_a_config_error(tmp_path):
    with pytest.raises(Exception, match="no storage area 'cold'"):
        make_settings(tmp_path, compression={"rules": [{"areas": ["cold"], "syntax": "RLE Lossless"}]})
