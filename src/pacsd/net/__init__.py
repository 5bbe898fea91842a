"""pacsd.net"""
