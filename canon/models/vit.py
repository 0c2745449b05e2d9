"""Vision Transformers with timm's semantics and state_dict names (timm/models/vision_transformer.py).

Three of timm's ViT-B/16s, as MedMNIST+ uses them: ``vit_base_patch16_224`` (augreg), its DINO
weights ``vit_base_patch16_224.dino`` (timm's pretrained tag, the same network), and the CLIP
image tower ``vit_base_patch16_clip_224`` (``norm_pre``, LayerNorm eps 1e-5, no patch-embedding
bias).  All three pool the class token and have no ``fc_norm``.  The input normalisation of each
is registered with its name: ``canon.models.mean_std(name)``.

timm's no-op modules (``q_norm``, ``k_norm``, ``attn_drop``, ``ls1``, ``drop_path1``, ...) are
Identity or Dropout(0) and hold nothing: the twins leave them out.
"""

from __future__ import annotations

from dataclasses import dataclass

from canon.errors import ConfigError
from canon.models._registry import IMAGENET, INCEPTION, OPENAI_CLIP, register_models

GLOBAL_POOLS = ("token", "avg")
TRUNC_NORMAL_STD = 0.02  # timm's init of Linear weights and the position embedding
CLS_TOKEN_STD = 1e-6


def pair(size) -> tuple[int, int]:
    """``img_size``/``patch_size`` as (H, W): an int is square."""
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def validate_common(config, family: str) -> None:
    """The checks ViT and EVA share (their configs have the same token fields)."""
    image, patch = config.img_size, config.patch_size
    if not isinstance(image, int) and len(tuple(image)) != 2:
        raise ConfigError(f"{family} img_size must be an int or (H, W), got {image!r}")
    if not isinstance(patch, int) and len(tuple(patch)) != 2:
        raise ConfigError(f"{family} patch_size must be an int or (H, W), got {patch!r}")
    for key in ("in_channels", "num_classes", "embed_dim", "depth", "num_heads"):
        if int(getattr(config, key)) < 1:
            why = " (the head is a Linear named 'head': timm's num_classes=0, no head, is not offered)" \
                if key == "num_classes" else ""
            raise ConfigError(f"{family} {key} must be >= 1, got {getattr(config, key)}{why}")
    if min(pair(patch)) < 1 or any(i < p for i, p in zip(pair(image), pair(patch))):
        raise ConfigError(f"{family} img_size {pair(image)} must be at least patch_size {pair(patch)}")
    if config.embed_dim % config.num_heads:
        raise ConfigError(f"{family} embed_dim {config.embed_dim} is not divisible by num_heads {config.num_heads}")
    if config.mlp_ratio <= 0 or int(config.embed_dim * config.mlp_ratio) < 1:
        raise ConfigError(f"{family} mlp_ratio must give a hidden width >= 1, got {config.mlp_ratio}")
    if config.norm_eps <= 0:
        raise ConfigError(f"{family} norm_eps must be > 0, got {config.norm_eps}")
    if config.global_pool not in GLOBAL_POOLS:
        raise ConfigError(f"{family} global_pool must be one of {GLOBAL_POOLS}, got {config.global_pool!r}")
    if config.global_pool == "token" and not config.class_token:
        raise ConfigError(f"{family} global_pool 'token' needs class_token=True (use global_pool='avg')")


@register_models(
    {
        "vit_base_patch16_224": {},
        "vit_base_patch16_224.dino": {},
        "vit_base_patch16_clip_224": {"pre_norm": True, "norm_eps": 1e-5},
    },
    mean_std={"vit_base_patch16_224": INCEPTION, "vit_base_patch16_224.dino": IMAGENET,
              "vit_base_patch16_clip_224": OPENAI_CLIP},
)
@dataclass(frozen=True)
class ViTConfig:
    img_size: int | tuple[int, int] = 224
    patch_size: int | tuple[int, int] = 16
    in_channels: int = 3
    num_classes: int = 1000  # timm's .dino default is 0 (no head); MedMNIST+ always passes one
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    class_token: bool = True
    pre_norm: bool = False  # CLIP: a LayerNorm `norm_pre` before the blocks
    norm_eps: float = 1e-6
    patch_bias: bool | None = None  # None: timm's default, no bias when pre_norm
    global_pool: str = "token"  # 'token': the class token; 'avg': the mean of the patch tokens
    fc_norm: bool | None = None  # None: timm's default, on for 'avg' (the final norm then moves after the pool)
    family: str = "vit"

    def validate(self) -> None:
        validate_common(self, "vit")


def grid_size(config) -> tuple[int, int]:
    """Patch rows and columns (timm's PatchEmbed.grid_size: a conv of stride patch floors)."""
    (h, w), (ph, pw) = pair(config.img_size), pair(config.patch_size)
    return h // ph, w // pw


def num_prefix_tokens(config) -> int:
    return 1 if config.class_token else 0


def num_tokens(config) -> int:
    """Rows of ``pos_embed``: the patches and the class token (197 for ViT-B/16 at 224)."""
    gh, gw = grid_size(config)
    return gh * gw + num_prefix_tokens(config)


def head_dim(config) -> int:
    return config.embed_dim // config.num_heads


def mlp_hidden(config) -> int:
    """timm's ``int(dim * mlp_ratio)`` (3072 for ViT-B, 2048 for EVA-02's 4 * 2 / 3)."""
    return int(config.embed_dim * config.mlp_ratio)


def has_patch_bias(config) -> bool:
    return (not config.pre_norm) if config.patch_bias is None else bool(config.patch_bias)


def uses_fc_norm(config) -> bool:
    """timm: ``fc_norm`` (after the pool) replaces ``norm`` (before it); by default for 'avg'."""
    return config.global_pool == "avg" if config.fc_norm is None else bool(config.fc_norm)
