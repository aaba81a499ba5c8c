"""Adversarial KL-autoencoder recipe on MONAI's stock ``AdversarialTrainer`` (Rombach et al., CVPR 2022).

The generator is MONAI's ``AutoencoderKL``, the discriminator MONAI's ``PatchDiscriminator`` (or
``MultiScalePatchDiscriminator``). One ``AdversarialTrainer`` iteration calls, in this order::

    inputs, targets = prepare_batch(batch)                       AutoencoderPrepareBatch: frames (N, C, H, W) twice
    fakes  = g_inferer(inputs, g_network)                        AutoencoderKLInferer: recon; keeps z_mu, z_sigma
    logits = d_inferer(fakes, d_network)                         SimpleInferer: PatchDiscriminator outputs
    recon_loss = recon_loss_function(fakes, targets).mean()      AutoencoderKLLoss: L1 + kl_weight KL (+ perceptual)
    gen_loss   = g_loss_function(logits).mean()                  PatchGeneratorLoss: adv_weight LSGAN, after warm-up
    (recon_loss + gen_loss).backward(); g_optimizer.step()
    d_loss = d_loss_function(real_logits, fake_logits).mean()   PatchDiscriminatorLoss, after warm-up
    d_loss.backward(); d_optimizer.step()

So the generator objective ``L_G = |x - x_hat|_1 + w_kl KL + w_p P(x_hat, x) + w_adv [adversarial after warm-up]``
is split by MONAI's API into ``recon_loss_function`` (sees the reconstruction) and ``g_loss_function`` (sees only the
discriminator logits). ``AutoencoderKL.forward`` returns ``(recon, z_mu, z_sigma)`` but the trainer passes the
generator output straight to the discriminator, so :class:`AutoencoderKLInferer` returns the reconstruction and keeps
the posterior for :class:`AutoencoderKLLoss`, which reads it from the inferer.

KL term (closed form against the standard normal prior, summed over latent elements, averaged over the batch, as
in MONAI's generative tutorials)::

    KL = mean_b 0.5 * sum_{c,h,w} (mu^2 + sigma^2 - log sigma^2 - 1)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines import AdversarialTrainer
from monai.inferers import Inferer
from monai.losses import PatchAdversarialLoss

from echo_monai.engines.stage import attach_stage_handlers
from echo_monai.engines.utils import rank_and_world_size

__all__ = [
    "AutoencoderKLInferer",
    "AutoencoderKLLoss",
    "AutoencoderPrepareBatch",
    "PatchDiscriminatorLoss",
    "PatchGeneratorLoss",
    "kl_divergence",
    "make_autoencoder_trainer",
]


def kl_divergence(z_mu: torch.Tensor, z_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) summed over all non-batch elements, averaged over the batch.

    Args:
        z_mu: posterior mean ``(N, C, h, w)``.
        z_sigma: posterior standard deviation, same shape.

    Returns:
        a scalar tensor.
    """
    dims = list(range(1, z_mu.ndim))
    per_sample = 0.5 * torch.sum(z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2)) - 1.0, dim=dims)
    return per_sample.mean()


def _frames(x: torch.Tensor, owner: str) -> torch.Tensor:
    """Images ``(B, C, H, W)`` pass; videos ``(B, C, T, H, W)`` fold to frames ``(B*T, C, H, W)``."""
    if x.ndim == 4:
        return x
    if x.ndim == 5:
        b, c, t, h, w = x.shape
        return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    raise ValueError(f"{owner}: expected images (B, C, H, W) or videos (B, C, T, H, W), got {tuple(x.shape)}.")


