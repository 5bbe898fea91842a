"""pacsd.index"""
