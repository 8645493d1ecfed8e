"""Diagnostics in the WebUI: gallery images, trace files, no host sync."""


import torch

from support.glue import wrap_our_callbacks, args
from support.sync_guard import NoHostSync


def test_diagnostics_add_labelled_gallery_images_and_change_no_pixel(a1111):
    plain, plain_processed = a1111.txt2img(args(), batch_size=2, steps=8, seed=3)
    traced, processed = a1111.txt2img(args(diagnostics=True), batch_size=2, steps=8, seed=3)
    assert torch.equal(traced, plain)
    real = len(plain_processed.images)
    extras = processed.images[real:]
    assert len(extras) == 4  # a chart and a channel view per image
    assert all(e.size[0] >= 800 for e in extras)
    assert processed.infotexts[:real] == plain_processed.infotexts  # the real images' infotexts are untouched
    assert all("LatentFix diagnostics" in text for text in processed.infotexts[real:])
    assert "diagnostics" not in processed.infotexts[0].lower()


def test_trace_numbers_equal_the_statistics_of_the_tensors_passed(a1111, corrections, tmp_path, monkeypatch):
    import json

    from modules import shared

    path = tmp_path / "trace.jsonl"
    monkeypatch.setattr(shared.cmd_opts, "latentfix_trace", str(path), raising=False)
    a1111.txt2img(args(), batch_size=2, steps=6, seed=12)  # the flag alone traces, without the gallery images
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 2 * len(corrections)
    for record in records:
        before, call, after = corrections[record["step"]]
        i = record["image"]
        assert abs(record["timestep"] - call.timesteps[-2:][i].item()) < 1e-4
        for name, tensor in (("before", before[i]), ("after", after[i])):
            flat = tensor.float().flatten(1)
            expected = {"mean": flat.mean(1), "std": flat.std(1, unbiased=False), "min": flat.amin(1),
                        "max": flat.amax(1)}
            for stat, values in expected.items():
                torch.testing.assert_close(torch.tensor(record[name][stat]), values, rtol=1e-4, atol=1e-4)
        assert record["seed"] == 12 + record["image_index"]


def test_diagnostics_never_sync_with_the_host_during_sampling(a1111, capsys):
    def guarding(inner, _category):
        def guarded(params):
            with NoHostSync():
                inner(params)
        return guarded

    wrap_our_callbacks(guarding)
    latents, processed = a1111.txt2img(args(diagnostics=True), batch_size=2, steps=6, seed=1)
    out = capsys.readouterr().out
    assert "turned off" not in out and "LatentFix: " in processed.infotexts[0]
    assert len(processed.images) == 2 + 4


def test_diagnostics_with_hires_and_batch_count(a1111):
    _, processed = a1111.txt2img(args(diagnostics=True), batch_size=1, n_iter=2, steps=6, seed=1, enable_hr=True,
                                 hr_second_pass_steps=3, denoising_strength=0.5)
    captions = [t for t in processed.infotexts if t.startswith("LatentFix diagnostics")]
    assert len(captions) == 4 and "seed 2" in captions[2]


def test_an_unwritable_trace_file_is_named_and_the_gallery_images_stay(a1111, tmp_path, monkeypatch, capsys):
    from modules import shared

    (tmp_path / "a file").write_text("not a folder")  # unwritable even for root: its parent is a file
    monkeypatch.setattr(shared.cmd_opts, "latentfix_trace", str(tmp_path / "a file" / "trace.jsonl"), raising=False)
    _, processed = a1111.txt2img(args(diagnostics=True), batch_size=2, steps=6, seed=1)
    out = capsys.readouterr().out
    assert len(processed.images) == 2 + 4  # both images' chart and channel view
    assert out.count("trace file") == 1 and "could not be drawn" not in out
