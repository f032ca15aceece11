"""The ViT backbone: parameter counts against the reference ViTs, big_vision's names, the
pooling and position-embedding choices, the fused-attention hook against Flax's own
attention, stochastic depth, and bfloat16 compute over float32 parameters."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.models import vit as vit_lib
from jaxssl.models.vit import SIZES, ViT

# timm's vit_{tiny,small,base,large}_patch16_224: class token, learned position embedding
# with a row for it, final norm, 1000-class head.
TIMM_PARAMS = {"Ti": 5_717_416, "S": 22_050_664, "B": 86_567_656, "L": 304_326_632}


def vit(size: str, **kwargs) -> ViT:
  width, depth, mlp_dim, heads = SIZES[size]
  return ViT(width=width, depth=depth, mlp_dim=mlp_dim, heads=heads, **kwargs)


class Classifier(nn.Module):
  backbone: nn.Module

  @nn.compact
  def __call__(self, x):
    return nn.Dense(1000, name="head")(self.backbone(x, train=False))


def param_shapes(module, image_shape, **kwargs):
  x = jnp.zeros((1, *image_shape))
  return jax.eval_shape(lambda: module.init(jax.random.key(0), x, **kwargs))["params"]


def count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("size", sorted(SIZES))
def test_parameter_counts_equal_the_reference_vits(size):
  params = param_shapes(Classifier(vit(size, patch=16)), (224, 224, 3))
  assert count(params) == TIMM_PARAMS[size]
  width, depth, mlp_dim, heads = SIZES[size]
  backbone = params["backbone"]
  assert backbone["pos_embedding"].shape == (1, 197, width)
  assert backbone["embedding"]["kernel"].shape == (16, 16, 3, width)
  assert len([k for k in backbone["Transformer"] if k.startswith("encoderblock_")]) == depth
  block = backbone["Transformer"]["encoderblock_0"]
  # big_vision's names and shapes, so its checkpoints map in.
  assert block["MultiHeadDotProductAttention_0"]["query"]["kernel"].shape == (
      width, heads, width // heads)
  assert block["MlpBlock_0"]["Dense_0"]["kernel"].shape == (width, mlp_dim)
  assert set(block) == {"LayerNorm_0", "MultiHeadDotProductAttention_0", "LayerNorm_1",
                        "MlpBlock_0"}


@pytest.mark.parametrize("pool,posemb,extra", [("tok", "learn", {"cls", "pos_embedding"}),
                                               ("gap", "learn", {"pos_embedding"}),
                                               ("tok", "sincos2d", {"cls"}),
                                               ("gap", "sincos2d", set())])
def test_pooling_and_position_embeddings(pool, posemb, extra):
  model = ViT(width=32, depth=2, mlp_dim=64, heads=2, patch=4, pool=pool, posemb=posemb)
  x = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
  variables = jax.jit(lambda x: model.init(jax.random.key(1), x, train=False))(x)
  assert set(variables["params"]) == {"embedding", "Transformer"} | extra
  if "pos_embedding" in extra:
    assert variables["params"]["pos_embedding"].shape == (1, 49 + (pool == "tok"), 32)
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert out.shape == (3, 32) and out.dtype == jnp.float32
  assert np.all(np.isfinite(out))


def test_sincos_position_embedding_is_moco_v3s():
  h, w, width = 3, 5, 16
  pe = np.asarray(vit_lib.posemb_sincos_2d(h, w, width))
  assert pe.shape == (h * w, width)
  omega = 1.0 / 10_000 ** (np.arange(4) / 3)
  for m, (y, x) in enumerate((y, x) for y in range(h) for x in range(w)):
    np.testing.assert_allclose(pe[m], np.concatenate([np.sin(x * omega), np.cos(x * omega),
                                                      np.sin(y * omega), np.cos(y * omega)]),
                               rtol=1e-6, atol=1e-6)


def test_attention_hook_equals_flaxs_attention():
  x = jax.random.normal(jax.random.key(0), (2, 10, 48))
  ours = nn.MultiHeadDotProductAttention(num_heads=4, attention_fn=vit_lib.attention)
  flax_default = nn.MultiHeadDotProductAttention(num_heads=4)
  variables = ours.init(jax.random.key(1), x, x)
  np.testing.assert_allclose(ours.apply(variables, x, x), flax_default.apply(variables, x, x),
                             rtol=1e-5, atol=1e-5)


def test_stochastic_depth_drops_whole_examples_and_keeps_the_mean():
  x = jnp.ones((4000, 3, 2))
  drop = vit_lib.DropPath(0.25)
  assert drop.apply({}, x, train=False) is x
  out = np.asarray(drop.apply({}, x, train=True, rngs={"dropout": jax.random.key(0)}))
  per_example = out.reshape(4000, -1)
  assert set(np.unique(per_example.min(1))) <= {np.float32(0), np.float32(1 / 0.75)}
  assert np.all(per_example.min(1) == per_example.max(1)), "one draw per example"
  assert abs(np.mean(per_example[:, 0] == 0) - 0.25) < 0.03
  model = ViT(width=32, depth=4, mlp_dim=64, heads=2, patch=7, drop_path=0.3)
  images = jax.random.uniform(jax.random.key(0), (4, 28, 28, 1))
  variables = jax.jit(lambda x: model.init(jax.random.key(1), x, train=False))(images)
  train = jax.jit(lambda key: model.apply(variables, images, train=True, rngs={"dropout": key}))
  assert not np.allclose(train(jax.random.key(2)), train(jax.random.key(3)))
  np.testing.assert_array_equal(train(jax.random.key(2)), train(jax.random.key(2)))


def test_bfloat16_computes_over_float32_parameters():
  images = jax.random.uniform(jax.random.key(0), (4, 32, 32, 3))
  f32 = ViT(width=64, depth=2, mlp_dim=128, heads=4, patch=8)
  bf16 = f32.clone(dtype=jnp.bfloat16)
  variables = jax.jit(lambda x: f32.init(jax.random.key(1), x, train=False))(images)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(
      jax.eval_shape(lambda: bf16.init(jax.random.key(1), images, train=False))))
  apply = lambda model: jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
  out = apply(bf16)
  assert out.dtype == jnp.float32  # the regularisers' statistics stay float32
  np.testing.assert_allclose(out, apply(f32), atol=0.1)
