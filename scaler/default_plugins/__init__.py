"""default_plugins"""
