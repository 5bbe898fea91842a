"""The DICOM services `DicomServer` offers besides Verification and Storage, as a listener
(`pacsd.services.listeners`): Query/Retrieve (C-FIND, C-MOVE, C-GET) and Storage Commitment; and
the DICOM client services and web use to reach other nodes.  A site's package adds its own
service the same way.
"""

from __future__ import annotations

from pacsd.services.listeners import hookimpl


@hookimpl
def pacsd_dicom_services(server) -> list:
    from pacsd.net.commitment_scp import StorageCommitmentService
    from pacsd.net.qr_scp import QueryRetrieveService

    return [StorageCommitmentService(server.settings, server.archive, sweeps=server.background_duties),
            QueryRetrieveService(server.settings, server.archive)]


@hookimpl
def pacsd_dicom_client():
    from pacsd.net.client import NetDicomClient

    return NetDicomClient()
