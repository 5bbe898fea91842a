"""pacsd.storage"""
