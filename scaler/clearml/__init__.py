"""clearml"""
