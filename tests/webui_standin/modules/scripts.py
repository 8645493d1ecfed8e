"""Imitates modules/scripts.py (A v1.10.1): Script (52-348), AlwaysVisible (14), basedir (366-374), scripts_data,
the *Args classes (16-45), ScriptRunner hook methods (820-996: each hook gets *p.script_args[args_from:args_to],
exceptions are reported and the run continues). `load_script_file` imitates script_loading.py:10-16 +
scripts.py:497-524: module named after the file's basename ("latentfix.py"), NOT put in sys.modules, the
extension root prepended to sys.path only while the file executes, basedir() valid only during import.
Simplified: no ordering by metadata.ini, no selectable (dropdown) scripts, no gradio wiring."""
import importlib.util
import inspect
import os
import re
import sys
from collections import namedtuple

from modules import errors

AlwaysVisible = object()


class MaskBlendArgs:
    def __init__(self, current_latent, nmask, init_latent, mask, blended_latent, denoiser=None, sigma=None):
        self.current_latent, self.nmask, self.init_latent, self.mask = current_latent, nmask, init_latent, mask
        self.blended_latent, self.denoiser, self.is_final_blend, self.sigma = blended_latent, denoiser, denoiser is None, sigma


class PostSampleArgs:
    def __init__(self, samples):
        self.samples = samples


class PostprocessImageArgs:
    def __init__(self, image):
        self.image = image


class PostprocessBatchListArgs:
    def __init__(self, images):
        self.images = images


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

    def elem_id(self, item_id):  # scripts.py:334-342
        need_tabname = self.show(True) == self.show(False)
        tabname = f"{'img2img' if self.is_img2img else 'txt2img'}_" if need_tabname else ""
        title = re.sub(r'[^a-z_0-9]', '', re.sub(r'\s', '_', self.title().lower()))
        return f'script_{tabname}{title}_{item_id}'


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
                continue  # scripts.py:798: only scripts overriding the hook
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
