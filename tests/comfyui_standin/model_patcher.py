"""Stand-in for ComfyUI's comfy.model_patcher (commit fe251146), written for the tests: the parts of ModelPatcher the
nodes use."""

import copy


def set_model_options_post_cfg_function(model_options, post_cfg_function, disable_cfg1_optimization=False):
    """Imitates set_model_options_post_cfg_function: appended to the list (a new list), the cfg-1 shortcut optionally
    switched off."""
    chain = list(model_options.get("sampler_post_cfg_function", []))
    chain.append(post_cfg_function)
    model_options["sampler_post_cfg_function"] = chain
    if disable_cfg1_optimization:
        model_options["disable_cfg1_optimization"] = True
    return model_options


def create_model_options_clone(orig_model_options):
    """Imitates create_model_options_clone (copy_nested_dicts): nested dicts copied all the way down, lists copied
    one level, everything else shared."""
    return {key: create_model_options_clone(value) if isinstance(value, dict)
            else list(value) if isinstance(value, list) else value
            for key, value in orig_model_options.items()}


class ModelPatcher:
    def __init__(self, model, load_device="cpu"):
        self.model = model  # a model_base.BaseModel
        self.load_device = load_device
        self.model_options = {"transformer_options": {}}  # as ModelPatcher.__init__ starts them
        self.parent = None
        self.wrappers = {}  # model_patcher.py:260: {wrapper type: {key: [functions]}}

    def clone(self):
        # as ModelPatcher.clone: the model shared, model_options deep-copied, the parent recorded
        n = self.__class__(self.model, self.load_device)
        n.model_options = copy.deepcopy(self.model_options)
        n.parent = self
        n.wrappers = {kind: {key: list(functions) for key, functions in by_key.items()}  # 343-347: lists copied
                      for kind, by_key in self.wrappers.items()}
        return n

    def add_wrapper_with_key(self, wrapper_type, key, wrapper):  # model_patcher.py:1064-1066
        self.wrappers.setdefault(wrapper_type, {}).setdefault(key, []).append(wrapper)

    def get_wrappers(self, wrapper_type, key):  # model_patcher.py:1073-1074
        return self.wrappers.get(wrapper_type, {}).get(key, [])

    def get_model_object(self, name):
        return getattr(self.model, name)

    def set_model_sampler_post_cfg_function(self, post_cfg_function, disable_cfg1_optimization=False):
        # as ModelPatcher.set_model_sampler_post_cfg_function
        self.model_options = set_model_options_post_cfg_function(self.model_options, post_cfg_function,
                                                                 disable_cfg1_optimization)

    def set_model_denoise_mask_function(self, denoise_mask_function):
        # as ModelPatcher.set_model_denoise_mask_function: a single slot
        self.model_options["denoise_mask_function"] = denoise_mask_function
