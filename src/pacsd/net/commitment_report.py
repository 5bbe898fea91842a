"""Send a Storage Commitment report (N-EVENT-REPORT) on an open association or a new one.

A new association is opened with SCP/SCU Role Selection proposing us as the SCP of the Storage
Commitment Push Model, as PS3.4 J.3.3 requires when the SCP initiates.  Failures come back as
a sentence for the delivery log, never as an exception.
"""

from __future__ import annotations

import logging

from pynetdicom import AE, build_role
from pynetdicom.association import Association
from pynetdicom.sop_class import StorageCommitmentPushModel, StorageCommitmentPushModelInstance

from pacsd.dicom.commitment import CommitmentResult, event_information

log = logging.getLogger(__name__)


def send_report(assoc: Association, result: CommitmentResult, retrieve_aet: str = "") -> str:
    """Send the report on `assoc`; return '' on success, else why it failed."""
    status, _ = assoc.send_n_event_report(
        event_information(result, retrieve_aet), result.event_type,
        StorageCommitmentPushModel, StorageCommitmentPushModelInstance,
    )
    code = getattr(status, "Status", None)
    if code is None:
        return "no answer to the N-EVENT-REPORT (association aborted or timed out)"
    if code != 0x0000:
        return f"the requester answered the N-EVENT-REPORT with status 0x{code:04X}"
    return ""


def send_report_on_new_association(our_aet: str, peer_aet: str, host: str, port: int,
                                   result: CommitmentResult, timeout: float) -> str:
    """Open an association to the requester as Storage Commitment SCP, send, release."""
    ae = AE(ae_title=our_aet)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(StorageCommitmentPushModel)
    role = build_role(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    assoc = ae.associate(host, port, ae_title=peer_aet, ext_neg=[role])
    if not assoc.is_established:
        outcome = "rejected" if assoc.is_rejected else "could not be opened"
        return f"an association to {peer_aet} at {host}:{port} {outcome}"
    try:
        context = next((cx for cx in assoc.accepted_contexts
                        if cx.abstract_syntax == StorageCommitmentPushModel), None)
        if context is None:
            return f"{peer_aet} refused the Storage Commitment presentation context"
        if not context.as_scp:
            log.warning("%s did not accept us as Storage Commitment SCP; sending the report anyway", peer_aet)
        return send_report(assoc, result, our_aet)
    finally:
        if assoc.is_established:
            assoc.release()
