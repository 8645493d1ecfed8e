"""The README's diffusers example, run as a new user would, with a tiny random-weight SDXL pipeline (offline).

The example is taken from README.md ("Use" → "In Python (diffusers)") and executed with the tiny pipeline in place of
``from_pretrained``. Its callback must equal the source post's callback image by image (float64), and — unlike the
post's own code — give each image of a batch the result it gets alone.
"""

import os
import re

import pytest

pytest.importorskip("diffusers", reason="diffusers is not installed (tests/requirements.txt installs it)")
pytest.importorskip("transformers", reason="transformers is not installed (tests/requirements.txt installs it)")

import torch  # noqa: E402

from support import post_reference  # noqa: E402
from support.tiny_sdxl import make_tiny_sdxl  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = "a woman in a garden, blue sky"
STEPS = 20  # "leading" spacing: 951, 901, ... 51, 1 — reaches the post's t > 950 and 1 < t < 100 windows


def readme_example() -> str:
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = re.split(r"\n##+ ", text.split("\n### In Python (diffusers)\n", 1)[1], maxsplit=1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    (example,) = [b for b in blocks if "from_pretrained" in b]
    runnable, count = re.subn(r"pipe = StableDiffusionXLPipeline\.from_pretrained\(.*?\)\.to\([^)]*\)",
                              "pipe = make_tiny_pipeline()", example, flags=re.S)
    assert count == 1, "the README example no longer builds its pipeline with one from_pretrained(...).to(...)"
    return runnable


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    # one thread: the tiny UNet gains nothing from two, and spin-waiting threads crawl when the cores are busy
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tokenizer")
    yield make_tiny_sdxl(str(folder)), make_tiny_sdxl(str(folder), dtype=torch.float64)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def example(pipes):
    namespace = {"make_tiny_pipeline": lambda: pipes[0]}
    torch.manual_seed(0)
    exec(compile(readme_example(), "README.md (diffusers example)", "exec"), namespace)
    return namespace


def latents(pipe, callback, seeds, **kw):
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    return pipe(PROMPT, guidance_scale=12, num_inference_steps=STEPS, num_images_per_prompt=len(seeds),
                generator=generators, callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"],
                output_type="latent", **kw).images


def test_the_readme_example_runs_and_makes_an_image(example):
    image = example["image"]
    assert image.size == (16, 16) and image.mode == "RGB"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_readme_callback_equals_the_posts_callback_per_image(pipes, example, seed):
    pipe = pipes[1]  # float64
    ours = latents(pipe, example["latentfix"], [seed])
    post = latents(pipe, post_reference.callback, [seed])
    plain = latents(pipe, None, [seed])
    assert (ours - post).abs().max().item() < 1e-12
    assert (ours - plain).abs().max().item() > 0.1  # the correction did something


def test_diffusers_passes_one_0d_timestep_that_applies_to_every_image(pipes, example):
    seen = []

    def spy(pipe, step, timestep, kw):
        seen.append(timestep)
        return example["latentfix"](pipe, step, timestep, kw)

    latents(pipes[1], spy, [0, 1])
    assert all(isinstance(t, torch.Tensor) and t.dim() == 0 for t in seen)


def test_the_readme_callback_is_batch_invariant_where_the_posts_is_not(pipes, example):
    pipe, seeds = pipes[1], [0, 1, 2]
    batch = latents(pipe, example["latentfix"], seeds)
    post_batch = latents(pipe, post_reference.callback, seeds)
    for i, seed in enumerate(seeds):
        alone = latents(pipe, example["latentfix"], [seed])
        assert (batch[i:i + 1] - alone).abs().max().item() < 1e-9
    # the post centers and maximizes batch element 0 only: its images 1 and 2 differ from their runs alone
    post_alone = [latents(pipe, post_reference.callback, [s]) for s in seeds[1:]]
    assert all((post_batch[i + 1:i + 2] - a).abs().max().item() > 1e-3 for i, a in enumerate(post_alone))
