"""Errors raised for bad input; each names the thing at fault."""


class TwinframeError(Exception):
    """Base class of every error twinframe raises on purpose."""


class UnknownModelError(TwinframeError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConfigError(TwinframeError, ValueError):
    pass


class WeightFileError(TwinframeError, ValueError):
    pass


class TransferError(TwinframeError, ValueError):
    pass
