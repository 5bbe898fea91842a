"""Query answers written once: the identifier bytes written directly equal pydicom's encoding of
the same answer, DICOM JSON is what pydicom reads back, non-ASCII answers pick a charset, and a
pynetdicom SCU reads C-FIND answers in each transfer syntax it negotiates (deflated included)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from pydicom.datadict import tag_for_keyword
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from pacsd.services.answers import Answer, AnswerElement
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
