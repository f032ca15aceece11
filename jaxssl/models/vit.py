"""Vision Transformer backbones (Dosovitskiy et al., 2021): patch embedding, pre-LayerNorm
encoder blocks, a class token or global average pooling, learned or 2-D sincos position
embeddings, optional stochastic depth. The output is the pooled, normalised token (``width``
features).

Sizes follow the standard table (``SIZES``: width, depth, MLP width, heads; Table 2 of
Zhai et al., 2022, as big_vision's ``decode_variant``); the patch size is a setting.
Attention runs through ``jax.nn.dot_product_attention``, which picks the fused (cuDNN) kernel
where the platform has one. Module and parameter names follow big_vision's ViT
(``embedding``, ``cls``, ``pos_embedding``, ``Transformer/encoderblock_<i>/...``,
``Transformer/encoder_norm``), so its published checkpoints map in; the one difference is the
learned position embedding with ``pool="tok"``: here it has a row for the class token too
(``(1, 1 + patches, width)``, as in timm and the original ViT), so big_vision's
``(1, patches, width)`` goes into rows ``1:`` with a zero row 0 (its class token has no
position embedding). With that, the parameter counts are timm's exactly
(``vit_small_patch16_224``: 22,050,664 with a 1000-class head).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# name -> (width, depth, mlp_dim, heads)
SIZES = {"Ti": (192, 12, 768, 3), "S": (384, 12, 1536, 6), "B": (768, 12, 3072, 12),
         "L": (1024, 24, 4096, 16)}
POOLS = ("tok", "gap")
POSEMBS = ("learn", "sincos2d")


def posemb_sincos_2d(h: int, w: int, width: int, temperature: float = 10_000.0) -> jax.Array:
  """The fixed 2-D sine-cosine position embedding of MoCo v3 (and big_vision): ``(h * w,
  width)``, a quarter of the channels each for sin/cos of x and y."""
  y, x = np.mgrid[:h, :w]
  omega = 1.0 / temperature ** (np.arange(width // 4) / max(width // 4 - 1, 1))
  y = np.einsum("m,d->md", y.flatten(), omega)
  x = np.einsum("m,d->md", x.flatten(), omega)
  return jnp.asarray(np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1),
                     jnp.float32)


def attention(query, key, value, bias=None, mask=None):
  """Flax's attention hook on ``jax.nn.dot_product_attention`` (``(B, T, heads, head_dim)``
  in and out): the cuDNN fused kernel on GPUs when the dtype and shapes allow, XLA's
  otherwise."""
  return jax.nn.dot_product_attention(query, key, value, bias=bias, mask=mask)


class DropPath(nn.Module):
  """Stochastic depth: the residual branch of each example dropped with probability ``rate``
  during training (and scaled by ``1 / (1 - rate)`` when kept). Reads the ``dropout`` rng."""
  rate: float

  @nn.compact
  def __call__(self, x, *, train: bool):
    if not train or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0],) + (1,) *
                                (x.ndim - 1))
    return jnp.where(mask, x / keep, 0).astype(x.dtype)


class MlpBlock(nn.Module):
  """``Dense(mlp_dim)``, GELU (tanh form, as big_vision trains with), ``Dense(width)``."""
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    inits = dict(kernel_init=nn.initializers.xavier_uniform(),
                 bias_init=nn.initializers.normal(stddev=1e-6), dtype=self.dtype)
    y = nn.gelu(nn.Dense(self.mlp_dim, **inits)(x))
    return nn.Dense(x.shape[-1], **inits)(y)


class Encoder1DBlock(nn.Module):
  """Pre-LayerNorm block: ``x + attn(LN(x))``, then ``x + mlp(LN(x))``, each branch under
  stochastic depth."""
  mlp_dim: int
  heads: int
  drop_path: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    y = nn.LayerNorm(dtype=self.dtype)(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.heads, kernel_init=nn.initializers.xavier_uniform(), dtype=self.dtype,
        attention_fn=attention)(y, y)
    x = x + DropPath(self.drop_path)(y, train=train)
    y = MlpBlock(self.mlp_dim, dtype=self.dtype)(nn.LayerNorm(dtype=self.dtype)(x))
    return x + DropPath(self.drop_path)(y, train=train)


class Encoder(nn.Module):
  """``depth`` blocks (stochastic depth rising linearly from 0 to ``drop_path`` over them, as
  in DeiT and DINO), then the final LayerNorm."""
  depth: int
  mlp_dim: int
  heads: int
  drop_path: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    rates = np.linspace(0.0, self.drop_path, self.depth)  # (depth 1: [0.0])
    for i in range(self.depth):
      x = Encoder1DBlock(self.mlp_dim, self.heads, float(rates[i]), dtype=self.dtype,
                         name=f"encoderblock_{i}")(x, train=train)
    return nn.LayerNorm(dtype=self.dtype, name="encoder_norm")(x)


class ViT(nn.Module):
  """A ViT trunk: ``patch`` x ``patch`` patches (the image side must be a multiple),
  ``width``-wide tokens through ``depth`` blocks of ``heads`` heads; ``pool``: ``"tok"`` (the
  class token) or ``"gap"`` (the mean of the patch tokens)."""
  width: int = 384
  depth: int = 12
  mlp_dim: int = 1536
  heads: int = 6
  patch: int = 16
  pool: str = "tok"
  posemb: str = "learn"
  drop_path: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool, views: int = 1):
    del views  # every op here is per image (LayerNorm, not BatchNorm): the views need nothing
    x = nn.Conv(self.width, (self.patch, self.patch), strides=(self.patch, self.patch),
                padding="VALID", dtype=self.dtype, name="embedding")(x.astype(self.dtype))
    n, h, w, c = x.shape
    x = x.reshape(n, h * w, c)
    extra = 1 if self.pool == "tok" else 0
    if self.posemb == "learn":
      posemb = self.param("pos_embedding", nn.initializers.normal(stddev=1 / np.sqrt(c)),
                          (1, extra + h * w, c))
    else:
      posemb = jnp.pad(posemb_sincos_2d(h, w, c), ((extra, 0), (0, 0)))[None]
    if extra:
      cls = self.param("cls", nn.initializers.zeros, (1, 1, c))
      x = jnp.concatenate([jnp.tile(cls.astype(x.dtype), (n, 1, 1)), x], axis=1)
    x = x + posemb.astype(x.dtype)
    x = Encoder(self.depth, self.mlp_dim, self.heads, self.drop_path, dtype=self.dtype,
                name="Transformer")(x, train=train)
    pooled = x[:, 0] if self.pool == "tok" else jnp.mean(x, axis=1)
    return pooled.astype(jnp.float32)
