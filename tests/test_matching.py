"""The two faces of one matching rule: SQL (over SQLite) and Python give the same answers."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, MetaData, String, Table, insert, select

from pacsd.index.engine import open_index
from pacsd.index.matching import in_utc, matches, parse_condition, to_sql

VALUES = ["DOE^JOHN", "doe^jane", "DOE_X", "DOE%Y", "A\\B", "CT\\MR", "MR", "", "Yamada^Tarou=山田^太郎", "ROE^A=DOE^B",
          "20200105", "20191231", "101500.25", "1015"]

CASES = [
    ("PN", "DOE*", True), ("PN", "doe^j???", True), ("PN", "DOE*", False), ("LO", "DOE_*", False),
    ("LO", "DOE%*", False), ("LO", "*\\*", False), ("PN", "山田^太郎", True), ("PN", "*=山田*", True),
    ("DA", "20200101-", False), ("DA", "-20191231", False), ("DA", "20191231-20200105", False),
    ("TM", "-1015", False), ("TM", "1015-", False), ("CS", ["MR", "CT"], False), ("LO", "*", False),
    ("LO", "", False),
]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    engine = open_index(tmp_path_factory.mktemp("m") / "m.sqlite")
    metadata = MetaData()
    values = Table("values_", metadata, Column("v", String), Column("upper", String))
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(values), [{"v": v, "upper": v.upper()} for v in VALUES])
    return engine, values


@pytest.mark.parametrize("vr, raw, fold", CASES)
@pytest.mark.parametrize("separator", [None, "=", "\\"])
def test_sql_and_python_agree(table, vr, raw, fold, separator):
    engine, values = table
    condition = parse_condition(vr, raw, fold)
    column = values.c.upper if fold else values.c.v
    with engine.connect() as conn:
        in_sql = {row.v for row in conn.execute(select(values.c.v).where(to_sql(condition, column, separator)))}
    in_python = {v for v in VALUES if matches(condition, v, separator)}
    assert in_sql == in_python


def test_some_answers_by_hand():
    assert matches(parse_condition("PN", "doe*", True), "DOE^JOHN")
    assert not matches(parse_condition("PN", "doe*", False), "DOE^JOHN")
    assert matches(parse_condition("PN", "山田^太郎", True), "Yamada^Tarou=山田^太郎=やまだ^たろう", "=")
    assert not matches(parse_condition("LO", "DOE_X", False), "DOEAX")
    assert matches(parse_condition("TM", "-1015", False), "101530")  # the upper bound's whole minute
    assert not matches(parse_condition("DA", "20200101-", False), "")  # empty never matches a range
    assert parse_condition("UI", "1.2*", False).kind == "single"  # UIDs have no wildcards
    # an ASCII name pattern looks at the alphabetic group only, any other at every group
    assert not matches(parse_condition("PN", "DOE*", True), "ROE^A=DOE^B", "=")
    assert matches(parse_condition("PN", "ROE^A", True), "ROE^A=DOE^B", "=")
    assert matches(parse_condition("PN", "やまだ*", True), "Yamada^Tarou=山田^太郎=やまだ^たろう", "=")


@pytest.mark.parametrize("query, stored, expected", [
    ("20200105090000-20200105093000", "20200105101500+0100", True),  # 09:15 UTC
    ("20200105100000-20200105110000", "20200105101500+0100", False),
    ("20200105100000+0100-20200105110000+0100", "20200105101500+0100", True),  # bounds in UTC too
    ("20200105100000+0100-20200105110000+0100", "20200105091500", True),  # no offset: as written
    ("20200105-", "20200104233000-0100", True),  # 00:30 UTC on the 5th
    ("-20200104", "20200104233000-0100", False),
    ("20200105101500-0500", "20200105151500", True),  # one value with an offset, not a range
    ("2020-2021", "20210630120000.5+0200", True),  # a range of years (too coarse for an offset)
    ("20200105101500.123456", "20200105101500.123456+0000", True),  # UTC itself
])
def test_datetime_ranges_compare_utc_offsets_in_utc(query, stored, expected):
    assert matches(parse_condition("DT", query), stored) is expected


def test_utc_offsets_convert_across_days_at_their_own_precision():
    assert in_utc("20200101001500+0100") == "20191231231500"
    assert in_utc("2020010510-0100") == "2020010511"
    assert in_utc("202001051015.25-0230") == "202001051245.25"
    assert in_utc("20200105") == "20200105"
