"""pacsd: a DICOM archive server (a small PACS).

Receives images over DICOM and HTTP, files them on disk, indexes their headers and gives them
back.  The package layout and the one path every image takes are described in docs/DESIGN.md.
"""

__version__ = "0.1.0"
