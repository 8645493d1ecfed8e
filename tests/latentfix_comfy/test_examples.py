"""The example workflows shipped in latentfix_comfy/examples still load with the nodes' current inputs: every
LatentFix node in them has each required input ComfyUI asks for, with a value ComfyUI's own checks accept (the API
form), and one widget value per widget input (the UI form), and the node built from them runs."""

import json
import os

import pytest
import torch
from comfyui_standin.workflow import empty_latent, ksample, make_model

from latentfix_comfy import nodes

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "latentfix_comfy", "examples")
LINK_TYPES = ("MODEL", "LATENT", "IMAGE")


def widget_inputs(node_class):
    return {name: spec for name, spec in node_class.INPUT_TYPES()["required"].items()
            if not (isinstance(spec[0], str) and spec[0] in LINK_TYPES)}


def accepted(spec, value):
    kind, options = spec
    if isinstance(kind, list):
        return value in kind
    if kind in ("FLOAT", "INT"):
        return options["min"] <= value <= options["max"]
    if kind == "BOOLEAN":
        return isinstance(value, bool)
    return isinstance(value, str)


def load(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        return json.load(f)


def test_api_example_nodes_have_every_required_input_with_an_accepted_value():
    ours = [n for n in load("latentfix_sdxl_api.json").values() if n["class_type"] in nodes.NODE_CLASS_MAPPINGS]
    assert ours
    for node in ours:
        node_class = nodes.NODE_CLASS_MAPPINGS[node["class_type"]]
        widgets = widget_inputs(node_class)
        assert set(node["inputs"]) == set(node_class.INPUT_TYPES()["required"])
        for name, spec in widgets.items():
            assert accepted(spec, node["inputs"][name]), (node["class_type"], name)


def test_ui_example_nodes_have_one_widget_value_per_widget_input():
    ours = [n for n in load("latentfix_sdxl.json")["nodes"] if n["type"] in nodes.NODE_CLASS_MAPPINGS]
    assert ours
    for node in ours:
        widgets = widget_inputs(nodes.NODE_CLASS_MAPPINGS[node["type"]])
        assert len(node["widgets_values"]) == len(widgets)
        for (name, spec), value in zip(widgets.items(), node["widgets_values"]):
            assert accepted(spec, value), (node["type"], name)


@pytest.mark.parametrize("example", ["latentfix_sdxl_api.json"])
def test_the_example_latentfix_node_runs_and_corrects(example):
    (node,) = [n for n in load(example).values() if n["class_type"] == "LatentFix"]
    inputs = {k: v for k, v in node["inputs"].items() if k != "model"}
    model = make_model()
    patched = nodes.LatentFix().patch(model, **inputs)[0]
    assert patched is not model
    assert not torch.equal(ksample(patched, empty_latent()), ksample(model, empty_latent()))
