"""pacsd.web: the HTTP side (DICOMweb, the web interface, status, metrics) on FastAPI."""
