"""The action log on its own: one line per record, readable at once, rotated by size."""

from __future__ import annotations

import re
import threading

from pacsd.services.actionlog import ActionLog

LINE = re.compile(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} stored sop="(?P<sop>[^"]*)" path="[^"]*"\n')


def test_a_line_is_in_the_file_as_soon_as_it_is_recorded(tmp_path):
    log = ActionLog(tmp_path / "logs" / "actions.log")
    log.record("stored", sop="1.2.3", path="a/b.dcm")
    assert LINE.fullmatch((tmp_path / "logs" / "actions.log").read_text())
    log.close()


def test_hostile_values_stay_on_one_line(tmp_path):
    log = ActionLog(tmp_path / "actions.log")
    log.record("stored", sop='x"\ny\r\x1b[31m', path="p")
    log.close()
    lines = (tmp_path / "actions.log").read_text().splitlines()
    assert len(lines) == 1 and '\\n' in lines[0] and '\\"' in lines[0] and "\x1b" not in lines[0]


def test_rotation_keeps_the_newest_lines_within_max_bytes(tmp_path):
    log = ActionLog(tmp_path / "actions.log", max_bytes=1024, backups=2)
    for number in range(60):
        log.record("stored", sop=f"1.2.{number}", path="some/where.dcm")
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["actions.log", "actions.log.1", "actions.log.2"]
    assert all((tmp_path / name).stat().st_size < 1024 for name in files)
    kept = [LINE.fullmatch(line + "\n")["sop"] for name in reversed(files)
            for line in (tmp_path / name).read_text().splitlines()]
    assert kept == [f"1.2.{n}" for n in range(60 - len(kept), 60)]  # in order, the newest kept


def test_without_backups_the_file_starts_anew(tmp_path):
    log = ActionLog(tmp_path / "actions.log", max_bytes=1024, backups=0)
    for number in range(40):
        log.record("stored", sop=f"1.2.{number}", path="p.dcm")
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["actions.log"]
    text = (tmp_path / "actions.log").read_text()
    assert 0 < len(text) < 1024 and 'sop="1.2.39"' in text


def test_a_reopened_log_appends_and_counts_what_is_there(tmp_path):
    first = ActionLog(tmp_path / "actions.log", max_bytes=1024, backups=1)
    for number in range(12):  # ~660 bytes
        first.record("stored", sop=f"1.{number}", path="p.dcm")
    first.close()
    second = ActionLog(tmp_path / "actions.log", max_bytes=1024, backups=1)
    for number in range(12, 24):  # ~660 more: past 1024 only if the first 660 count
        second.record("stored", sop=f"1.{number}", path="p.dcm")
    second.close()
    assert (tmp_path / "actions.log.1").exists()  # the size on reopening counted toward rotation
    assert (tmp_path / "actions.log").stat().st_size < 1024


def test_threads_never_mix_lines(tmp_path):
    log = ActionLog(tmp_path / "actions.log", max_bytes=10**7)
    threads = [threading.Thread(target=lambda t=t: [log.record("stored", sop=f"{t}.{n}", path="p" * 50)
                                                    for n in range(200)]) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    lines = (tmp_path / "actions.log").read_text().splitlines(keepends=True)
    assert len(lines) == 800 and all(LINE.fullmatch(line) for line in lines)


def test_a_closed_log_records_nothing(tmp_path):
    log = ActionLog(tmp_path / "actions.log")
    log.close()
    log.record("stored", sop="1", path="p")
    assert (tmp_path / "actions.log").read_text() == ""
