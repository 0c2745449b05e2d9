"""A framework-free adapter for testing the worker protocol without torch or TensorFlow."""

import os

_held = []


def echo(value):
    return {"value": value, "pid": os.getpid()}


def fail(message):
    raise ValueError(message)


def setup(**settings):
    return {"settings": settings}


def allocate(megabytes):
    """Hold memory, as a framework's caches do after its models are freed."""
    _held.append(bytearray(os.urandom(1024)) * (megabytes * 1024))
    return {"pid": os.getpid()}


OPS = {"echo": echo, "fail": fail, "setup": setup, "allocate": allocate}
