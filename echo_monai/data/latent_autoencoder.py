"""One autoencoder interface for every latent model, and its per-frame adapter for MONAI's 2D ``AutoencoderKL``.

Latent diffusion (Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models", CVPR 2022) meets
its autoencoder through a handful of calls; :class:`LatentAutoencoder` names them once::

    z                  = ae.encode(x)                          posterior mean, deterministic
    z_mu, z_sigma      = ae.encode_posterior(x)                Gaussian posterior q(z | x)
    x_hat              = ae.decode(z, **ae.decoder_condition(x))
    x_hat, z_mu, z_sigma = ae(x)                               the adversarial recipe's contract (MONAI AutoencoderKL)

Plain autoencoders have no decoder conditions (``decoder_condition(x) == {}``); LDDM's video autoencoder
(:class:`~echo_monai.networks.nets.video_autoencoder.FirstFrameVideoAutoencoder`) decodes from the latent *and* the
first frame. Folding video frames into a 2D autoencoder is an option of the adapter (:class:`FramewiseAutoencoder`),
not an assumption of the interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from echo_monai.data.latents import framewise

__all__ = ["FramewiseAutoencoder", "LatentAutoencoder", "as_latent_autoencoder"]


class LatentAutoencoder(nn.Module, ABC):
    """Interface of every autoencoder of a latent model: a Gaussian posterior ``q(z | x)`` and a (conditioned) decoder.

    Subclasses implement :meth:`encode_posterior` and :meth:`decode`, set ``latent_channels``, and, when the decoder
    needs more than the latent, override :meth:`decoder_condition` and ``decoder_condition_keys``.

    ``forward`` follows MONAI's ``AutoencoderKL.forward`` (Rombach et al., CVPR 2022): it returns
    ``(reconstruction, z_mu, z_sigma)``. In training mode ``z`` is drawn with the reparameterisation trick
    ``z = z_mu + eps * z_sigma``, ``eps ~ N(0, I)``; in eval mode ``z = z_mu``, so validation is deterministic.

    Example:
        >>> ae = as_latent_autoencoder(AutoencoderKL(spatial_dims=2, channels=(8, 16), ...))
        >>> z = ae.encode(video)                                      # (B, C', T, h, w)
        >>> recon = ae.decode(z, **ae.decoder_condition(video))       # (B, C, T, H, W)
    """

    #: names of the keyword arguments :meth:`decode` needs beside the latent (``()`` for plain autoencoders).
    decoder_condition_keys: tuple[str, ...] = ()
    #: channels of the latent ``z``.
    latent_channels: int

    @abstractmethod
    def encode_posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation of ``q(z | x)``.

        Args:
            x: the input (its layout is the subclass's: images ``(B, C, H, W)`` or videos ``(B, C, T, H, W)``).

        Returns:
            ``(z_mu, z_sigma)``, both ``(B, latent_channels, ...)``.
        """

    @abstractmethod
    def decode(self, z: torch.Tensor, **condition: torch.Tensor) -> torch.Tensor:
        """Reconstruct the input from a latent and the decoder conditions.

        Args:
            z: latent ``(B, latent_channels, ...)``.
            condition: the tensors named in ``decoder_condition_keys``.

        Returns:
            the reconstruction, in the layout of the input.
        """

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic encoding: the posterior mean ``z_mu`` (what latent caches and samplers store).

        Args:
            x: the input, as for :meth:`encode_posterior`.

        Returns:
            ``z_mu`` ``(B, latent_channels, ...)``.
        """
        return self.encode_posterior(x)[0]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """Deterministic reconstruction (posterior mean, decoder conditions from ``x``), in batches on the
        autoencoder's device, returned on ``x``'s device.

        Args:
            x: the inputs ``(N, ...)``.
            batch_size: inputs per encoder / decoder call.

        Returns:
            the reconstructions, shaped like the decoder's output for ``x``.
        """
        device = next(self.parameters()).device
        parts = []
        for chunk in torch.split(x, max(1, int(batch_size))):
            chunk = chunk.to(device)
            parts.append(self.decode(self.encode(chunk), **self.decoder_condition(chunk)).to(x.device))
        return torch.cat(parts)

    def decoder_condition(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The decoder conditions derived from an input (``{}`` for plain autoencoders).

        Args:
            x: the input whose reconstruction the conditions serve.

        Returns:
            a dict with exactly the keys ``decoder_condition_keys``.
        """
        return {}

    def sampling(self, z_mu: torch.Tensor, z_sigma: torch.Tensor) -> torch.Tensor:
        """Reparameterised sample ``z = z_mu + eps * z_sigma`` with ``eps ~ N(0, I)``.

        Args:
            z_mu: posterior mean ``(B, latent_channels, ...)``.
            z_sigma: posterior standard deviation, same shape.

        Returns:
            ``z``, same shape.
        """
        return z_mu + torch.randn_like(z_sigma) * z_sigma

    def forward(self, x: torch.Tensor, **condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, sample (training) or take the mean (eval), decode.

        Args:
            x: the input.
            condition: decoder conditions; those not given are derived from ``x`` by :meth:`decoder_condition`.

        Returns:
            ``(reconstruction, z_mu, z_sigma)``.
        """
        z_mu, z_sigma = self.encode_posterior(x)
        z = self.sampling(z_mu, z_sigma) if self.training else z_mu
        reconstruction = self.decode(z, **{**self.decoder_condition(x), **condition})
        return reconstruction, z_mu, z_sigma


def _check_autoencoder(module: Any, owner: str) -> None:
    missing = [name for name in ("encode", "decode") if not callable(getattr(module, name, None))]
    if missing:
        raise TypeError(
            f"{owner}: expected an autoencoder with encode() and decode() (e.g. MONAI's AutoencoderKL), got "
            f"{type(module).__name__}, which lacks {' and '.join(f'{name}()' for name in missing)}."
        )


class FramewiseAutoencoder(LatentAutoencoder):
    """:class:`LatentAutoencoder` over a 2D autoencoder, applied frame by frame to videos.

    Images ``(B, C, H, W)`` pass straight to the wrapped autoencoder. Videos ``(B, C, T, H, W)`` are folded into
    ``B*T`` frames (``fold_frames=True``), encoded/decoded in chunks of ``frame_chunk`` frames and unfolded back, so
    the latent of a video is ``(B, C', T, h, w)`` with ``(C', h, w)`` the 2D latent of one frame. This is how the
    latent-diffusion echo models (Rombach et al., CVPR 2022; Reynaud et al., "EchoNet-Synthetic", MICCAI 2024) use
    an image autoencoder on videos.

    Args:
        autoencoder: a MONAI 2D ``AutoencoderKL`` (kept as ``self.autoencoder``), or any module whose ``encode``
            returns ``(z_mu, z_sigma)`` or ``z_mu`` alone (a point posterior: ``z_sigma`` is zeros, so do not train
            it with a KL term), with ``decode`` and optionally ``sampling``.
        fold_frames: fold videos into frames; False accepts images only.
        frame_chunk: frames per autoencoder call, to bound memory; None for all frames at once.
        latent_channels: channels of the latent; None reads ``autoencoder.latent_channels``.

    Example:
        >>> ae = FramewiseAutoencoder(AutoencoderKL(spatial_dims=2, channels=(8, 16), latent_channels=4, ...))
        >>> ae.encode(torch.randn(2, 1, 8, 32, 32)).shape            # (B, C', T, h, w)
        torch.Size([2, 4, 8, 16, 16])
    """

    def __init__(
        self,
        autoencoder: nn.Module,
        fold_frames: bool = True,
        frame_chunk: int | None = None,
        latent_channels: int | None = None,
    ) -> None:
        super().__init__()
        _check_autoencoder(autoencoder, "FramewiseAutoencoder")
        if frame_chunk is not None and (isinstance(frame_chunk, bool) or not isinstance(frame_chunk, int)):
            raise ValueError(f"FramewiseAutoencoder: frame_chunk must be a positive int or None, got {frame_chunk!r}.")
        if frame_chunk is not None and frame_chunk < 1:
            raise ValueError(f"FramewiseAutoencoder: frame_chunk must be a positive int or None, got {frame_chunk}.")
        latent_channels = getattr(autoencoder, "latent_channels", None) if latent_channels is None else latent_channels
        if not isinstance(latent_channels, int) or isinstance(latent_channels, bool) or latent_channels < 1:
            raise ValueError(
                f"FramewiseAutoencoder: latent_channels must be a positive int (given, or read from "
                f"{type(autoencoder).__name__}.latent_channels), got {latent_channels!r}."
            )
        self.autoencoder = autoencoder
        self.fold_frames = bool(fold_frames)
        self.frame_chunk = frame_chunk
        self.latent_channels = latent_channels

    def _check_input(self, x: torch.Tensor, what: str) -> None:
        if x.ndim == 5 and not self.fold_frames:
            raise ValueError(
                f"FramewiseAutoencoder: got a video {what} of shape {tuple(x.shape)} but fold_frames=False; expected "
                f"images (B, C, H, W), or set fold_frames=True to apply the 2D autoencoder frame by frame."
            )
        if x.ndim not in (4, 5):
            raise ValueError(
                f"FramewiseAutoencoder: expected {what} (B, C, H, W) or (B, C, T, H, W), got shape {tuple(x.shape)}."
            )

    def _posterior_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` → ``z_mu`` and ``z_sigma`` stacked on channels ``(N, 2 C', h, w)``, for ``framewise``."""
        out = self.autoencoder.encode(frames)
        if isinstance(out, (tuple, list)):
            z_mu, z_sigma = out[0], out[1]
        else:
            z_mu, z_sigma = out, torch.zeros_like(out)
        return torch.cat([z_mu, z_sigma], dim=1)

    def encode_posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior of images ``(B, C, H, W)`` or, frame by frame, of videos ``(B, C, T, H, W)``.

        Args:
            x: images ``(B, C, H, W)`` or videos ``(B, C, T, H, W)``.

        Returns:
            ``(z_mu, z_sigma)``, each ``(B, C', h, w)`` or ``(B, C', T, h, w)``.
        """
        self._check_input(x, "input")
        z_mu, z_sigma = framewise(self._posterior_frames, x, self.frame_chunk).chunk(2, dim=1)
        return z_mu, z_sigma

    def decode(self, z: torch.Tensor, **condition: torch.Tensor) -> torch.Tensor:
        """Decode latents ``(B, C', h, w)`` or, frame by frame, ``(B, C', T, h, w)``.

        Args:
            z: latent images ``(B, C', h, w)`` or latent videos ``(B, C', T, h, w)``.
            condition: must be empty (a plain autoencoder has no decoder conditions).

        Returns:
            images ``(B, C, H, W)`` or videos ``(B, C, T, H, W)``.
        """
        if condition:
            raise ValueError(
                f"FramewiseAutoencoder: the decoder takes no conditions (decoder_condition_keys is ()), got "
                f"{sorted(condition)}."
            )
        self._check_input(z, "latent")
        return framewise(self.autoencoder.decode, z, self.frame_chunk)

    def sampling(self, z_mu: torch.Tensor, z_sigma: torch.Tensor) -> torch.Tensor:
        """The wrapped autoencoder's ``sampling`` when it has one, else ``z_mu + eps * z_sigma``.

        Args:
            z_mu: posterior mean.
            z_sigma: posterior standard deviation, same shape.

        Returns:
            ``z``, same shape.
        """
        sample = getattr(self.autoencoder, "sampling", None)
        return sample(z_mu, z_sigma) if callable(sample) else super().sampling(z_mu, z_sigma)


def as_latent_autoencoder(
    module: nn.Module, fold_frames: bool = True, frame_chunk: int | None = None
) -> LatentAutoencoder:
    """The :class:`LatentAutoencoder` view of an autoencoder.

    Args:
        module: a :class:`LatentAutoencoder` (returned as is) or a 2D autoencoder such as MONAI's ``AutoencoderKL``
            (wrapped in a :class:`FramewiseAutoencoder`).
        fold_frames: for a wrapped module, apply it frame by frame to videos.
        frame_chunk: for a wrapped module, frames per call (None for all).

    Returns:
        ``module`` itself or a :class:`FramewiseAutoencoder` around it.

    Raises:
        TypeError: ``module`` has no ``encode``/``decode``.
    """
    if isinstance(module, LatentAutoencoder):
        return module
    _check_autoencoder(module, "as_latent_autoencoder")
    return FramewiseAutoencoder(module, fold_frames=fold_frames, frame_chunk=frame_chunk)
