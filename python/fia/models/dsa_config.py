"""Configurations of one DeepSeek Sparse Attention (DSA) layer: DeepSeek-V3.2 and GLM-5.

A DSA layer is MLA (multi-head latent attention, absorbed form) whose keys are restricted to the
top-k tokens a lightning indexer selects. Every size of the layer is a field of DSAConfig; the
two published models are DEEPSEEK_V32 and GLM5, and small_config() makes test-sized
configurations of the same shape (same ratios, kv_lora 512 and rope 64, which the fia operators
fix).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

__all__ = ["DSAConfig", "DEEPSEEK_V32", "GLM5", "small_config", "CONFIGS"]


@dataclass(frozen=True)
class DSAConfig:
    name: str
    hidden_size: int            # He
    num_heads: int              # N
    q_lora_rank: int            # Hcq
    kv_lora_rank: int           # Hckv (512 in both models, fixed by the operators)
    qk_nope_head_dim: int       # D
    qk_rope_head_dim: int       # Dr (64)
    v_head_dim: int
    index_n_heads: int
    index_head_dim: int         # 128
    index_topk: int
    rms_norm_eps: float         # input_layernorm, q_a_layernorm, kv_a_layernorm
    index_norm_eps: float = 1e-6  # indexer.k_norm (a LayerNorm with bias)
    rope_theta: float = 10000.0
    # YaRN (DeepSeek): active when rope_factor is set and max_seq_len > original_seq_len.
    rope_factor: Optional[float] = None
    original_seq_len: int = 4096
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float = 1.0          # rope_scaling.mscale_all_dim: the softmax scale's mscale**2
    max_seq_len: int = 163840
    # The indexer's RoPE layout on its first Dr dims: False = half split (NeoX), the layout
    # DeepSeek's fixed demo (2025-11) and the issue prescribe; True = interleaved pairs.
    indexer_rope_interleave: bool = False

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def yarn(self) -> bool:
        return self.rope_factor is not None and self.max_seq_len > self.original_seq_len

    @property
    def softmax_scale(self) -> float:
        """qk_head_dim**-0.5, times mscale**2 under YaRN (0.135234 for DeepSeek-V3.2)."""
        s = self.qk_head_dim ** -0.5
        if self.yarn:
            m = 0.1 * self.mscale * math.log(self.rope_factor) + 1.0
            s *= m * m
        return s

    @property
    def index_weight_scale(self) -> float:
        """The positive constant folded into the indexer head weights: n_heads**-0.5 *
        head_dim**-0.5 (it scales every score alike, so it never changes the top-k)."""
        return self.index_n_heads ** -0.5 * self.index_head_dim ** -0.5

    def replace(self, **kw) -> "DSAConfig":
        return dataclasses.replace(self, **kw)

    def check(self) -> "DSAConfig":
        if self.qk_rope_head_dim % 2 or self.qk_rope_head_dim > self.index_head_dim:
            raise ValueError(f"{self.name}: qk_rope_head_dim {self.qk_rope_head_dim} must be even "
                             f"and at most index_head_dim {self.index_head_dim}")
        for f in ("hidden_size", "num_heads", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
                  "v_head_dim", "index_n_heads", "index_head_dim", "index_topk"):
            if getattr(self, f) <= 0:
                raise ValueError(f"{self.name}: {f} must be positive, got {getattr(self, f)}")
        return self


# DeepSeek-V3.2 (config_671B_v3.2.json + the ModelArgs defaults of the official inference demo;
# HF config: rope_scaling yarn factor 40, original_max_position_embeddings 4096, beta_fast 32,
# beta_slow 1, mscale = mscale_all_dim = 1.0; rms_norm_eps 1e-6).
DEEPSEEK_V32 = DSAConfig(
    name="deepseek-v3.2", hidden_size=7168, num_heads=128, q_lora_rank=1536, kv_lora_rank=512,
    qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, index_n_heads=64,
    index_head_dim=128, index_topk=2048, rms_norm_eps=1e-6, rope_theta=10000.0,
    rope_factor=40.0, original_seq_len=4096, beta_fast=32.0, beta_slow=1.0, mscale=1.0,
    max_seq_len=163840).check()

# GLM-5 (HF GlmMoeDsaConfig defaults: hidden 6144, 64 heads, q_lora 2048, kv_lora 512, qk_nope
# 192, rope 64, v_head 256, indexer 32 x 128, top-2048, rms_norm_eps 1e-5; default RoPE, no
# YaRN; published config.json files give rope_theta 8e6).
GLM5 = DSAConfig(
    name="glm-5", hidden_size=6144, num_heads=64, q_lora_rank=2048, kv_lora_rank=512,
    qk_nope_head_dim=192, qk_rope_head_dim=64, v_head_dim=256, index_n_heads=32,
    index_head_dim=128, index_topk=2048, rms_norm_eps=1e-5, rope_theta=8.0e6,
    rope_factor=None, max_seq_len=202752).check()

CONFIGS = {"deepseek-v3.2": DEEPSEEK_V32, "glm-5": GLM5}


def small_config(base: DSAConfig, *, hidden_size: int = 256, num_heads: int = 4,
                 q_lora_rank: int = 96, index_n_heads: int = 4, index_topk: int = 16,
                 **kw) -> DSAConfig:
    """A test-sized configuration of the same shape as `base`: the head dims (qk_nope, rope,
    v_head, kv_lora 512, index_head_dim 128), norms and RoPE stay those of the model; the widths
    that only cost time (hidden, heads, q_lora, indexer heads, top-k) shrink."""
    return base.replace(name=base.name + "-small", hidden_size=hidden_size, num_heads=num_heads,
                        q_lora_rank=q_lora_rank, index_n_heads=index_n_heads,
                        index_topk=index_topk, **kw).check()
