"""Low-level fused ops: autograd-aware functions with reference, cpp, cuda and triton implementations."""
from fastgan.ops.bias_act import bias_act, bias_act_reference  # noqa: F401
from fastgan.ops.clip_weights import clip_weights_, clip_weights_reference  # noqa: F401
from fastgan.ops.gan_loss import gan_loss, gan_loss_reference  # noqa: F401
from fastgan.ops.grad_norm_penalty import grad_norm_penalty, grad_norm_penalty_reference
from fastgan.ops.mixture_gan_loss import mixture_gan_loss, mixture_gan_loss_reference  # noqa: F401
from fastgan.ops.spectral_norm import spectral_norm, spectral_norm_batched, spectral_norm_reference  # noqa: F401
from fastgan.ops.interpolate import interpolate, interpolate_reference

__all__ = [
    "bias_act", "clip_weights_", "gan_loss", "grad_norm_penalty", "interpolate", "mixture_gan_loss", "spectral_norm",
    "spectral_norm_batched", "bias_act_reference", "clip_weights_reference", "gan_loss_reference",
    "grad_norm_penalty_reference", "interpolate_reference", "mixture_gan_loss_reference", "spectral_norm_reference",
]