class AutoencoderPrepareBatch:
    """``PrepareBatch`` for autoencoder training: the images are both input and target.

    Videos ``(B, C, T, H, W)`` are folded to frames ``(B*T, C, H, W)`` so a 2D ``AutoencoderKL`` trains on video
    frames; images ``(B, C, H, W)`` pass unchanged.

    Args:
        image_key: batch key of the images or videos (a plain tensor batch is used as is).
        fold_frames: fold videos into frames (False keeps ``(B, C, T, H, W)`` for a video autoencoder).

    Example:
        >>> prep = AutoencoderPrepareBatch("video")
        >>> inputs, targets = prep({"video": torch.zeros(2, 1, 8, 16, 16)})   # (16, 1, 16, 16) each
    """

    def __init__(self, image_key: str = "image", fold_frames: bool = True) -> None:
        if not isinstance(image_key, str) or not image_key:
            raise ValueError(f"AutoencoderPrepareBatch: image_key must be a non-empty string, got {image_key!r}.")
        self.image_key = image_key
        self.fold_frames = bool(fold_frames)

    def __call__(
        self, batchdata: Any, device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(batchdata, Mapping):
            if self.image_key not in batchdata:
                raise KeyError(
                    f"AutoencoderPrepareBatch: batch key '{self.image_key}' is missing; the batch has "
                    f"{sorted(batchdata)}."
                )
            images = torch.as_tensor(batchdata[self.image_key])
        elif isinstance(batchdata, torch.Tensor):
            images = batchdata
        else:
            raise TypeError(
                f"AutoencoderPrepareBatch: expected a dict batch or a tensor, got {type(batchdata).__name__}."
            )
        if self.fold_frames or images.ndim != 5:
            images = _frames(images, "AutoencoderPrepareBatch")
        images = images.to(device, non_blocking=non_blocking).float()
        return images, images


class AutoencoderKLInferer(Inferer):
    """Generator inferer: run ``AutoencoderKL``, return the reconstruction, keep ``z_mu``/``z_sigma`` for the loss.

    ``AdversarialTrainer`` feeds the generator output to the discriminator, so it must be a tensor; the posterior
    of the last call is kept in ``self.z_mu``/``self.z_sigma``, where :class:`AutoencoderKLLoss` reads it.

    Example:
        >>> inferer = AutoencoderKLInferer()
        >>> recon = inferer(frames, autoencoder)
        >>> kl = kl_divergence(inferer.z_mu, inferer.z_sigma)
    """

    def __init__(self) -> None:
        super().__init__()
        self.z_mu: torch.Tensor | None = None
        self.z_sigma: torch.Tensor | None = None

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        out = network(inputs, *args, **kwargs)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            raise TypeError(
                f"AutoencoderKLInferer: the network must return (reconstruction, z_mu, z_sigma) like MONAI's "
                f"AutoencoderKL, got {type(out).__name__}."
            )
        reconstruction, self.z_mu, self.z_sigma = out
        return reconstruction


class AutoencoderKLLoss:
    """Reconstruction side of the generator loss: ``L1 + kl_weight * KL + perceptual_weight * perceptual``.

    Used as ``AdversarialTrainer(recon_loss_function=...)``; the posterior comes from the trainer's
    :class:`AutoencoderKLInferer`. The last values of each term are kept in ``self.terms`` (floats) for logging.

    Args:
        inferer: the trainer's ``g_inferer``.
        kl_weight: weight of the KL term (1e-6 in MONAI's tutorials and Stable Diffusion's VAE).
        perceptual: a differentiable callable ``(reconstruction, target) -> distance`` (scalar or ``(N,)``),
            built from a locally supplied network; None (default) for no perceptual term. Nothing is downloaded.
        perceptual_weight: weight of the perceptual term.

    Example:
        >>> inferer = AutoencoderKLInferer()
        >>> recon_loss = AutoencoderKLLoss(inferer, kl_weight=1e-6)
        >>> AdversarialTrainer(..., g_inferer=inferer, recon_loss_function=recon_loss)
    """

    def __init__(
        self,
        inferer: AutoencoderKLInferer,
        kl_weight: float = 1e-6,
        perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        perceptual_weight: float = 0.0,
    ) -> None:
        if not isinstance(inferer, AutoencoderKLInferer):
            raise TypeError(
                f"AutoencoderKLLoss: inferer must be an AutoencoderKLInferer, got {type(inferer).__name__}."
            )
        if kl_weight < 0:
            raise ValueError(f"AutoencoderKLLoss: kl_weight must be >= 0, got {kl_weight}.")
        if perceptual_weight < 0:
            raise ValueError(f"AutoencoderKLLoss: perceptual_weight must be >= 0, got {perceptual_weight}.")
        if perceptual_weight > 0 and perceptual is None:
            raise ValueError("AutoencoderKLLoss: perceptual_weight > 0 needs a perceptual callable.")
        self.inferer = inferer
        self.kl_weight = float(kl_weight)
        self.perceptual = perceptual
        self.perceptual_weight = float(perceptual_weight)
        self.terms: dict[str, float] = {}

    def __call__(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.inferer.z_mu is None or self.inferer.z_sigma is None:
            raise RuntimeError(
                "AutoencoderKLLoss: no posterior yet; the trainer's g_inferer must be the AutoencoderKLInferer given "
                "to this loss."
            )
        l1 = torch.mean(torch.abs(reconstruction.float() - target.float()))
        kl = kl_divergence(self.inferer.z_mu.float(), self.inferer.z_sigma.float())
        loss = l1 + self.kl_weight * kl
        self.terms = {"l1": float(l1.detach()), "kl": float(kl.detach())}
        if self.perceptual is not None and self.perceptual_weight > 0:
            distance = torch.as_tensor(self.perceptual(reconstruction.float(), target.float()))
            if reconstruction.requires_grad and not distance.requires_grad:
                raise RuntimeError(
                    f"AutoencoderKLLoss: the perceptual callable {type(self.perceptual).__name__} returned no "
                    "gradient; a training loss needs a differentiable callable (PerceptualDistance runs under no_grad)."
                )
            distance = distance.to(loss.device).float().mean()
            loss = loss + self.perceptual_weight * distance
            self.terms["perceptual"] = float(distance.detach())
        return loss


def _logits(output: Any) -> torch.Tensor | list[torch.Tensor]:
    """Discriminator logits: the last output of ``PatchDiscriminator`` (a list of features), the per-scale
    outputs of ``MultiScalePatchDiscriminator`` (``(outputs, features)``), or a plain tensor."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple) and len(output) == 2 and isinstance(output[0], list):
        return list(output[0])
    if isinstance(output, (list, tuple)) and len(output) > 0:
        return output[-1]
    raise TypeError(f"patch discriminator output must be a tensor or a list of tensors, got {type(output).__name__}.")


class _AdversarialTerm:
    """Weight, criterion and warm-up shared by the generator and discriminator adversarial losses.

    The adversarial terms are off (zero) for the first ``adv_start_iteration`` iterations. Attached to the trainer
    (``attach(engine)``, or listed in ``train_handlers``) the count is ``engine.state.iteration``, which survives a
    resume from a checkpoint; unattached, the loss counts its own calls.
    """

    def __init__(self, adv_weight: float, adv_start_iteration: int, criterion: str) -> None:
        name = type(self).__name__
        if adv_weight < 0:
            raise ValueError(f"{name}: adv_weight must be >= 0, got {adv_weight}.")
        if adv_start_iteration < 0:
            raise ValueError(f"{name}: adv_start_iteration must be >= 0, got {adv_start_iteration}.")
        self.adv_weight = float(adv_weight)
        self.adv_start_iteration = int(adv_start_iteration)
        self.adversarial = PatchAdversarialLoss(criterion=criterion)
        self.iteration = 0
        self._engine: Engine | None = None

    def attach(self, engine: Engine) -> None:
        self._engine = engine
        engine.add_event_handler(Events.ITERATION_STARTED, self._on_iteration)

    def _on_iteration(self, engine: Engine) -> None:
        self.iteration = int(engine.state.iteration)

    def _step(self) -> bool:
        """Advance the own counter when unattached; True when the adversarial term is active this iteration."""
        if self._engine is None:
            self.iteration += 1
        return self.adv_weight > 0 and self.iteration > self.adv_start_iteration


class PatchGeneratorLoss(_AdversarialTerm):
    """Generator side of the patch adversarial loss (``g_loss_function``): ``adv_weight * LSGAN(D(x_hat), real)``.

    Args:
        adv_weight: weight of the adversarial term (0.01 in MONAI's tutorials).
        adv_start_iteration: warm-up iterations trained on reconstruction + KL only.
        criterion: ``PatchAdversarialLoss`` criterion (``least_squares``, ``hinge``, ``bce``).

    Example:
        >>> g_loss = PatchGeneratorLoss(adv_weight=0.01, adv_start_iteration=1000)
        >>> trainer = AdversarialTrainer(..., g_loss_function=g_loss, train_handlers=[g_loss])
    """

    def __init__(self, adv_weight: float = 0.01, adv_start_iteration: int = 0, criterion: str = "least_squares"):
        super().__init__(adv_weight, adv_start_iteration, criterion)

    def __call__(self, fake_logits: Any) -> torch.Tensor:
        logits = _logits(fake_logits)
        if not self._step():
            device = logits.device if isinstance(logits, torch.Tensor) else logits[0].device
            return torch.zeros((), device=device)
        return self.adv_weight * self.adversarial(logits, target_is_real=True, for_discriminator=False)


class PatchDiscriminatorLoss(_AdversarialTerm):
    """Discriminator loss (``d_loss_function``): ``adv_weight * (LSGAN(D(x), real) + LSGAN(D(x_hat), fake)) / 2``.

    During the warm-up it returns zero (still attached to the graph, so ``backward`` runs and the discriminator is
    left unchanged by the step).

    Args:
        adv_weight: weight of the discriminator loss (the generator's ``adv_weight`` in MONAI's tutorials).
        adv_start_iteration: warm-up iterations without discriminator training.
        criterion: ``PatchAdversarialLoss`` criterion.

    Example:
        >>> d_loss = PatchDiscriminatorLoss(adv_weight=0.01, adv_start_iteration=1000)
        >>> trainer = AdversarialTrainer(..., d_loss_function=d_loss, train_handlers=[d_loss])
    """

    def __init__(self, adv_weight: float = 0.01, adv_start_iteration: int = 0, criterion: str = "least_squares"):
        super().__init__(adv_weight, adv_start_iteration, criterion)

    def __call__(self, real_logits: Any, fake_logits: Any) -> torch.Tensor:
        real, fake = _logits(real_logits), _logits(fake_logits)
        if not self._step():
            tensors = [real] if isinstance(real, torch.Tensor) else list(real)
            return sum(t.sum() for t in tensors) * 0.0
        loss_real = self.adversarial(real, target_is_real=True, for_discriminator=True)
        loss_fake = self.adversarial(fake, target_is_real=False, for_discriminator=True)
        return self.adv_weight * 0.5 * (loss_real + loss_fake)


def make_autoencoder_trainer(
    autoencoder: torch.nn.Module,
    discriminator: torch.nn.Module,
    train_data_loader: Any,
    max_epochs: int,
    device: str | torch.device = "cpu",
    image_key: str = "image",
    g_lr: float = 1e-4,
    d_lr: float = 5e-4,
    kl_weight: float = 1e-6,
    adv_weight: float = 0.01,
    adv_start_iteration: int = 0,
    criterion: str = "least_squares",
    perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    perceptual_weight: float = 0.0,
    train_handlers: Sequence[Any] | None = None,
    fold_frames: bool = True,
    ckpt_dir: str | os.PathLike | None = None,
    prefix: str = "vae",
    final_filename: str = "autoencoder.pt",
    save_interval: int = 500,
    n_saved: int | None = 2,
    resume: bool = True,
    log_dir: str | os.PathLike | None = None,
    progress: bool = True,
    rank: int | None = None,
    **trainer_kwargs: Any,
) -> AdversarialTrainer:
    """Build MONAI's ``AdversarialTrainer`` for an ``AutoencoderKL`` + ``PatchDiscriminator`` (Adam optimisers).

    A bundle wires it with ``_target_: echo_monai.engines.make_autoencoder_trainer``; every piece is also public,
    so a config can instead declare ``AdversarialTrainer`` itself with ``AutoencoderPrepareBatch``,
    ``AutoencoderKLInferer`` (``g_inferer``), ``AutoencoderKLLoss`` (``recon_loss_function``),
    ``PatchGeneratorLoss`` / ``PatchDiscriminatorLoss`` (``g_loss_function`` / ``d_loss_function``, and both in
    ``train_handlers`` so the warm-up follows the trainer's iteration).

    Args:
        autoencoder: the generator (MONAI ``AutoencoderKL``), already on ``device``.
        discriminator: a ``PatchDiscriminator`` / ``MultiScalePatchDiscriminator``, already on ``device``.
        train_data_loader: batches of dicts holding ``image_key``.
        max_epochs: epochs to train.
        device: training device.
        image_key: batch key of the images ``(B, C, H, W)`` or videos ``(B, C, T, H, W)``.
        g_lr: Adam learning rate of the autoencoder.
        d_lr: Adam learning rate of the discriminator.
        kl_weight: weight of the KL term.
        adv_weight: weight of the adversarial terms.
        adv_start_iteration: warm-up iterations without adversarial terms.
        criterion: ``PatchAdversarialLoss`` criterion.
        perceptual: optional differentiable perceptual callable from a local network.
        perceptual_weight: its weight.
        train_handlers: extra Ignite handlers.
        fold_frames: fold videos into frames for a 2D autoencoder (False for a video autoencoder such as
            :class:`echo_monai.networks.nets.FirstFrameVideoAutoencoder`, with a 3D discriminator).
        ckpt_dir: with a folder, the stage's checkpoints, final ``final_filename`` (the autoencoder alone), resume
            and logs are attached by :func:`echo_monai.engines.attach_stage_handlers` (rank 0 saves and logs);
            None attaches none of them.
        prefix: checkpoint file prefix.
        final_filename: the autoencoder weights file later stages load.
        save_interval: iterations between resumable checkpoints.
        n_saved: resumable checkpoints kept.
        resume: continue from the newest checkpoint of this stage.
        log_dir: TensorBoard folder of the loss terms (rank 0), or None.
        progress: show a progress bar.
        rank: this process's rank; default from ``torch.distributed``.
        trainer_kwargs: passed to ``AdversarialTrainer`` (``decollate`` defaults to False: nothing to post-process).

    Returns:
        the trainer; its ``g_inferer`` exposes the posterior, ``state.recon_loss_function.terms`` the loss terms.
        Its ``state_dict()`` holds only the iteration / epoch counters (weights-only loadable); the checkpoints
        hold the networks and both optimisers as their own entries (``autoencoder``, ``discriminator``,
        ``g_optimizer``, ``d_optimizer``, ``trainer``).
    """
    if max_epochs < 1:
        raise ValueError(f"make_autoencoder_trainer: max_epochs must be >= 1, got {max_epochs}.")
    inferer = AutoencoderKLInferer()
    g_loss = PatchGeneratorLoss(adv_weight, adv_start_iteration, criterion)
    d_loss = PatchDiscriminatorLoss(adv_weight, adv_start_iteration, criterion)
    trainer_kwargs.setdefault("decollate", False)
    trainer = AdversarialTrainer(
        device=torch.device(device),
        max_epochs=max_epochs,
        train_data_loader=train_data_loader,
        g_network=autoencoder,
        g_optimizer=torch.optim.Adam(autoencoder.parameters(), lr=g_lr),
        g_loss_function=g_loss,
        recon_loss_function=AutoencoderKLLoss(inferer, kl_weight, perceptual, perceptual_weight),
        d_network=discriminator,
        d_optimizer=torch.optim.Adam(discriminator.parameters(), lr=d_lr),
        d_loss_function=d_loss,
        prepare_batch=AutoencoderPrepareBatch(image_key, fold_frames),
        g_inferer=inferer,
        train_handlers=[g_loss, d_loss, *(train_handlers or [])],
        **trainer_kwargs,
    )
    # MONAI adds the networks, optimizers and losses to the trainer's state dict as objects, which MONAI's own
    # CheckpointLoader (torch.load(weights_only=True)) cannot read back; checkpoint them as separate entries and keep
    # only the iteration / epoch counters in the trainer's entry, so a run resumes where it stopped.
    trainer._state_dict_user_keys.clear()
    if ckpt_dir is not None:
        summary_writer = None
        if log_dir is not None and (rank_and_world_size()[0] if rank is None else rank) == 0:
            from torch.utils.tensorboard import SummaryWriter

            summary_writer = SummaryWriter(log_dir=str(log_dir))
        save_dict = {
            "autoencoder": autoencoder,
            "discriminator": discriminator,
            "g_optimizer": trainer.state.g_optimizer,
            "d_optimizer": trainer.state.d_optimizer,
            "trainer": trainer,
        }
        trainer.resumed_from = attach_stage_handlers(
            trainer,
            save_dict,
            {"autoencoder": autoencoder},
            ckpt_dir,
            prefix,
            final_filename,
            save_interval,
            n_saved,
            resume,
            loss_keys=("reconstruction_loss", "generator_loss", "discriminator_loss"),
            summary_writer=summary_writer,
            progress=progress,
            map_location=torch.device(device),
            rank=rank,
        )
    return trainer
