"""A framework-free adapter for testing the worker protocol without torch or TensorFlow."""

import os


def echo(value):
    return {"value": value, "pid": os.getpid()}


def fail(message):
    raise ValueError(message)


OPS = {"echo": echo, "fail": fail}
