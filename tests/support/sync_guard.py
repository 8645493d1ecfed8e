"""A TorchFunctionMode that fails on anything that would make the host wait for the device.

Under it, ``.item()``, ``bool(t)`` (so ``if t > x`` and Python ``max()`` over tensors), ``float(t)``,
``int(t)``, ``.tolist()``, ``.cpu()``, ``.numpy()`` and data-dependent-shape ops such as ``nonzero`` and
boolean-mask indexing raise :class:`HostSync`. On the CPU these cost nothing, so the guard is what proves the
code would not stall a GPU.

Copies the other way are flagged too: a CPU tensor of more than one element moved to another device
(``.to(device)``, ``.cuda()``, ``.copy_()`` into a device tensor), and ``torch.tensor`` / ``as_tensor`` / ``asarray``
building a tensor on another device from host data. A table the hot path needs must be built once, before (cache
it per device); tests run such code on the ``meta`` device, which stands in for a GPU, after one warm-up call.
"""

import torch
from torch.overrides import TorchFunctionMode

Tensor = torch.Tensor

FORBIDDEN = {
    Tensor.item: "Tensor.item",
    Tensor.__bool__: "bool(tensor)",
    Tensor.__float__: "float(tensor)",
    Tensor.__int__: "int(tensor)",
    Tensor.__index__: "operator.index(tensor)",
    Tensor.tolist: "Tensor.tolist",
    Tensor.cpu: "Tensor.cpu",
    Tensor.numpy: "Tensor.numpy",
    Tensor.nonzero: "Tensor.nonzero",
    torch.nonzero: "torch.nonzero",
    Tensor.masked_select: "Tensor.masked_select",
    torch.masked_select: "torch.masked_select",
    torch.unique: "torch.unique",
    Tensor.unique: "Tensor.unique",
}


class HostSync(AssertionError):
    """Raised when guarded code asks for a value on the host."""


class NoHostSync(TorchFunctionMode):
    """Context manager: any host-device synchronising call inside raises :class:`HostSync`."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.names: list[str] = []
        self.sizes: list[tuple[str, int]] = []  # (function, elements of its first tensor argument)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.calls += 1
        name = getattr(func, "__name__", repr(func))
        self.names.append(name)
        first = next((a for a in args if isinstance(a, Tensor)), None)
        self.sizes.append((name, first.numel() if first is not None else 0))
        if func in FORBIDDEN:
            raise HostSync(f"host sync: {FORBIDDEN[func]}")
        if func is Tensor.__getitem__ and len(args) > 1 and _has_bool_index(args[1]):
            raise HostSync("host sync: boolean-mask indexing")
        if func is Tensor.to and _targets_cpu(args, kwargs):
            raise HostSync("host sync: Tensor.to('cpu')")
        if func in (Tensor.to, Tensor.cuda) and _uploads(func, args, kwargs):
            raise HostSync(f"host-to-device copy: Tensor.{name} of a CPU tensor of {args[0].numel()} elements")
        if func is Tensor.copy_ and len(args) > 1 and _is_host_data(args[1]) and args[0].device.type != "cpu":
            raise HostSync("host-to-device copy: Tensor.copy_ from a CPU tensor")
        if func in UPLOADING_FACTORIES and _off_host(kwargs.get("device")) and args and _is_host_data(args[0]):
            raise HostSync(f"host-to-device copy: torch.{name} from host data")
        return func(*args, **kwargs)


UPLOADING_FACTORIES = {torch.tensor, torch.as_tensor, torch.asarray}


def _off_host(device) -> bool:
    return device is not None and torch.device(device).type != "cpu"


def _is_host_data(data) -> bool:
    """A CPU tensor of more than one element, or a Python sequence / array (host memory to copy)."""
    if isinstance(data, Tensor):
        return data.device.type == "cpu" and data.numel() > 1
    return not isinstance(data, (int, float, complex, bool))


def _uploads(func, args, kwargs) -> bool:
    source = args[0] if args else None
    if not isinstance(source, Tensor) or not _is_host_data(source):
        return False
    target = kwargs.get("device", "cuda" if func is Tensor.cuda else None)
    for a in args[1:]:
        if isinstance(a, (str, torch.device)):
            target = a
        elif isinstance(a, int) and not isinstance(a, bool) and func is Tensor.cuda:
            target = "cuda"
        elif isinstance(a, Tensor):
            target = a.device
    return _off_host(target)


def _has_bool_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, Tensor) and i.dtype == torch.bool for i in items)


def _targets_cpu(args, kwargs) -> bool:
    target = kwargs.get("device")
    for a in args[1:]:
        if isinstance(a, (str, torch.device)):
            target = a
    return target is not None and torch.device(target).type == "cpu" and args[0].device.type != "cpu"
