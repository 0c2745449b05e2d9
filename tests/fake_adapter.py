"""A framework-free adapter for testing the worker protocol without torch or TensorFlow."""

import os


class FakeAdapter:
    """Serves its own ops instead of the protocol's (a worker serves whatever ``ops()`` gives)."""

    def __init__(self):
        self._held = []

    def echo(self, value):
        return {"value": value, "pid": os.getpid()}

    def fail(self, message):
        raise ValueError(message)

    def setup(self, **settings):
        return {"settings": settings}

    def allocate(self, megabytes):
        """Hold memory, as a framework's caches do after its models are freed."""
        self._held.append(bytearray(os.urandom(1024)) * (megabytes * 1024))
        return {"pid": os.getpid()}

    def ops(self):
        return {"echo": self.echo, "fail": self.fail, "setup": self.setup, "allocate": self.allocate}
