"""Low-level fused ops: autograd-aware functions with reference, cpp, cuda and triton implementations."""
from fastgan.ops.bias_act import bias_act, bias_act_reference  # noqa: F401
from fastgan.ops.clip_weights import clip_weights_, clip_weights_reference  # noqa: F401
from fastgan.ops.gan_loss import gan_loss, gan_loss_reference  # noqa: F401
from fastgan.ops.grad_norm_penalty import grad_norm_penalty, grad_norm_penalty_reference
from fastgan.ops.mixture_gan_loss import mixture_gan_loss, mixture_gan_loss_reference  # noqa: F401
from fastgan.ops.spectral_norm import spectral_norm, spectral_norm_batched, spectral_norm_reference  # noqa: F401
from fastgan.ops.interpolate import interpolate, interpolate_reference

__all__ = ["grad_norm_penalty", "grad_norm_penalty_reference", "interpolate", "interpolate_reference"]
