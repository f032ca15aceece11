"""PyTorch references for the benchmarks, written from each method's official code: the loss
formulas (feature-space D x D covariances, as the official code computes them), the official
VICReg LARS, and the ResNet + projector models of the recipes. Benchmark-only: PyTorch is
never a dependency of jaxssl.
"""

from __future__ import annotations

import sys

try:
  import torch
except ImportError:  # pragma: no cover
  sys.exit("The benchmarks compare against PyTorch: pip install torch (the CPU build is "
           "enough).")

nn = torch.nn


# ---- the loss formulas --------------------------------------------------------------------

def _torch_offdiag(m):
  n = m.shape[0]
  return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def torch_vicreg(x, y, sim=25.0, std=25.0, cov=1.0):
  """facebookresearch/vicreg main_vicreg.py VICReg.forward, after the all-gather."""
  n, d = x.shape
  repr_loss = torch.nn.functional.mse_loss(x, y)
  x = x - x.mean(dim=0)
  y = y - y.mean(dim=0)
  std_x = torch.sqrt(x.var(dim=0) + 0.0001)
  std_y = torch.sqrt(y.var(dim=0) + 0.0001)
  std_loss = (torch.mean(torch.relu(1 - std_x)) / 2 + torch.mean(torch.relu(1 - std_y)) / 2)
  cov_x = (x.T @ x) / (n - 1)
  cov_y = (y.T @ y) / (n - 1)
  cov_loss = (_torch_offdiag(cov_x).pow_(2).sum().div(d)
              + _torch_offdiag(cov_y).pow_(2).sum().div(d))
  return sim * repr_loss + std * std_loss + cov * cov_loss


def torch_barlow(z1, z2, lambd=0.0051):
  """facebookresearch/barlowtwins main.py BarlowTwins.forward."""
  bn = lambda z: torch.nn.functional.batch_norm(z, None, None, training=True, eps=1e-5)
  c = bn(z1).T @ bn(z2) / z1.shape[0]
  on_diag = torch.diagonal(c).add_(-1).pow_(2).sum()
  off_diag = _torch_offdiag(c).pow_(2).sum()
  return on_diag + lambd * off_diag


def _torch_whiten(x):
  """htdt/self-supervised Whitening2d.forward (eps 0) for a (w, D) block."""
  xn = x - x.mean(0)
  f_cov = xn.T @ xn / (x.shape[0] - 1)
  eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
  inv_sqrt = torch.linalg.solve_triangular(torch.linalg.cholesky(f_cov), eye, upper=False)
  return xn @ inv_sqrt.T


def torch_wmse(h1, h2, w_size):
  """htdt/self-supervised W-MSE forward: whitened sub-batches, normalised MSE."""
  bs = h1.shape[0]
  perm = torch.randperm(bs, device=h1.device).view(-1, w_size)
  z1, z2 = torch.empty_like(h1), torch.empty_like(h2)
  for idx in perm:
    z1[idx], z2[idx] = _torch_whiten(h1[idx]), _torch_whiten(h2[idx])
  z1, z2 = torch.nn.functional.normalize(z1), torch.nn.functional.normalize(z2)
  return 2 - 2 * (z1 * z2).sum(dim=-1).mean()


class TorchCorInfoMax:
  """serdarozsoy/corinfomax-ssl CovarianceLoss (float64 state) + the invariance term."""

  def __init__(self, d, alpha=250.0, la=0.01, eps=1e-8, device="cpu"):
    f64 = {"dtype": torch.float64, "device": device}
    self.r = [torch.eye(d, **f64) for _ in range(2)]
    self.mu = [torch.zeros(d, **f64) for _ in range(2)]
    self.alpha, self.la, self.eps = alpha, la, eps * torch.eye(d, **f64)

  def __call__(self, z1, z2):
    z1, z2 = torch.nn.functional.normalize(z1), torch.nn.functional.normalize(z2)
    n, d = z1.shape
    logdets = []
    for i, z in enumerate((z1, z2)):
      mu = self.la * self.mu[i] + (1 - self.la) * z.mean(0)
      z_hat = z - mu
      r = self.la * self.r[i] + (1 - self.la) * (z_hat.T @ z_hat) / n
      logdets.append(torch.logdet(r + self.eps))
      self.r[i], self.mu[i] = r.detach(), mu.detach()
    cov_loss = -(logdets[0] + logdets[1]) / d
    return self.alpha * torch.nn.functional.mse_loss(z1, z2) + cov_loss


def torch_info_vicreg_logdet(z1, z2):
  """LogDet entropy in feature space: 0.5 logdet(I + C), C the D x D covariance."""
  def entropy(z):
    zc = z - z.mean(0)
    c = zc.T @ zc / (z.shape[0] - 1)
    return 0.5 * torch.logdet(torch.eye(z.shape[1], device=z.device) + c)
  return torch.nn.functional.mse_loss(z1, z2) - (entropy(z1) + entropy(z2)) / 2


# ---- the optimiser and the models -----------------------------------------------------------

