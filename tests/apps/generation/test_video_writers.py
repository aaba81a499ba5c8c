"""Video writers: the lesion mask carried along the motion, the BUSV layout read back by the BUSV reader, and the
viewer files (GIF, MP4, PNG frames, NIfTI, DICOM) read back by their libraries."""

from __future__ import annotations

import json

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from echo_monai.apps.generation import (
    BusvWriter,
    GenerationRequest,
    VideoFileWriter,
    mask_box,
    propagate_mask,
    to_uint8,
)
from echo_monai.data import BUSV

SIZE, FRAMES, STEP = (32, 40), 6, (1, 1)  # (H, W), T, per-frame (dx, dy) of the content
CENTRE, RADIUS = (16, 14), 5  # disc (x, y) and radius on frame 0


def _texture(seed: int = 0) -> np.ndarray:
    """Smooth random noise, 0-255, large enough to cut every frame from."""
    noise = np.random.default_rng(seed).random((SIZE[0] + 24, SIZE[1] + 24)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 1.5)
    return ((smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255).astype(np.uint8)


def _moving_frames(seed: int = 0, step: tuple[int, int] = STEP, frames: int = FRAMES) -> np.ndarray:
    """``(T, H, W)`` uint8: the texture's content moves by ``step`` (dx, dy) pixels each frame."""
    big, (h, w), (dx, dy) = _texture(seed), SIZE, step
    y0, x0 = 12, 12
    return np.stack([big[y0 - t * dy : y0 - t * dy + h, x0 - t * dx : x0 - t * dx + w] for t in range(frames)])


def _disc() -> np.ndarray:
    yy, xx = np.mgrid[: SIZE[0], : SIZE[1]]
    return (xx - CENTRE[0]) ** 2 + (yy - CENTRE[1]) ** 2 <= RADIUS**2


def _sample(frames: np.ndarray) -> torch.Tensor:
    """A generated sample ``(1, T, H, W)`` in [-1, 1] whose uint8 view is ``frames``."""
    return torch.from_numpy(frames.astype(np.float32) / 127.5 - 1.0)[None]


def _request(name, index=0, label="benign", split="TRAIN", mask=True) -> GenerationRequest:
    conditions = {"image": f"{name}.png", "mask": [f"{name}_mask.png"] if mask else None, "label": label}
    return GenerationRequest(name, index, 10 + index, conditions, split, {"image": f"{name}.png", "copy": 0})


# --- propagate_mask / mask_box --------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["farneback", "dis"])
@pytest.mark.parametrize("step", [(1, 1), (2, -1)])
def test_propagated_mask_follows_a_translation(method, step):
    frames = _moving_frames(step=step)
    masks = propagate_mask(frames, _disc(), method=method)
    assert masks.shape == frames.shape and masks.dtype == bool
    np.testing.assert_array_equal(masks[0], _disc())
    for t, mask in enumerate(masks):
        rows, columns = np.nonzero(mask)
        centroid = np.array([columns.mean(), rows.mean()])
        np.testing.assert_allclose(centroid, np.array(CENTRE) + t * np.array(step), atol=1.0)
        assert abs(int(mask.sum()) - int(_disc().sum())) <= 0.2 * _disc().sum()  # the disc keeps its size


def test_an_empty_mask_stays_empty():
    masks = propagate_mask(_moving_frames(), np.zeros(SIZE, np.uint8))
    assert masks.shape == (FRAMES, *SIZE) and not masks.any()
    assert mask_box(masks[3]) is None


def test_mask_box_is_coco_xywh_in_pixels():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True  # rows 2-4, columns 3-8
    assert mask_box(mask) == [3.0, 2.0, 6.0, 3.0]
    assert mask_box(mask.astype(np.uint8)) == [3.0, 2.0, 6.0, 3.0]


def test_propagate_mask_refuses_bad_inputs():
    frames = _moving_frames()
    with pytest.raises(ValueError, match="method must be one of"):
        propagate_mask(frames, _disc(), method="lucas")
    with pytest.raises(ValueError, match="uint8"):
        propagate_mask(frames.astype(np.float32), _disc())
    with pytest.raises(ValueError, match="like the frames"):
        propagate_mask(frames, _disc()[:-1])


# --- BusvWriter -----------------------------------------------------------------------------------------------------
def _write_three(root):
    """Benign with a mask, malignant with a mask (VAL), benign without a mask: the requests and their frames."""
    requests = [
        _request("benign_1_v00", 0, "benign"),
        _request("malignant_1_v00", 1, "malignant", split="VAL"),
        _request("benign_2_v00", 2, "benign", mask=False),
    ]
    frames = [_moving_frames(seed=i) for i in range(3)]
    writer = BusvWriter(root, num_frames=FRAMES)
    for request, video in zip(requests, frames, strict=True):
        item = {"mask": torch.from_numpy(_disc()[None].astype(np.float32)) if request.conditions["mask"] else None}
        writer.write(request, _sample(video), item)
    writer.finalize(requests)
    return writer, requests, frames


def test_busv_writer_reads_back_through_the_busv_reader(tmp_path):
    writer, requests, frames = _write_three(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["imagenet_vid_train.json", "imagenet_vid_val.json"]
    items = {item["video_name"]: item for item in BUSV(tmp_path, box_format="xywh", validate=True)}
    assert set(items) == {"benign/benign_1_v00", "malignant/malignant_1_v00", "benign/benign_2_v00"}
    assert [items[n]["label"] for n in sorted(items)] == ["benign", "benign", "malignant"]
    for request, video in zip(requests, frames, strict=True):
        item = items[f"{request.conditions['label']}/{request.name}"]
        assert item["video"].shape == (1, FRAMES, *SIZE)
        np.testing.assert_array_equal(item["video"][0].numpy(), to_uint8(_sample(video))[0])  # exact grey levels
    masked = items["benign/benign_1_v00"]["boxes"].numpy()
    assert np.isfinite(masked).all() and np.isfinite(items["malignant/malignant_1_v00"]["boxes"].numpy()).all()
    assert np.isnan(items["benign/benign_2_v00"]["boxes"].numpy()).all()
    first = np.array(mask_box(_disc()))
    for t, box in enumerate(masked):  # the boxes move with the content
        np.testing.assert_allclose(box[:2], first[:2] + t * np.array(STEP), atol=1.0)
    records = writer.records()
    assert records["benign_1_v00"]["boxes_source"] == "warped_mask" and len(records["benign_1_v00"]["boxes"]) == 6
    assert records["benign_2_v00"]["boxes_source"] == "absent" and records["benign_2_v00"]["boxes"] is None
    assert {k: records["malignant_1_v00"][k] for k in ("label", "num_frames", "height", "width")} == {
        "label": "malignant",
        "num_frames": FRAMES,
        "height": SIZE[0],
        "width": SIZE[1],
    }
    assert (tmp_path / "synthetic_sources.csv").read_text().count("\n") == 4


def test_busv_finalize_lists_only_finished_requests(tmp_path):
    writer, requests, _ = _write_three(tmp_path)
    writer.finalize(requests[:1])  # the val video is not among these requests: its split file goes
    assert not (tmp_path / "imagenet_vid_val.json").exists()
    coco = json.loads((tmp_path / "imagenet_vid_train.json").read_text())
    assert [v["name"] for v in coco["videos"]] == ["benign/benign_1_v00"]
    assert len(coco["images"]) == FRAMES and len(coco["annotations"]) == FRAMES
    assert {c["name"] for c in coco["categories"]} == {"benign", "malignant"}


def test_busv_writer_is_resumable(tmp_path):
    writer = BusvWriter(tmp_path, num_frames=FRAMES)
    request = _request("benign_1_v00")
    item = {"mask": _disc()[None].astype(np.uint8)}
    assert not writer.done(request) and writer.pending([request]) == [request]
    writer.write_item(request, _sample(_moving_frames()), item)  # every frame, but no record yet
    assert all(p.is_file() for p in writer.item_paths(request).values()) and not writer.done(request)
    writer.write(request, _sample(_moving_frames()), item)
    assert writer.done(request) and writer.pending([request]) == []
    (tmp_path / "user_notes.txt").write_text("kept")
    writer.finalize([request])
    writer.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user_notes.txt"]


def test_busv_writer_refuses_what_busv_cannot_hold(tmp_path):
    writer = BusvWriter(tmp_path, num_frames=FRAMES)
    with pytest.raises(ValueError, match=r"request 'n_v00' has label='normal'; expected one of \['benign'"):
        writer.check(_request("n_v00", label="normal"))
    with pytest.raises(ValueError, match="label=None"):
        writer.check(_request("x_v00", label=None))
    with pytest.raises(ValueError, match="split 'TEST'"):
        writer.check(_request("t_v00", split="TEST"))
    writer.check(_request("v_v00", split="val"))  # any case
    with pytest.raises(ValueError, match="has 4 frames; expected num_frames=6"):
        writer.write(_request("short_v00"), _sample(_moving_frames(frames=4)), {})
    with pytest.raises(ValueError, match=r"expected \(1, H, W\) or \(H, W\)"):
        writer.write(_request("m_v00"), _sample(_moving_frames()), {"mask": np.ones((1, 8, 8))})
    assert not list((tmp_path / "rawframes").rglob("*.png"))  # refused before any frame was written
    strict = BusvWriter(tmp_path, num_frames=FRAMES, require_mask=True)
    with pytest.raises(ValueError, match="no 'mask' condition, but require_mask=True"):
        strict.check(_request("nomask_v00", mask=False))
    with pytest.raises(ValueError, match="conditioned item has no 'mask'"):
        strict.write(_request("b_v00"), _sample(_moving_frames()), {})
    for kwargs, match in [
        ({"num_frames": 0}, "num_frames must be an integer >= 1"),
        ({"num_frames": 4, "flow_method": "lk"}, "flow_method must be one of"),
        ({"num_frames": 4, "mask_key": None, "require_mask": True}, "require_mask=True needs a mask_key"),
    ]:
        with pytest.raises(ValueError, match=match):
            BusvWriter(tmp_path, **kwargs)


def test_busv_writer_without_mask_key_writes_no_boxes(tmp_path):
    writer = BusvWriter(tmp_path, num_frames=FRAMES, mask_key=None)
    request = _request("benign_1_v00")
    writer.write(request, _sample(_moving_frames()), {"mask": _disc()[None]})
    assert writer.records()["benign_1_v00"]["boxes_source"] == "absent"
    item = BUSV(writer.finalize([request]), validate=True)[0]
    assert item["label"] == "benign" and np.isnan(item["boxes"].numpy()).all()


# --- VideoFileWriter ------------------------------------------------------------------------------------------------
ALL_FORMATS = ("gif", "mp4", "frames", "nifti", "dicom")


def test_every_viewer_format_reads_back(tmp_path):
    import imageio.v3 as iio

    writer = VideoFileWriter(tmp_path, formats=ALL_FORMATS, fps=25.0, num_frames=FRAMES, pixel_spacing_mm=0.2)
    request, frames = _request("benign_1_v00", 3), _moving_frames()
    writer.write(request, _sample(frames))
    assert writer.done(request)
    gif = iio.imread(tmp_path / "benign_1_v00.gif", index=None)
    np.testing.assert_array_equal(gif[..., 0] if gif.ndim == 4 else gif, frames)
    assert b"synthetic" in iio.immeta(tmp_path / "benign_1_v00.gif")["comment"]
    capture, decoded = cv2.VideoCapture(str(tmp_path / "benign_1_v00.mp4")), []
    while (frame := capture.read())[0]:
        decoded.append(cv2.cvtColor(frame[1], cv2.COLOR_BGR2GRAY))
    capture.release()
    assert np.stack(decoded).shape == frames.shape
    assert np.abs(np.stack(decoded).astype(float) - frames).mean() < 20  # mp4v is lossy
    pngs = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((tmp_path / "benign_1_v00").glob("*.png"))]
    np.testing.assert_array_equal(np.stack(pngs), frames)
    nifti = nib.load(tmp_path / "benign_1_v00.nii.gz")
    np.testing.assert_array_equal(np.asarray(nifti.dataobj).transpose(2, 1, 0), frames)
    assert nifti.header.get_zooms()[:2] == pytest.approx((0.2, 0.2))
    assert b"synthetic" in nifti.header["descrip"].tobytes()
    ds = pydicom.dcmread(tmp_path / "benign_1_v00.dcm")
    np.testing.assert_array_equal(ds.pixel_array, frames)
    assert "synthetic" in ds.SeriesDescription and "synthetic" in ds.ImageComments and int(ds.CineRate) == 25
    assert ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaX == pytest.approx(0.02)
    record = writer.records()["benign_1_v00"]
    assert record["num_frames"] == FRAMES and record["formats"] == list(ALL_FORMATS)


def test_dicom_uids_follow_the_request_name_and_seed(tmp_path):
    frames = _sample(_moving_frames())
    VideoFileWriter(tmp_path / "a", formats=["dicom"]).write(_request("v_v00", 0), frames)
    VideoFileWriter(tmp_path / "b", formats=["dicom"]).write(_request("v_v00", 0), frames)
    VideoFileWriter(tmp_path / "c", formats=["dicom"]).write(_request("v_v00", 1), frames)  # another seed
    a, b, c = (pydicom.dcmread(tmp_path / k / "v_v00.dcm") for k in "abc")
    assert a.SOPInstanceUID == b.SOPInstanceUID != c.SOPInstanceUID
    assert (tmp_path / "a" / "v_v00.dcm").read_bytes() == (tmp_path / "b" / "v_v00.dcm").read_bytes()
    assert "SequenceOfUltrasoundRegions" not in a  # no pixel size given: no calibrated region


def test_video_file_writer_refuses_bad_settings(tmp_path):
    with pytest.raises(ValueError, match=r"\['gif', 'mp4', 'frames', 'nifti', 'dicom'\].*unknown: \['avi'\]"):
        VideoFileWriter(tmp_path, formats=["gif", "avi"])
    with pytest.raises(ValueError, match="non-empty list"):
        VideoFileWriter(tmp_path, formats=[])
    with pytest.raises(ValueError, match="'frames' format needs num_frames"):
        VideoFileWriter(tmp_path, formats=["frames"])
    with pytest.raises(ValueError, match="must say the video is synthetic"):
        VideoFileWriter(tmp_path, description="breast ultrasound")
    with pytest.raises(ValueError, match="fps must be > 0"):
        VideoFileWriter(tmp_path, fps=0)
    writer = VideoFileWriter(tmp_path, formats=["frames"], num_frames=4)
    with pytest.raises(ValueError, match="has 6 frames; expected num_frames=4"):
        writer.write(_request("v_v00"), _sample(_moving_frames()))


def test_mp4_writer_that_cannot_open_names_the_file(tmp_path, monkeypatch):
    class ClosedWriter:
        def __init__(self, *args):
            pass

        def isOpened(self):  # noqa: N802 (OpenCV's name)
            return False

    monkeypatch.setattr(cv2, "VideoWriter", ClosedWriter)
    writer = VideoFileWriter(tmp_path, formats=["mp4"])
    with pytest.raises(OSError, match=r"cannot write the MPEG-4 \(mp4v\) file '.*v_v00\.mp4'"):
        writer.write(_request("v_v00"), _sample(_moving_frames()))
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".tmp-*"))


