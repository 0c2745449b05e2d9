"""torchvision's own models, built in the torch worker, as the reference for the zoo's torch twins."""


def create(name: str, **config):
    import torchvision

    return getattr(torchvision.models, name)(weights=None, **config)
