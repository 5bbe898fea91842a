"""pacsd.services"""
