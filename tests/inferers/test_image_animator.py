"""ImageAnimator (LDDM: still image -> K videos) and the decoder condition through the pipeline and the evaluator."""

from __future__ import annotations

import pytest
import torch
from monai.networks.schedulers import RFlowScheduler
from monai.networks.utils import pixelunshuffle
from monai.transforms import Compose, CopyItemsd

from echo_monai.apps.generation import GenerationPipeline, GenerationRequest, RequestConditioner, VideoFileWriter
from echo_monai.engines import Conditioning, make_sampling_evaluator
from echo_monai.inferers import ImageAnimator, LatentSampler, Sampler
from echo_monai.networks.nets import FirstFrameVideoAutoencoder
from echo_monai.transforms import SpaceToDepthd


@pytest.fixture
def parts(make_video_unet):
    torch.manual_seed(0)
    autoencoder = FirstFrameVideoAutoencoder(
        in_channels=1, channels=(8, 8), latent_channels=4, num_res_blocks=1, norm_num_groups=4,
        residual_first_frame=True, exact_first_frame=True,
    ).eval()  # fmt: skip
    network = make_video_unet(in_channels=4 + 4, out_channels=4)
    conditioning = Conditioning(concat_keys=["reference"], dropout=0.1)
    flow = RFlowScheduler(1000, use_discrete_timesteps=False)
    sampler = LatentSampler(Sampler(flow, 2, guidance_scale=1.5, conditioning=conditioning), autoencoder,
                            encode_concat=False)  # fmt: skip
    return autoencoder, network, conditioning, sampler


def test_animate_shapes_first_frame_and_batch_independence(parts):
    _, network, _, sampler = parts
    frames = torch.rand(3, 1, 16, 16) * 2 - 1
    animate = ImageAnimator(sampler, network, (4, 2, 8, 8), reference_factor=2, batch_size=4)
    videos = animate(frames, samples=2, seed=5)
    assert videos.shape == (3, 2, 1, 4, 16, 16)
    torch.testing.assert_close(videos[:, :, :, 0], frames[:, None].expand(-1, 2, -1, -1, -1))  # exact first frame
    assert (videos[:, 0] - videos[:, 1]).abs().max() > 1e-4  # two stochastic videos per image
    alone = ImageAnimator(sampler, network, (4, 2, 8, 8), reference_factor=2, batch_size=1)(frames[2:], 2, seed=9)
    torch.testing.assert_close(alone, videos[2:], atol=1e-5, rtol=1e-4)  # seed + n * K + k, whatever the batching
    with pytest.raises(ValueError, match=r"first_frames must be \(N, C, 16, 16\)"):
        animate(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="latent_shape"):
        ImageAnimator(sampler, network, (4, 8, 8), reference_factor=2)


def test_pipeline_and_evaluator_pass_the_first_frame_to_the_decoder(parts, tmp_path):
    autoencoder, network, conditioning, sampler = parts
    frames = [torch.rand(1, 16, 16) * 2 - 1 for _ in range(3)]
    requests = [GenerationRequest(f"video_{i}", i, i, {"image": frames[i]}) for i in range(3)]
    transform = Compose([CopyItemsd("image", names="first_frame"), SpaceToDepthd("first_frame", 2, names="reference")])
    pipeline = GenerationPipeline(
        sampler, network, RequestConditioner(conditioning, transform),
        VideoFileWriter(tmp_path / "videos", formats=["nifti"]), (4, 2, 8, 8), batch_size=2, progress=False,
        decoder_condition={"first_frame": "first_frame"},
    )  # fmt: skip
    pipeline.run(requests)
    import nibabel as nib

    for i, frame in enumerate(frames):
        video = nib.load(str(tmp_path / "videos" / f"video_{i}.nii.gz")).get_fdata().transpose(1, 0, 2)  # (H, W, T)
        expected = ((frame[0].clamp(-1, 1) + 1) * 127.5).round().numpy()
        assert abs(video[..., 0] - expected).max() <= 1.0  # the seed image is frame 0 of its video
    data = [{"first_frame": f, "reference": pixelunshuffle(f[None], 2, 2)[0]} for f in frames]
    evaluator = make_sampling_evaluator(network, sampler, data, conditioning, sample_shape=(4, 2, 8, 8),
                                        batch_size=3, decoder_condition={"first_frame": "first_frame"})  # fmt: skip
    evaluator.run()
    torch.testing.assert_close(evaluator.state.output["pred"][:, :, 0], torch.stack(frames))
