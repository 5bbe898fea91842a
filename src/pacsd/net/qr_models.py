"""The Query/Retrieve information models (Patient Root, Study Root) and their SOP classes.

Shared by the SCP (which model a request is under) and the SCU (which class to ask with).
"""

from __future__ import annotations

from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

FIND = {"study": StudyRootQueryRetrieveInformationModelFind, "patient": PatientRootQueryRetrieveInformationModelFind}
MOVE = {"study": StudyRootQueryRetrieveInformationModelMove, "patient": PatientRootQueryRetrieveInformationModelMove}
GET = {"study": StudyRootQueryRetrieveInformationModelGet, "patient": PatientRootQueryRetrieveInformationModelGet}
#: SOP Class UID -> "study" | "patient"
MODEL_OF = {uid: model for classes in (FIND, MOVE, GET) for model, uid in classes.items()}
