"""comfy/patcher_extension.py at fe251146, the wrapper part: how a sampler run is wrapped.

Wrappers live in a nested dict ``{wrapper type: {key: [functions]}}``, on a ModelPatcher (``patcher.wrappers``) or
inside ``model_options["transformer_options"]["wrappers"]``. A wrapped call goes through a chain: every wrapper
gets the chain's next link as its first argument (``executor``) followed by the call's own arguments, and calls
``executor(...)`` to go on; after the last wrapper the original function runs. ``executor.class_obj`` is the object
whose method is wrapped (for SAMPLER_SAMPLE: the sampler, e.g. a KSAMPLER).
"""

SAMPLER_SAMPLE = "sampler_sample"  # WrappersMP.SAMPLER_SAMPLE: around sampler.sample in CFGGuider.inner_sample


def add_wrapper_with_key(kind, key, function, transformer_options, is_model_options=False):
    if is_model_options:
        transformer_options = transformer_options.setdefault("transformer_options", {})
    transformer_options.setdefault("wrappers", {}).setdefault(kind, {}).setdefault(key, []).append(function)


def get_all_wrappers(kind, transformer_options, is_model_options=False):
    if is_model_options:
        transformer_options = transformer_options.get("transformer_options", {})
    found = []
    for functions in transformer_options.get("wrappers", {}).get(kind, {}).values():
        found += functions
    return found


def merge_into(target, source):
    """Nested dicts merged into ``target`` in place, lists appended (merge_nested_dicts with copy_dict1=False)."""
    for key, value in source.items():
        if isinstance(value, dict):
            merge_into(target.setdefault(key, {}), value)
        elif isinstance(value, list):
            target.setdefault(key, []).extend(value)
        else:
            target[key] = value
    return target


class WrapperExecutor:
    """One link of a wrapper chain: calling it runs wrapper ``position`` (or, past the last, the original)."""

    def __init__(self, original, class_obj, wrappers, position):
        self.original = original
        self.class_obj = class_obj
        self.wrappers = list(wrappers)
        self.position = position

    @classmethod
    def new_class_executor(cls, original, class_obj, wrappers, idx=0):
        return cls(original, class_obj, wrappers, idx)

    def execute(self, *args, **kwargs):
        """Start the chain (the host's call, not a wrapper's)."""
        if self.position >= len(self.wrappers):
            return self.original(*args, **kwargs)
        return self.wrappers[self.position](self, *args, **kwargs)

    def __call__(self, *args, **kwargs):
        """What a wrapper calls to go on: the next link."""
        following = WrapperExecutor(self.original, self.class_obj, self.wrappers, self.position + 1)
        return following.execute(*args, **kwargs)
