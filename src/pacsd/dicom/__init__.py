"""pacsd.dicom"""