def test_video_file_writer_clear_removes_only_its_items(tmp_path):
    writer = VideoFileWriter(tmp_path, formats=ALL_FORMATS, num_frames=FRAMES)
    writer.write(_request("v_v00"), _sample(_moving_frames()))
    writer.finalize()
    (tmp_path / "notes.gif").write_text("a user's file")
    writer.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.gif"]


def test_pipeline_animates_busi_images_into_a_busv_dataset(tmp_path):
    from monai.transforms import Lambdad

    from echo_monai.apps.generation import GenerationPipeline, RequestConditioner, image_requests
    from echo_monai.apps.simulate import simulate
    from echo_monai.data.busi import read_grey_png

    busi = simulate("busi", tmp_path / "busi", n=6, seed=0, image_size=SIZE)
    requests = image_requests(busi, copies=2, limit=2)  # two benign images, two videos each

    def load_mask(paths):
        return torch.from_numpy(np.maximum.reduce([read_grey_png(p) >= 128 for p in paths])[None].astype(np.uint8))

    def sampler(noise, network, condition=None, generator=None):  # a moving texture per item
        return torch.stack([_sample(_moving_frames(seed=i)) for i in range(len(noise))])

    writer = BusvWriter(tmp_path / "busv", num_frames=FRAMES, require_mask=True)
    conditioner = RequestConditioner(transform=Lambdad(keys="mask", func=load_mask))
    pipeline = GenerationPipeline(sampler, torch.nn.Identity(), conditioner, writer, (1, FRAMES, *SIZE), progress=False)
    assert pipeline.run(requests).written == [r.name for r in requests]
    assert pipeline.run(requests).skipped_existing == 4  # resumed: nothing left to do
    data = BUSV(writer.root, annotation_files=writer.annotation_files(), validate=True)
    assert len(data) == 4 and {item["label"] for item in data} == {"benign"}
    boxes = data[0]["boxes"].numpy()
    assert np.isfinite(boxes).all() and np.allclose(boxes[1:, :2] - boxes[:-1, :2], STEP, atol=1.0)


