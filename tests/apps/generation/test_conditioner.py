"""RequestConditioner: request conditions -> transform (seeded per request) -> null values -> placed condition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose, RandGaussianNoised

from echo_monai.apps.generation import GenerationRequest, RequestConditioner
from echo_monai.engines import Conditioning
from echo_monai.transforms import ConditionMapd

MASKED = Conditioning(
    {"class_labels": "view"}, concat_keys=["lv_mask"], null_values={"class_labels": 4, "lv_mask": -1.0}
)


def _request(name="a", **conditions) -> GenerationRequest:
    return GenerationRequest(name, 0, 7, conditions)


def test_missing_conditions_take_the_null_values(tmp_path):
    conditioner = RequestConditioner(MASKED, ConditionMapd("lv_mask", (8, 8), null_value=-1.0))
    _, c = conditioner([_request()])
    assert c.kwargs["class_labels"].tolist() == [4]
    assert c.concat[0].shape == (1, 1, 8, 8) and torch.all(c.concat[0] == -1.0)
    mask = np.zeros((32, 32), np.float32)
    mask[:16] = 1.0  # top half at 32 px -> top half on the 8 x 8 latent grid
    _, c = conditioner([_request(view=1, lv_mask=mask)])
    assert c.kwargs["class_labels"].tolist() == [1]
    assert torch.all(c.concat[0][0, 0, :4] == 1.0) and torch.all(c.concat[0][0, 0, 4:] == 0.0)
    np.save(tmp_path / "mask.npy", mask)
    _, from_file = conditioner([_request(lv_mask=str(tmp_path / "mask.npy"))])
    assert torch.equal(from_file.concat[0], c.concat[0])
    with pytest.raises(FileNotFoundError, match="request 'a': 'lv_mask' file"):
        conditioner.check(_request(lv_mask=str(tmp_path / "none.png")))
    with pytest.raises(ValueError, match="request 'a': 'lv_mask' must be one map"):
        conditioner.check(_request(lv_mask=np.zeros((2, 3, 8, 8))))
    with pytest.raises(ValueError, match="has no 'view'"):
        RequestConditioner(Conditioning({"class_labels": "view"})).check(_request())
    with pytest.raises(ValueError, match=r"has no \['lv_mask'\]"):
        RequestConditioner(MASKED).check(_request(view=0))  # no transform makes the concatenated map


def test_batches_keep_request_order_and_references():
    conditioner = RequestConditioner(Conditioning({"context": "ejection_fraction"}, concat_keys=["reference"]))
    requests = [GenerationRequest(f"r{i}", i, i, {"ejection_fraction": 10.0 * i}) for i in range(3)]
    references = [torch.full((4, 8, 8), float(i)) for i in range(3)]
    items, c = conditioner(requests, references)
    assert c.kwargs["context"].reshape(-1).tolist() == [0.0, 10.0, 20.0]
    assert c.concat[0].shape == (3, 4, 8, 8) and c.concat[0][2].unique().tolist() == [2.0]
    assert items[1]["reference"] is references[1]
    conditioner.check(requests[0])  # the reference is made during generation: nothing to check yet


def test_random_transforms_follow_the_request_seed():
    noise = Compose([RandGaussianNoised("x", prob=1.0, std=1.0)])
    conditioner = RequestConditioner(Conditioning({"seg": "x"}), noise)
    first = GenerationRequest("first", 0, 11, {"x": torch.zeros(1, 4, 4)})
    second = GenerationRequest("second", 1, 12, {"x": torch.zeros(1, 4, 4)})
    alone = conditioner.item(second)["x"]
    items, _ = conditioner([first, second])
    assert torch.equal(items[1]["x"], alone) and not torch.equal(items[0]["x"], alone)
    _, unconditional = RequestConditioner()([first])
    assert not unconditional
