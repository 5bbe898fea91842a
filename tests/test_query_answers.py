"""Query answers written once: the identifier bytes written directly equal pydicom's encoding of
the same answer, DICOM JSON is what pydicom reads back, non-ASCII answers pick a charset, and a
pynetdicom SCU reads C-FIND answers in each transfer syntax it negotiates (deflated included)."""

from __future__ import annotations

import pytest
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from pacsd.services.answers import Answer, AnswerElement, AnswerLayout
from tests.conftest import HOST
from tests.dicomgen import write_dicom
from tests.qr_support import archive_files

VRS = {"PatientName": "PN", "StudyInstanceUID": "UI", "ModalitiesInStudy": "CS", "StudyDescription": "LO",
       "NumberOfStudyRelatedInstances": "IS", "AccessionNumber": "SH", "RetrieveURL": "UR"}


def answer(**texts) -> Answer:
    result = Answer("STUDY")
    for keyword, values in texts.items():
        result.elements[tag_for_keyword(keyword)] = AnswerElement(VRS[keyword], tuple(values))
    return result


ASCII = dict(PatientName=["DOE^JOHN"], StudyInstanceUID=["1.2.345"], ModalitiesInStudy=["CT", "MR"],
             StudyDescription=[], NumberOfStudyRelatedInstances=["12"], RetrieveURL=["http://x/y"])


@pytest.mark.parametrize("implicit", [True, False])
def test_identifier_written_directly_equals_pydicoms_encoding(implicit):
    direct = answer(**ASCII).encoded(implicit, True)
    reference = Dataset()
    reference.QueryRetrieveLevel = "STUDY"
    reference.PatientName, reference.StudyInstanceUID = "DOE^JOHN", "1.2.345"
    reference.ModalitiesInStudy, reference.StudyDescription = ["CT", "MR"], None
    reference.NumberOfStudyRelatedInstances, reference.RetrieveURL = "12", "http://x/y"
    out = DicomBytesIO()
    out.is_implicit_VR, out.is_little_endian = implicit, True
    write_dataset(out, reference)
    assert direct == out.getvalue()


def laid_out(**texts) -> Answer:
    """The answer `answer(**texts)` built the way a query without stored headers builds it."""
    layout = AnswerLayout([(tag_for_keyword(keyword), VRS[keyword]) for keyword in texts])
    return Answer("STUDY", layout, [tuple(values) for values in texts.values()])


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("texts", [
    ASCII,
    dict(ASCII, StudyInstanceUID=["1.2.34"], PatientName=["ODD^NAME1"]),  # even and odd lengths both ways
    dict(PatientName=["Müller^Jörg"], StudyInstanceUID=["1.2"]),  # not ASCII: the general encoder
    dict(StudyDescription=["x" * 0x10000]),  # too long for explicit VR's 2-byte length
], ids=["ascii", "padding", "non-ascii", "long"])
def test_a_laid_out_answer_is_encoded_as_the_same_answer_element_by_element(implicit, texts):
    for charset in (None, "ISO_IR 100"):
        assert laid_out(**texts).encoded(implicit, True, charset) == answer(**texts).encoded(implicit, True, charset)
    assert laid_out(**texts).encoded(implicit, False) == answer(**texts).encoded(implicit, False)


def test_a_laid_out_answer_has_the_same_elements_and_json():
    texts = dict(ASCII, PatientName=["Yamada^Tarou=山田^太郎"])
    built = laid_out(**texts)
    assert built.as_json() == answer(**texts).as_json()
    assert built.text(tag_for_keyword("PatientName")) == "Yamada^Tarou=山田^太郎"
    built.elements[tag_for_keyword("AccessionNumber")] = AnswerElement("SH", ("A1",))
    decoded = read_dataset(DicomBytesIO(built.encoded(True, True)), True, True)
    assert decoded.AccessionNumber == "A1", "an element added later is encoded too"


def test_a_repeated_key_is_answered_once_with_its_last_value():
    tag = tag_for_keyword("PatientID")
    layout = AnswerLayout([(tag, "LO"), (tag_for_keyword("StudyInstanceUID"), "UI"), (tag, "LO")])
    built = Answer("STUDY", layout, [("FIRST",), ("1.2",), ("LAST",)])
    decoded = read_dataset(DicomBytesIO(built.encoded(True, True)), True, True)
    assert decoded.PatientID == "LAST" and list(built.elements) == [tag, tag_for_keyword("StudyInstanceUID")]
    assert len([e for e in decoded if e.tag == tag]) == 1


def test_big_endian_is_left_to_pydicom():
    encoded = answer(**ASCII).encoded(False, False)
    decoded = read_dataset(DicomBytesIO(encoded), False, False)
    assert decoded.ModalitiesInStudy == ["CT", "MR"] and str(decoded.PatientName) == "DOE^JOHN"


def test_json_values_by_vr():
    as_json = answer(PatientName=["Yamada^Tarou=山田^太郎"], NumberOfStudyRelatedInstances=["12"],
                     StudyDescription=[]).as_json()
    name = {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}
    assert as_json["00100010"] == {"vr": "PN", "Value": [name]}
    assert as_json["00201208"] == {"vr": "IS", "Value": [12]}
    assert as_json["00081030"] == {"vr": "LO"}
    assert as_json["00080005"] == {"vr": "CS", "Value": ["ISO_IR 192"]}
    assert str(Dataset.from_json(as_json).PatientName) == "Yamada^Tarou=山田^太郎"


@pytest.mark.parametrize("requested, name, expected", [
    ("ISO_IR 100", "Müller^Jörg", "ISO_IR 100"),
    ("ISO_IR 100", "Иванов^Пётр", "ISO_IR 192"),  # not in Latin-1
    (None, "Müller^Jörg", "ISO_IR 192"),  # default repertoire asked: UTF-8
    ("ISO_IR 144", "Иванов^Пётр", "ISO_IR 144"),
    ("ISO_IR 100", "DOE^JOHN", None),  # ASCII: no Specific Character Set
])
def test_answer_in_the_requested_charset_when_everything_fits(requested, name, expected):
    encoded = answer(PatientName=[name]).encoded(True, True, requested)
    decoded = read_dataset(DicomBytesIO(encoded), True, True)
    assert decoded.get("SpecificCharacterSet") == expected
    assert str(decoded.PatientName) == name


@pytest.mark.parametrize("syntax", [DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_c_find_answers_in_the_negotiated_syntax(pacs, tmp_path, syntax):
    archive_files(pacs.archive, write_dicom(tmp_path / "x.dcm", PatientName="DOE^JOHN", PatientID="P9"))
    ae = AE(ae_title="PYFIND")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind, [syntax])
    assoc = ae.associate(HOST, pacs.port, ae_title=pacs.aet)
    assert assoc.is_established and assoc.accepted_contexts[0].transfer_syntax[0] == syntax
    query = Dataset()
    query.QueryRetrieveLevel, query.PatientID, query.PatientName, query.StudyInstanceUID = "STUDY", "P9", "", ""
    try:
        answers = [found for status, found in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
                   if status and status.Status == 0xFF00]
    finally:
        assoc.release()
    assert [str(found.PatientName) for found in answers] == ["DOE^JOHN"]
