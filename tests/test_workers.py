"""`server.workers: 2`: two receiving processes share the DICOM port (SO_REUSEPORT); concurrent
associations are stored once each, on SQLite WAL and on PostgreSQL, both workers serve
associations (the connection log's pid), and both stop on SIGINT."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from pydicom import dcmread
from sqlalchemy import select

from pacsd.index.engine import open_index
from pacsd.index.schema import instances
from tests.conftest import HOST, dcmtk
from tests.studies import send, write_study

pytestmark = pytest.mark.both_databases


def test_two_workers_share_the_port_and_store_everything_once(pacs_process, tmp_path):
    config = tmp_path / "workers.yaml"
    config.write_text(yaml.safe_dump({"server": {"workers": 2}}))
    server = pacs_process("--config", str(config))
    studies = [write_study(tmp_path / "send" / str(n), series=2, per_series=5) for n in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda files: send(server, files), studies))

    engine = open_index(server.database_target)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(instances.c.sop_uid, instances.c.path)).all()
    finally:
        engine.dispose()
    sent = sorted(str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for files in studies for f in files)
    assert sorted(row.sop_uid for row in rows) == sent
    for row in rows:
        assert str(dcmread(tmp_path / "storage" / row.path).SOPInstanceUID) == row.sop_uid
    for _ in range(24):  # more connections: the kernel spreads them over the workers by their port
        assert dcmtk("echoscu", "-aet", "SPREAD", "-aec", "PACSD", HOST, str(server.port)).returncode == 0
    output = server.stop()
    assert "worker 1 of 2" in output and "worker 2 of 2" in output
    assert output.count("pacsd stopped") == 2, output[-2000:]
    log = (tmp_path / "logs" / "connections.log").read_text().splitlines()
    served_by = {re.search(r" pid=(\d+) ", line).group(1) for line in log if "calling=SPREAD" in line
                 or "calling=MODALITY" in line}
    assert len(served_by) == 2 and str(server.proc.pid) not in served_by, served_by  # both workers, not the parent