def test_an_image_sample_is_written_as_us_image_storage(tmp_path):
    from echo_monai.data import DicomCine
    from echo_monai.data.phantom.dicom_writer import US_IMAGE_STORAGE, US_MULTIFRAME_STORAGE

    image = torch.linspace(-1, 1, 24 * 32).reshape(1, 24, 32)
    VideoFileWriter(tmp_path / "image", formats=["dicom"], fps=30.0).write(_request("image_v00", 0), image)
    ds = pydicom.dcmread(tmp_path / "image" / "image_v00.dcm")
    assert ds.SOPClassUID == US_IMAGE_STORAGE and ds.Modality == "US" and "NumberOfFrames" not in ds
    assert ds.pixel_array.shape == (24, 32) and ds.pixel_array.min() == 0 and ds.pixel_array.max() == 255
    assert "synthetic" in ds.SeriesDescription and str(ds.PatientName) == "SYNTHETIC"
    VideoFileWriter(tmp_path / "video", formats=["dicom"]).write(_request("video_v00", 0), _sample(_moving_frames()))
    assert pydicom.dcmread(tmp_path / "video" / "video_v00.dcm").SOPClassUID == US_MULTIFRAME_STORAGE
    cine = DicomCine(tmp_path / "image")  # the project's reader opens the still image as one frame
    item = cine[0]
    assert len(cine) == 1 and tuple(item.get("image", item.get("video")).shape[-2:]) == (24, 32)