class LARS(torch.optim.Optimizer):
  """facebookresearch/vicreg main_vicreg.py LARS, with exclude_bias_and_norm as both filters."""

  def __init__(self, params, lr, weight_decay=0.0, momentum=0.9, eta=0.001):
    super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta))

  @torch.no_grad()
  def step(self):
    for g in self.param_groups:
      for p in g["params"]:
        dp = p.grad
        if dp is None:
          continue
        if p.ndim != 1:  # exclude_bias_and_norm
          dp = dp.add(p, alpha=g["weight_decay"])
          param_norm, update_norm = torch.norm(p), torch.norm(dp)
          one = torch.ones_like(param_norm)
          q = torch.where(param_norm > 0.0,
                          torch.where(update_norm > 0, g["eta"] * param_norm / update_norm, one),
                          one)
          dp = dp.mul(q)
        state = self.state[p]
        if "mu" not in state:
          state["mu"] = torch.zeros_like(p)
        mu = state["mu"]
        mu.mul_(g["momentum"]).add_(dp)
        p.add_(mu, alpha=-g["lr"])


class _Basic(nn.Module):
  expansion = 1

  def __init__(self, cin, width, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.down = _shortcut(cin, width, stride)

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


class _Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, cin, width, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # stride here: "v1.5"
    self.bn2 = nn.BatchNorm2d(width)
    self.conv3 = nn.Conv2d(width, 4 * width, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(4 * width)
    self.down = _shortcut(cin, 4 * width, stride)

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = torch.relu(self.bn2(self.conv2(y)))
    return torch.relu(self.bn3(self.conv3(y)) + self.down(x))


def _shortcut(cin, cout, stride):
  if cin == cout and stride == 1:
    return nn.Identity()
  return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def resnet(depth: int, stem: str, width: int = 64) -> nn.Module:
  """torchvision's ResNet-18/50 (the same layers in the same order; written here to keep the
  benchmark free of torchvision's build pairing) without its classifier, so the pooled
  features come out; the CIFAR stem (3x3 conv, no max-pool) as solo-learn builds it."""
  block, stages = {18: (_Basic, (2, 2, 2, 2)), 50: (_Bottleneck, (3, 4, 6, 3))}[depth]
  if stem == "cifar":
    layers = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True)]
  else:
    layers = [nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(True),
              nn.MaxPool2d(3, 2, 1)]
  cin = width
  for stage, blocks in enumerate(stages):
    for index in range(blocks):
      layers.append(block(cin, width * 2**stage, 2 if stage > 0 and index == 0 else 1))
      cin = width * 2**stage * block.expansion
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
  return nn.Sequential(*layers)


def convnet(widths: list[int], convs_per_stage: int, channels: int) -> nn.Module:
  """jaxssl.models.convnet.ConvNet: stages of (3x3 conv, BatchNorm, ReLU) x
  ``convs_per_stage``, a 2x2 max-pool between stages, the global average pool at the end."""
  layers, cin = [], channels
  for stage, width in enumerate(widths):
    if stage:
      layers.append(nn.MaxPool2d(2))
    for _ in range(convs_per_stage):
      layers += [nn.Conv2d(cin, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                 nn.ReLU(True)]
      cin = width
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
  return nn.Sequential(*layers)


def projector(widths: list[int]) -> nn.Module:
  """facebookresearch/vicreg main_vicreg.py Projector: Linear-BN-ReLU blocks, a bias-free last
  Linear."""
  layers = []
  for i in range(len(widths) - 2):
    layers += [nn.Linear(widths[i], widths[i + 1]), nn.BatchNorm1d(widths[i + 1]),
               nn.ReLU(True)]
  layers.append(nn.Linear(widths[-2], widths[-1], bias=False))
  return nn.Sequential(*layers)


class _ViTBlock(nn.Module):
  """A pre-LayerNorm block as jaxssl.models.vit.Encoder1DBlock: fused qkv,
  ``scaled_dot_product_attention``, tanh GELU, LayerNorm eps 1e-6 (Flax's)."""

  def __init__(self, width: int, heads: int, mlp_dim: int):
    super().__init__()
    self.heads = heads
    self.ln1, self.ln2 = nn.LayerNorm(width, eps=1e-6), nn.LayerNorm(width, eps=1e-6)
    self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
    self.fc1, self.fc2 = nn.Linear(width, mlp_dim), nn.Linear(mlp_dim, width)

  def forward(self, x):
    b, t, d = x.shape
    q, k, v = self.qkv(self.ln1(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(
        2, 0, 3, 1, 4)
    y = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
    return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class ViT(nn.Module):
  """jaxssl.models.vit.ViT in PyTorch (learned position embedding, ``pool`` tok or gap)."""

  def __init__(self, *, width: int, depth: int, mlp_dim: int, heads: int, patch: int,
               channels: int, size: int, pool: str):
    super().__init__()
    tokens = (size // patch) ** 2 + (pool == "tok")
    self.pool = pool
    self.embed = nn.Conv2d(channels, width, patch, stride=patch)
    self.cls = nn.Parameter(torch.zeros(1, 1, width)) if pool == "tok" else None
    self.pos = nn.Parameter(torch.randn(1, tokens, width) / width**0.5)
    self.blocks = nn.Sequential(*[_ViTBlock(width, heads, mlp_dim) for _ in range(depth)])
    self.norm = nn.LayerNorm(width, eps=1e-6)

  def forward(self, x):
    x = self.embed(x).flatten(2).transpose(1, 2)
    if self.cls is not None:
      x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
    x = self.norm(self.blocks(x + self.pos))
    return x[:, 0] if self.pool == "tok" else x.mean(1)
