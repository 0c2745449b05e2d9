"""Worker-side adapters, one per framework.

An adapter module is imported only inside that framework's worker process. It
exposes ``OPS``, a dict of named operations with one signature across
frameworks; a model is made by a user-supplied factory (``"package.module:function"``),
so the adapters work for any twin pair, not only twinframe's zoo.
"""
