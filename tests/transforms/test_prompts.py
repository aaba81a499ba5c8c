from __future__ import annotations

import pytest

from echo_monai.transforms import EchoPrompt, EchoPromptd, prompt_vocabulary
from echo_monai.transforms.prompts import PROMPT_TEMPLATES, words


def test_the_paper_style_prompt_and_attribute_clauses():
    prompt = EchoPrompt()
    assert prompt.build("2CH", "ED") == (
        "An ultrasound image shows the heart in a two-chamber view during the end-diastolic phase"
    )
    text = prompt.build(
        "4CH", "ES", template=3, attributes={"image_quality": "Poor", "sex": "M", "age": 39.5, "ejection_fraction": 52}
    )
    assert text == (
        "Cardiac ultrasound of the four-chamber view in the end-systolic phase, with poor image quality, "
        "of a male patient, aged under 40, with a normal ejection fraction"
    )
    # absent values (CAMUS readers give "" and NaN) are skipped, band edges follow the guideline classes
    assert prompt.build("2CH", "ES", attributes={"image_quality": "", "age": float("nan")}).endswith("phase")
    ef = lambda value: prompt.build("2CH", "ES", attributes={"ejection_fraction": value})  # noqa: E731
    assert ef(40.0).endswith("mildly reduced ejection fraction")
    assert ef(39.9).endswith(", with a reduced ejection fraction")
    assert prompt.build("2CH", "ES", attributes={"age": 65}).endswith("aged 65 or over")


def test_random_prompts_are_seeded_and_stay_in_the_vocabulary():
    item = {"view": "4CH", "phase": "ED", "image_quality": "Good", "sex": "F", "age": 50.0, "ejection_fraction": 30.0}
    first = [EchoPromptd().set_random_state(1)(item)["prompt"] for _ in range(2)]
    assert first[0] == first[1]
    transform = EchoPromptd(attribute_prob=0.5).set_random_state(0)
    prompts = {transform(item)["prompt"] for _ in range(40)}
    assert len(prompts) > 8  # templates and attributes vary
    assert {p.split(",")[0] for p in prompts} == {
        t.format(view="four-chamber", phase="end-diastolic") for t in PROMPT_TEMPLATES
    }
    vocabulary = set(prompt_vocabulary())
    assert all(set(words(p)) <= vocabulary for p in prompts)
    always = EchoPromptd(attribute_prob=1.0).set_random_state(0)(item)["prompt"]
    never = EchoPromptd(attribute_prob=0.0).set_random_state(0)(item)["prompt"]
    assert always.count(",") == 4 and "," not in never


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="view must be one of"):
        EchoPrompt().build("PLAX", "ED")
    with pytest.raises(ValueError, match="phase must be one of"):
        EchoPrompt().build("2CH", "half_sequence")
    with pytest.raises(ValueError, match=r"template must be in \[0, 3\], got 4"):
        EchoPrompt().build("2CH", "ED", template=4)
    with pytest.raises(ValueError, match="each hold"):
        EchoPrompt(["no placeholders"])
    with pytest.raises(ValueError, match="attribute_prob must be in"):
        EchoPromptd(attribute_prob=2.0)
    with pytest.raises(ValueError, match=r"attribute_keys \['weight'\] are not attributes"):
        EchoPromptd(attribute_keys={"weight": "weight"})
    with pytest.raises(KeyError, match="the item has no 'phase'"):
        EchoPromptd()({"view": "2CH"})


def test_tokenize_prompt_gives_ids_and_the_null_prompt():
    import torch

    from echo_monai.networks.blocks import VocabularyTextEncoder
    from echo_monai.transforms import TokenizePromptd

    encoder = VocabularyTextEncoder(dim=4, max_length=8)
    transform = TokenizePromptd("prompt", tokenizer=encoder)
    ids = transform({"prompt": "two-chamber view"})["prompt_ids"]
    assert ids.shape == (8,) and ids.dtype == torch.long and int((ids != 0).sum()) == 2
    assert (transform({"prompt": ""})["prompt_ids"] == 0).all()
    assert (transform({})["prompt_ids"] == 0).all()  # no prompt: the null prompt
    with pytest.raises(TypeError, match="must be a string"):
        transform({"prompt": 3})
    with pytest.raises(TypeError, match="tokenizer must have tokenize"):
        TokenizePromptd("prompt", tokenizer=object())
