"""Text prompts from echo metadata, in the style of DiffEcho's prompt generator (Ashrafian et al. 2024).

A prompt names the view and the cardiac phase ("An ultrasound image shows the heart in a two-chamber view during the
end-diastolic phase") and, where the reader has them, the image quality, the patient's sex, an age band and an
ejection-fraction band. Templates and the optional attributes are drawn at random per call (one prompt generator for
training); :meth:`EchoPrompt.build` with fixed choices gives the prompt of a generation request.

Bands: age under 40, 40 to 64, 65 or over; EF (percent) ``< 40`` reduced, ``40-49`` mildly
reduced, ``>= 50`` normal (the heart-failure guideline classes HFrEF / HFmrEF / HFpEF).
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform

__all__ = ["PROMPT_TEMPLATES", "EchoPrompt", "EchoPromptd", "TokenizePromptd", "prompt_vocabulary", "words"]

_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def words(prompt: str) -> list[str]:
    """The lower-case words of a prompt (hyphenated words kept whole), as the learnt text encoder splits it.

    Example:
        >>> words("An ultrasound image: two-chamber view, ED.")
        ['an', 'ultrasound', 'image', 'two-chamber', 'view', 'ed']
    """
    return _WORD.findall(prompt.lower())


#: the sentence templates; ``{view}`` and ``{phase}`` are always filled, attributes follow as ", with ..." clauses
PROMPT_TEMPLATES = (
    "An ultrasound image shows the heart in a {view} view during the {phase} phase",
    "An echocardiogram of the heart in the {view} view at the {phase} phase",
    "A {view} echocardiography image at {phase}",
    "Cardiac ultrasound of the {view} view in the {phase} phase",
)
VIEW_WORDS = {"2CH": "two-chamber", "4CH": "four-chamber", "A2C": "two-chamber", "A4C": "four-chamber"}
PHASE_WORDS = {"ED": "end-diastolic", "ES": "end-systolic"}
QUALITY_WORDS = {
    "good": "with good image quality",
    "medium": "with medium image quality",
    "poor": "with poor image quality",
}
SEX_WORDS = {"m": "of a male patient", "f": "of a female patient"}
_AGE_BANDS = ((40.0, "aged under 40"), (65.0, "aged 40 to 64"), (math.inf, "aged 65 or over"))
_EF_BANDS = (
    (40.0, "with a reduced ejection fraction"),
    (50.0, "with a mildly reduced ejection fraction"),
    (math.inf, "with a normal ejection fraction"),
)
#: the optional attributes, in the order they are written
ATTRIBUTES = ("image_quality", "sex", "age", "ejection_fraction")


def _band(value: Any, bands: tuple[tuple[float, str], ...]) -> str | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return next(text for limit, text in bands if number < limit)


def _attribute_text(name: str, value: Any) -> str | None:
    """The clause of one attribute, or None when the value is absent (empty, NaN) or unknown."""
    if name == "image_quality":
        return QUALITY_WORDS.get(str(value).strip().lower())
    if name == "sex":
        return SEX_WORDS.get(str(value).strip().lower()[:1])
    if name == "age":
        return _band(value, _AGE_BANDS)
    return _band(value, _EF_BANDS)


class EchoPrompt:
    """Build a prompt from a view, a phase and optional attributes.

    Args:
        templates: sentence templates with ``{view}`` and ``{phase}``.

    Example:
        >>> EchoPrompt().build("2CH", "ED")
        'An ultrasound image shows the heart in a two-chamber view during the end-diastolic phase'
        >>> EchoPrompt().build("4CH", "ES", template=2, attributes={"image_quality": "Poor"})
        'A four-chamber echocardiography image at end-systolic, with poor image quality'
    """

    def __init__(self, templates: Sequence[str] = PROMPT_TEMPLATES) -> None:
        if not templates or any("{view}" not in t or "{phase}" not in t for t in templates):
            raise ValueError("EchoPrompt: templates must be non-empty and each hold '{view}' and '{phase}'.")
        self.templates = tuple(templates)

    def build(self, view: str, phase: str, template: int = 0, attributes: Mapping[str, Any] | None = None) -> str:
        """The prompt for ``view`` (``2CH``/``4CH``), ``phase`` (``ED``/``ES``) with the template of that index and the
        given attributes (absent values are skipped).

        Raises:
            ValueError: for an unknown view or phase, or a template index out of range.
        """
        if view not in VIEW_WORDS:
            raise ValueError(f"EchoPrompt: view must be one of {sorted(VIEW_WORDS)}, got {view!r}.")
        if phase not in PHASE_WORDS:
            raise ValueError(f"EchoPrompt: phase must be one of {sorted(PHASE_WORDS)}, got {phase!r}.")
        if not 0 <= int(template) < len(self.templates):
            raise ValueError(f"EchoPrompt: template must be in [0, {len(self.templates) - 1}], got {template}.")
        text = self.templates[int(template)].format(view=VIEW_WORDS[view], phase=PHASE_WORDS[phase])
        for name in ATTRIBUTES:
            clause = _attribute_text(name, (attributes or {}).get(name))
            if clause is not None:
                text += f", {clause}"
        return text


def prompt_vocabulary(templates: Sequence[str] = PROMPT_TEMPLATES) -> list[str]:
    """Every word :class:`EchoPrompt` can write with these templates (the default vocabulary of
    :class:`echo_monai.networks.blocks.VocabularyTextEncoder`), in first-seen order."""
    phrases = [*templates, *VIEW_WORDS.values(), *PHASE_WORDS.values(), *QUALITY_WORDS.values(), *SEX_WORDS.values()]
    phrases += [text for _, text in (*_AGE_BANDS, *_EF_BANDS)]
    vocabulary: list[str] = []
    for phrase in phrases:
        for word in words(phrase.replace("{view}", "").replace("{phase}", "")):
            if word not in vocabulary:
                vocabulary.append(word)
    return vocabulary


class EchoPromptd(RandomizableTransform, MapTransform):
    """Write a prompt built from an item's metadata to ``output_key``: a random template, and each available
    attribute (image quality, sex, age band, EF band) kept with probability ``attribute_prob``.

    Args:
        keys: the view key and the phase key, in that order (default ``("view", "phase")``).
        output_key: where the prompt goes.
        attribute_keys: attribute name (``image_quality``, ``sex``, ``age``, ``ejection_fraction``) -> item key;
            missing keys or values are skipped.
        attribute_prob: probability of each available attribute being written.
        templates: sentence templates (see :class:`EchoPrompt`).

    Example:
        >>> prompts = EchoPromptd(attribute_prob=1.0)
        >>> prompts.set_random_state(0)({"view": "2CH", "phase": "ED", "image_quality": "Good"})["prompt"]
    """

    def __init__(
        self,
        keys: KeysCollection = ("view", "phase"),
        output_key: str = "prompt",
        attribute_keys: Mapping[str, str] | None = None,
        attribute_prob: float = 0.5,
        templates: Sequence[str] = PROMPT_TEMPLATES,
    ) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob=1.0)
        if len(self.keys) != 2:
            raise ValueError(f"EchoPromptd: keys must be (view key, phase key), got {self.keys}.")
        if not 0.0 <= attribute_prob <= 1.0:
            raise ValueError(f"EchoPromptd: attribute_prob must be in [0, 1], got {attribute_prob}.")
        attribute_keys = dict({name: name for name in ATTRIBUTES} if attribute_keys is None else attribute_keys)
        unknown = sorted(set(attribute_keys) - set(ATTRIBUTES))
        if unknown:
            raise ValueError(f"EchoPromptd: attribute_keys {unknown} are not attributes; known: {list(ATTRIBUTES)}.")
        self.output_key = output_key
        self.attribute_keys = attribute_keys
        self.attribute_prob = float(attribute_prob)
        self.prompt = EchoPrompt(templates)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        item = dict(data)
        view_key, phase_key = self.keys
        for key in (view_key, phase_key):
            if key not in item:
                raise KeyError(f"EchoPromptd: the item has no {key!r}; it has {sorted(map(str, item))}.")
        template = int(self.R.randint(len(self.prompt.templates)))
        keep = self.R.random_sample(len(ATTRIBUTES)) < self.attribute_prob
        attributes = {
            name: item.get(self.attribute_keys[name])
            for name, kept in zip(ATTRIBUTES, keep, strict=True)
            if kept and name in self.attribute_keys
        }
        item[self.output_key] = self.prompt.build(str(item[view_key]), str(item[phase_key]), template, attributes)
        return item

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> EchoPromptd:
        super().set_random_state(seed, state)
        return self


class TokenizePromptd(MapTransform):
    """Token ids of a prompt, for a text-conditioned denoiser: ``output_key`` gets ``(max_length,)`` int64 from
    ``tokenizer.tokenize([prompt])`` (a :class:`echo_monai.networks.blocks.TextEncoder`). A missing or empty prompt
    gives the null prompt (all padding), which is what an unconditional request asks for.

    Args:
        keys: the prompt key.
        tokenizer: any object with ``tokenize(prompts) -> (B, N)`` ids (the network's text encoder).
        output_key: where the ids go.

    Example:
        >>> TokenizePromptd("prompt", encoder)({"prompt": "A two-chamber echocardiography image at end-diastolic"})
    """

    def __init__(self, keys: KeysCollection = "prompt", tokenizer: Any = None, output_key: str = "prompt_ids") -> None:
        super().__init__(keys, allow_missing_keys=True)
        if not callable(getattr(tokenizer, "tokenize", None)):
            raise TypeError(
                "TokenizePromptd: tokenizer must have tokenize(prompts) (a TextEncoder), got "
                f"{type(tokenizer).__name__}."
            )
        if len(self.keys) != 1:
            raise ValueError(f"TokenizePromptd: keys must name one prompt key, got {self.keys}.")
        self.tokenizer, self.output_key = tokenizer, output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        item = dict(data)
        prompt = item.get(self.keys[0])
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(f"TokenizePromptd: '{self.keys[0]}' must be a string, got {type(prompt).__name__}.")
        item[self.output_key] = self.tokenizer.tokenize([prompt or ""])[0]
        return item
