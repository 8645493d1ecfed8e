"""Transitional aliases: the diagnostics now live in :mod:`lib_latentfix.trace` and :mod:`lib_latentfix.chart`.

``scripts/latentfix.py`` still imports this module by its old name; once the glue imports the two modules
directly, this file goes. Nothing is defined here.
"""

from .chart import channel_view_images, render_plot, schedule_windows
from .trace import Trace, TraceData, TraceFileError, trace_records, write_jsonl

__all__ = ["Trace", "TraceData", "TraceFileError", "trace_records", "write_jsonl", "schedule_windows",
           "render_plot", "channel_view_images"]
