"""Stand-in for the WebUI's modules.scripts (A1111 v1.10.1), written for the tests: Script, AlwaysVisible, basedir,
scripts_data, the hook argument classes (MaskBlendArgs, PostSampleArgs, …) and ScriptRunner's hook methods (each
hook gets *p.script_args[args_from:args_to]; an exception is reported and the run goes on). `load_script_file`
imitates load_scripts with script_loading.load_module: the module is named after the file's basename
("latentfix.py") and NOT put in sys.modules, the extension root is prepended to sys.path only while the file
executes, basedir() is valid only during import. Simplified: no ordering by metadata.ini, no selectable (dropdown)
scripts, no gradio wiring."""
import importlib.util
import inspect
import os
import re
import sys
from collections import namedtuple
from dataclasses import dataclass, field

from modules import errors

AlwaysVisible = object()


# what the hooks receive, with the WebUI's field names (eq=False: fields hold tensors and images)
@dataclass(eq=False)
class MaskBlendArgs:
    current_latent: object
    nmask: object
    init_latent: object
    mask: object
    blended_latent: object
    denoiser: object = None  # None for the final blend after sampling
    sigma: object = None
    is_final_blend: bool = field(init=False)

    def __post_init__(self):
        self.is_final_blend = self.denoiser is None


@dataclass(eq=False)
class PostSampleArgs:
    samples: object


@dataclass(eq=False)
class PostprocessImageArgs:
    image: object


@dataclass(eq=False)
class PostprocessBatchListArgs:
    images: list


class Script:
    name = section = filename = args_from = args_to = tabname = group = None
    alwayson, is_txt2img, is_img2img, create_group, setup_for_ui_only = False, False, False, True, False
    infotext_fields = paste_field_names = api_info = controls = None
    on_before_component_elem_id = on_after_component_elem_id = None

    def title(self):
        raise NotImplementedError()

    def ui(self, is_img2img):
        pass

    def show(self, is_img2img):
        return True

    def run(self, p, *args):
        pass

    def setup(self, p, *args):
        pass

    def before_process(self, p, *args):
        pass

    def process(self, p, *args):
        pass

    def before_process_batch(self, p, *args, **kwargs):
        pass

    def after_extra_networks_activate(self, p, *args, **kwargs):
        pass

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass

    def process_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch_list(self, p, pp, *args, **kwargs):
        pass

    def on_mask_blend(self, p, mba, *args):
        pass

    def post_sample(self, p, ps, *args):
        pass

    def postprocess_image(self, p, pp, *args):
        pass

    def postprocess(self, p, processed, *args):
        pass

    def before_hr(self, p, *args):
        pass

    def before_component(self, component, **kwargs):
        pass

    def after_component(self, component, **kwargs):
        pass

    def describe(self):
        return ""

    def elem_id(self, item_id):  # as Script.elem_id: script_[<tab>_]<title as an identifier>_<item_id>
        shown_on_both_alike = self.show(True) == self.show(False)
        tab = ("img2img_" if self.is_img2img else "txt2img_") if shown_on_both_alike else ""
        slug = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", self.title().lower()))
        return f"script_{tab}{slug}_{item_id}"


current_basedir = os.getcwd()


def basedir():
    return current_basedir


ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
scripts_data = []


def load_script_file(path, extension_root):
    """Test-only loader; returns the Script subclasses found (also appended to scripts_data)."""
    global current_basedir
    syspath = sys.path
    found = []
    try:
        sys.path = [extension_root] + sys.path
        current_basedir = extension_root
        spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for obj in module.__dict__.values():
            if inspect.isclass(obj) and issubclass(obj, Script):
                scripts_data.append(ScriptClassData(obj, path, extension_root, module))
                found.append(obj)
    finally:
        sys.path = syspath
        current_basedir = os.getcwd()
    return found


class ScriptRunner:
    """`alwayson_scripts` are instances with args_from/args_to set; p.script_args is the flat list (index 0 =
    the "Script" dropdown value, None)."""

    def __init__(self, alwayson_scripts=()):
        self.alwayson_scripts = list(alwayson_scripts)
        self.scripts = list(alwayson_scripts)
        self.infotext_fields, self.paste_field_names = [], []

    def _call(self, hook, p, *before, **kwargs):
        for script in self.alwayson_scripts:
            if getattr(type(script), hook, None) is getattr(Script, hook, None):
                continue  # as the runner does: only scripts that override the hook are called
            try:
                getattr(script, hook)(p, *before, *p.script_args[script.args_from:script.args_to], **kwargs)
            except Exception:
                errors.report(f"Error running {hook}: {script.filename}", exc_info=True)

    def setup_scrips(self, p, *, is_ui=True):
        self._call("setup", p)

    def before_process(self, p):
        self._call("before_process", p)

    def process(self, p):
        self._call("process", p)

    def before_process_batch(self, p, **kwargs):
        self._call("before_process_batch", p, **kwargs)

    def process_batch(self, p, **kwargs):
        self._call("process_batch", p, **kwargs)

    def process_before_every_sampling(self, p, **kwargs):
        self._call("process_before_every_sampling", p, **kwargs)

    def before_hr(self, p):
        self._call("before_hr", p)

    def post_sample(self, p, ps):
        self._call("post_sample", p, ps)

    def on_mask_blend(self, p, mba):
        self._call("on_mask_blend", p, mba)

    def postprocess_batch(self, p, images, **kwargs):
        self._call("postprocess_batch", p, images=images, **kwargs)

    def postprocess_batch_list(self, p, pp, **kwargs):
        self._call("postprocess_batch_list", p, pp, **kwargs)

    def postprocess_image(self, p, pp):
        self._call("postprocess_image", p, pp)

    def postprocess(self, p, processed):
        self._call("postprocess", p, processed)
