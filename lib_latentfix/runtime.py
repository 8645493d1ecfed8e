"""One generation's correction, host-free: the :class:`Job` that decides, per model call, what to run and on
which rows, corrects the prediction, and says afterwards what ran.

A host adapter (``scripts/`` for the WebUI) creates a Job per generation, keeps it on its processing object,
and calls, in order: :meth:`Job.begin_pass` (once per sampler run, with what the host knows of its timesteps),
:meth:`Job.begin_call` (each model call, before the model), :meth:`Job.correct` (each prediction of that call),
:meth:`Job.end_call`, and at the end :meth:`Job.finish` (console lines) and :meth:`Job.infotext`. The Job's
fields are written only here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Sequence

import torch

from . import infotext as lf_infotext
from .landing import CallPlan, Landing, LatentRun, plan_calls
from .schedule import EDGE_MARGIN, Schedule, Step, run, steps_between
from .settings import AFTER_CFG, BEFORE_CFG, FEW_STEPS, FILTER_SECTIONS, LATENT, PARTS, Settings
from .sigmas import eps_after_x0_change, eps_to_x0

Tensor = torch.Tensor
EVIDENCE_FOLD = 128  # calls whose NaN/inf evidence is kept before it is folded into one count (see Job._note)


def latent_problem(x: Any) -> Optional[str]:
    """Why this tensor cannot be corrected (None when it can): the filters expect ``[B, 4, H, W]``."""
    if not isinstance(x, torch.Tensor):
        return f"expected a latent tensor, got {type(x).__name__}"
    if x.dim() != 4:
        return f"latent has {x.dim()} dimensions (shape {tuple(x.shape)}); only [batch, 4, height, width] is supported"
    if x.shape[1] != 4:
        return f"latent has {x.shape[1]} channels; only 4-channel SD/SDXL latents are supported"
    if not x.is_floating_point():
        return f"latent has dtype {x.dtype}; a floating-point latent is expected"
    return None


def prediction_rows(rows: int, tensor: Optional[Tensor]) -> Optional[Tensor]:
    """The rows of a per-row tensor of the model call that belong to a prediction of ``rows`` rows: the last ones
    (A1111 puts the negative-prompt rows, one per image, last; after guidance there is one row per image)."""
    return None if tensor is None else tensor[-rows:]


@dataclass(frozen=True)
class HostTimesteps:
    """What the host knows, before sampling, of the timesteps of one sampler run (a pass).

    ``timesteps[i]`` is the training timestep of step i's (first) model evaluation; ``calls_per_step`` is 2 for
    second-order samplers, whose second evaluation lies between ``timesteps[i]`` and ``timesteps[i + 1]`` — exactly
    at ``timesteps[i + 1]`` when ``second_at_next`` (Heun).
    """

    timesteps: tuple[float, ...]
    calls_per_step: int = 1
    first_call_at: int = 0  # the schedule entry of model call 0 (A1111's DDIM walks its timesteps backwards: -1)
    second_at_next: bool = False
    # the latent point: each model call's step (see lib_latentfix.landing), or None and why it is not known
    landings: Optional[tuple[Optional[Landing], ...]] = None
    no_landing: Optional[str] = None

    def step_timestep(self, step: int) -> float:
        """The timestep of sampler step ``step`` (the one the post keys its filters on)."""
        return self.timesteps[len(self.timesteps) - 1 - step if self.first_call_at < 0 else step]

    @property
    def calls(self) -> int:
        """How many model calls of the run have known timesteps (a later call's are not known)."""
        return len(self.timesteps) * (1 if self.first_call_at < 0 else self.calls_per_step)

    def bounds(self, call: int) -> Optional[tuple[float, float]]:
        """The range of timesteps model call number ``call`` of the run evaluates at, or None if unknown."""
        i = call // self.calls_per_step
        if self.first_call_at < 0:
            i = len(self.timesteps) - 1 - i
            return (self.timesteps[i],) * 2 if 0 <= i < len(self.timesteps) else None
        if i >= len(self.timesteps):
            return None
        if self.calls_per_step == 1 or call % self.calls_per_step == 0:  # a step's first call: at its own entry
            return self.timesteps[i], self.timesteps[i]
        following = self.timesteps[i + 1] if i + 1 < len(self.timesteps) else self.timesteps[i]
        if self.second_at_next:
            return following, following
        return min(following, self.timesteps[i]), max(following, self.timesteps[i])


@dataclass(frozen=True)
class ModelCall:
    """What the host captured for one model call, for the corrections of its predictions.

    ``steps`` are the schedule steps the host decided are active on every row (then ``timesteps`` is None);
    otherwise ``timesteps`` holds each row's timestep on the device and the windows are tested there.
    """

    steps: Optional[tuple[Step, ...]]
    timesteps: Optional[Tensor]  # one per row of the model input, only when the host could not decide
    x_in: Tensor  # the model input rows (x_t), needed for ε predictions
    alpha_bar: Optional[Tensor]  # per row, when predictions are ε (A1111 DDIM/PLMS/UniPC), else None
    mask: Optional[Tensor]  # inpainting repaint weight, None without a mask
    host_t: Optional[tuple[float, float]] = None  # the host's range of this call's timesteps, when known
    latent: Optional[CallPlan] = None  # the latent point: what this call does (None: correct the prediction)


def correct(schedule: Schedule, prediction: Tensor, call: ModelCall) -> tuple[Tensor, Optional[Tensor]]:
    """Apply ``schedule`` to a prediction whose rows are the last ``len(prediction)`` rows of ``call``.

    x0 predictions are filtered directly; ε predictions are turned into x0, filtered and turned back.
    Returns a new tensor of ``prediction``'s dtype, and evidence of which rows could be corrected (see
    :func:`~lib_latentfix.schedule.run`: row i is finite unless image i held NaN/inf), or None when no step looked.
    """
    rows = prediction.shape[0]
    steps = schedule if call.steps is None else Schedule(schedule.name, call.steps)
    t = prediction_rows(rows, call.timesteps)
    if call.alpha_bar is None:
        return run(steps, prediction, t, mask=call.mask)
    alpha_bar = prediction_rows(rows, call.alpha_bar)
    x0 = eps_to_x0(prediction_rows(rows, call.x_in), prediction, alpha_bar)
    corrected, evidence = run(steps, x0, t, mask=call.mask)
    return eps_after_x0_change(prediction, x0, corrected, alpha_bar), evidence



def _could_run(step: Step, bounds: Optional[tuple[float, float]], margin: float = EDGE_MARGIN) -> bool:
    """Whether ``step`` may be active for a model call whose timesteps the host knows lie in ``bounds`` (None:
    unknown, so it may). Within ``margin`` of an edge the device's own t decides: that counts as may."""
    return bounds is None or step.reach(bounds[0], bounds[1], margin) != "none"


class _Pass:
    """What a Job saw of one sampler run: the host-known bounds of each model call it was asked about, and the
    parts of the schedule that may have run on one of them (worked out when asked, not per model call)."""

    def __init__(self, name: str, parts: Sequence[tuple[str, Step]]):
        self.name = name
        self.parts = parts
        self.point = AFTER_CFG  # LATENT when the run is corrected on the sampler latent
        self.calls: list[Optional[tuple[float, float]]] = []
        self._reached: set[str] = set()
        self._seen = 0  # how many of the calls _reached covers

    @property
    def reached(self) -> set[str]:
        for bounds in self.calls[self._seen:]:
            self._reached.update(name for name, step in self.parts
                                 if name not in self._reached and _could_run(step, bounds, self.margin))
        self._seen = len(self.calls)
        return self._reached

    @property
    def margin(self) -> float:
        """The latent point decides every window on the host's own timestep; elsewhere the device may decide."""
        return 0.0 if self.point == LATENT else EDGE_MARGIN

    def timesteps(self) -> str:
        """The timesteps its model calls had, as the host knew them (largest first)."""
        values = sorted({round(v) for b in self.calls if b is not None for v in b}, reverse=True)
        shown = [f"{v:g}" for v in values]
        if len(shown) > 12:
            shown = shown[:5] + ["..."] + shown[-5:]
        return ", ".join(shown)


class Job:
    """One generation's correction state, kept by the host on its processing object. Only its methods write it."""

    def __init__(self, settings: Settings, *, version: str, report: Callable[[str], None] = print,
                 observer: Optional[Callable[[str, Tensor, Tensor, ModelCall], None]] = None):
        self.settings = settings
        self._report = report  # one console line
        self._parts = settings.parts()  # (part name, step): the schedule's steps by where they come from
        self.schedule = Schedule(settings.preset, tuple(step for _, step in self._parts))  # = settings.schedule()
        self.version = version
        self.observer = observer  # diagnostics: (point, before, after, call) for every corrected prediction
        self._active = True
        self._started = False
        self._corrected: set[str] = set()  # correction points that changed a prediction
        self._failure: Optional[str] = None
        self._evidence: list[Tensor] = []  # per corrected prediction, rows finite where its images were (device)
        self._bad: list[Tensor] = []  # earlier evidence, folded: counts of images that held NaN/inf (device)
        self._missed = 0  # model calls whose prediction never reached the correction
        self._call: Optional[ModelCall] = None
        self._host: Optional[HostTimesteps] = None
        self._host_key: Any = None
        # per model call of the current run: (host-known bounds, active steps, the latent point's plan or None)
        self._plan: tuple[tuple[Optional[tuple[float, float]], Optional[tuple[Step, ...]], Optional[CallPlan]], ...] = ()
        self._latent = LatentRun()  # the latent point: what the previous call kept, the last change (per run)
        self._said_fallback: set[str] = set()
        self._dtype: Optional[torch.dtype] = None  # the latent point: the predictions' dtype, once seen
        self._unknown_why: Optional[str] = None
        self._said_unknown = False
        self._skips: dict[tuple[bool, bool], Optional[str]] = {}
        self._infotext: Optional[tuple[tuple, dict[str, str]]] = None
        self._passes: list[_Pass] = []  # every corrected sampler run, the current one last
        self._pass_open = False
        self._said_unreached: set[tuple[str, tuple[str, ...], str]] = set()

    # --- what the host asks -----------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self._active

    @property
    def before_guidance(self) -> bool:
        return self.settings.correction_point == BEFORE_CFG

    @property
    def call(self) -> Optional[ModelCall]:
        return self._call

    def skip_reason(self, *, is_hr_pass: bool, inner_pass: bool) -> Optional[str]:
        """Why this pass is not corrected, or None when it is (decided once per kind of pass)."""
        key = (is_hr_pass, inner_pass)
        if key not in self._skips:
            self._skips[key] = skip_reason(self.settings, is_hr_pass=is_hr_pass, inner_pass=inner_pass)
        return self._skips[key]

    # --- sampling ------------------------------------------------------------------------------------------

    def begin_pass(self, key: Any, host: Optional[HostTimesteps], why: Optional[str] = None,
                   name: str = "sampling pass") -> None:
        """A sampler run starts: ``host`` is what the host knows of its timesteps (None: nothing, because of
        ``why``), ``key`` names the run (a model call of another run never uses these timesteps), ``name`` is how
        a message calls it ("first pass", "hires fix pass")."""
        self._end_pass()
        self._started = True  # sampling has begun: from now on the infotext claims only what ran (maybe nothing)
        self._host, self._host_key, self._unknown_why = host, key, why
        self._latent = LatentRun()
        self._passes.append(_Pass(name, self._parts))
        self._pass_open = True
        if self.settings.correction_point == LATENT:
            if host is not None and host.landings is not None:
                self._passes[-1].point = LATENT
                self._plan = self._plan_latent(host, host.landings)
                return
            self._fall_back(name, why if host is None else host.no_landing)
        # per model call of the run, decided here, before sampling: (its host-known bounds, the steps active there)
        self._plan = () if host is None else tuple((*self._decide(host.bounds(i)), None) for i in range(host.calls))

    def _plan_latent(self, host: HostTimesteps, landings: Sequence[Optional[Landing]]) -> tuple:
        """The latent point's plan of a run: each call's step timestep decides its filters on the host (exactly,
        the step's own timestep as the host computed it), and what each call computes, keeps and carries."""
        timesteps = [None if landing is None else host.step_timestep(landing.step) for landing in landings]
        steps = [() if t is None else steps_between(self.schedule, t, t, margin=0.0) for t in timesteps]
        plans = plan_calls(landings, [bool(s) for s in steps])
        return tuple(((t, t) if t is not None else None, s, plan) for t, s, plan in zip(timesteps, steps, plans))

    def _fall_back(self, name: str, why: Optional[str]) -> None:
        """The latent point cannot be reached in this run: it is corrected after guidance, said once per cause."""
        why = why or "the sampler's timesteps are not known before sampling"
        self._passes[-1].point = AFTER_CFG
        if why not in self._said_fallback:
            self._said_fallback.add(why)
            self._report(f"{name}: the sampler's step is not known ({why}); this pass is corrected after guidance "
                         "instead of on the sampler latent (the infotext says what ran)")

    def begin_call(self, key: Any, call_index: int,
                   capture: Callable[[Optional[tuple[Step, ...]], Optional[tuple[float, float]]], ModelCall]) -> bool:
        """A model call of run ``key`` starts. Decides on the host, where it can, which steps are active; when none
        is, nothing is captured and the call costs no tensor work. Otherwise ``capture(steps, host_t)`` builds the
        :class:`ModelCall` (``steps`` None: test the windows on the device). Returns whether a correction will run.
        """
        self.skip_call()
        if not self._active:
            return False
        if not self._pass_open:  # a host that announces no runs: one pass, whose timesteps are not known
            self._passes.append(_Pass("sampling pass", self._parts))
            self._pass_open = True
            if self.settings.correction_point == LATENT:
                self._fall_back("sampling pass", "the host did not announce the sampler run")
        plan = self._plan if key == self._host_key else ()
        bounds, steps, latent = plan[call_index] if 0 <= call_index < len(plan) else (None, None, None)
        if latent is not None:  # the latent point: bounds are the step's timestep, for the calls that end a step
            if latent.landing is not None:
                self._passes[-1].calls.append(bounds)
            if not latent.works or (self._dtype is not None and latent.negligible(self._dtype)):
                self._latent.skip()
                return False
            call = capture(steps, bounds)
            self._call = None if call is None else replace(call, latent=latent)
            return True
        if self._passes[-1].point == LATENT and self.settings.correction_point == LATENT:
            self._fall_back(self._passes[-1].name, self._unknown_why or "the sampler run is not the one announced")
        self._passes[-1].calls.append(bounds)
        if steps == ():
            return False
        if bounds is None and not self._said_unknown:
            self._said_unknown = True
            why = self._unknown_why or "the sampler run is not the one announced"
            self._report(f"timesteps not known before sampling ({why}): in this generation the filter windows are "
                         "tested on the device where needed, which computes every filter (slower, same result)")
        self._call = capture(steps, bounds)
        return True

    def _decide(self, bounds: Optional[tuple[float, float]]) -> tuple[Optional[tuple[float, float]],
                                                                      Optional[tuple[Step, ...]]]:
        """A model call whose timesteps the host knows lie in ``bounds``: (bounds, the steps active there); (None,
        None) when the host does not know them."""
        return (None, None) if bounds is None else (bounds, steps_between(self.schedule, *bounds))

    def skip_call(self) -> None:
        """A model call starts that is not corrected (its pass is skipped)."""
        self._started = True
        if self._call is not None:  # the previous call's prediction never came back to us
            self._missed += 1
            self._infotext = None
        self._call = None

    def correct(self, point: str, prediction: Tensor) -> Optional[Tensor]:
        """The corrected prediction of the current call (a new tensor), or None when nothing is to be done.

        A prediction with more rows than the call, or a tensor that is not a latent, turns the job off with one
        console line; any error does the same and is remembered for the infotext.
        """
        call = self._call
        if call is None or not self._active:
            return None
        problem = latent_problem(prediction)
        if problem is None and prediction.shape[0] > call.x_in.shape[0]:
            problem = "prediction rows do not match the model input"
        if problem is not None:
            self._stop(f"skipped for this generation: {problem}")
            return None
        try:
            if call.latent is not None:
                return self._land(call, prediction)
            corrected, evidence = correct(self.schedule, prediction, call)
            if evidence is not None:  # the statistics already tell which rows held NaN/inf: counted at the end
                self._note(evidence)
            if self.observer is not None:
                self.observer(point, prediction, corrected, call)
        except Exception as error:  # never break the generation
            self.fail(error)
            return None
        self._corrected.add(point)
        self._infotext = None
        return corrected

    def _land(self, call: ModelCall, prediction: Tensor) -> Optional[Tensor]:
        """The latent point (see :mod:`lib_latentfix.landing`): the prediction that makes the sampler's step land on
        the filtered latent, or None when this call only keeps what the next one needs."""
        plan = call.latent
        self._dtype = prediction.dtype

        def filters(latent: Tensor) -> Tensor:
            moved, evidence = run(Schedule(self.schedule.name, call.steps), latent, None, mask=call.mask, change=True)
            if evidence is not None:
                self._note(evidence)
            if self.observer is not None:
                self.observer(LATENT, latent, latent + moved, call)
            return moved

        x = prediction_rows(prediction.shape[0], call.x_in) if plan.keep or plan.filters else None
        corrected = self._latent.land(plan, x, prediction, filters)
        if plan.filters and corrected is not None:
            self._corrected.add(LATENT)
            self._infotext = None
        return corrected

    def end_call(self) -> None:
        """The model call is over: its tensors are dropped."""
        self._call = None

    def stop(self, message: str) -> None:
        """Turn correction off for the rest of the generation (not a failure: nothing ran wrongly)."""
        self._stop(message)

    def fail(self, error: BaseException) -> None:
        """Turn correction off for the rest of the generation after an error; the infotext says so."""
        self._failure = f"turned off after an error: {type(error).__name__}: {error}"
        self._stop(f"correction turned off for the rest of this generation after an error: "
                   f"{type(error).__name__}: {error}")

    def _stop(self, message: str) -> None:
        self._active = False
        self._call = None
        self._infotext = None
        self._report(message)

    # --- the end -------------------------------------------------------------------------------------------

    def _end_pass(self) -> None:
        """The current sampler run is over: one console line if an enabled filter ran on none of its model calls
        (judged only from timesteps the host knew; a run with a call of unknown timesteps says nothing)."""
        if not self._pass_open:
            return
        self._pass_open = False
        run = self._passes[-1]
        missed = tuple(name for name, _ in self._parts if name not in run.reached)
        if not run.calls or not missed or not self._active:
            return
        said = (run.name, missed, run.timesteps())
        if said in self._said_unreached:  # the same run again (the next batch of images)
            return
        self._said_unreached.add(said)
        steps = dict(self._parts)
        named = [f"the {PARTS[name]} ({steps[name].window_text()})" for name in missed]
        what = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
        one = len(missed) == 1
        top = max(v for b in run.calls if b is not None for v in b)
        above = [name for name in missed if steps[name].bounds()[0] >= top]  # the pass starts below the window
        advice = []
        if len(above) < len(missed):  # a window between two model calls: more steps land one inside
            advice.append("more steps reach " + ("it" if one else "them") + (
                "" if self.settings.preset == FEW_STEPS else ", or for a 4-8 step model the 'Few-step models' preset"))
        if above:
            advice.append(f"this pass starts at t = {round(top):g}, below {'it' if one else 'them'}, as its denoising "
                          "strength sets")
        # (the infotext claims a filter only if some pass ran it: a later pass may still reach this one)
        self._report(f"{run.name}: {what} never ran: the model was called at t = {run.timesteps()}, none inside "
                     f"{'that window' if one else 'those windows'} ({'; '.join(advice)})")

    def unreached(self) -> tuple[str, ...]:
        """The parts of the schedule (see :data:`~lib_latentfix.settings.PARTS`) that ran on no model call of the
        generation so far, as far as the host knew the timesteps; empty before the first call."""
        if not any(run.calls for run in self._passes):
            return ()
        reached = set().union(*(run.reached for run in self._passes))
        return tuple(name for name, _ in self._parts if name not in reached)

    def windows(self) -> tuple[Schedule, Schedule]:
        """(the steps that ran, the steps that were never reached), for the diagnostics chart."""
        missed = set(self.unreached())
        ran = tuple(step for name, step in self._parts if name not in missed)
        skipped = tuple(step for name, step in self._parts if name in missed)
        return replace(self.schedule, steps=ran), replace(self.schedule, steps=skipped)

    def _note(self, evidence: Tensor) -> None:
        """Keep one call's evidence; every ``EVIDENCE_FOLD`` calls the kept ones are folded into one count, so that
        a long generation holds a few small tensors, not one per call."""
        self._evidence.append(evidence)
        if len(self._evidence) >= EVIDENCE_FOLD:
            self._fold()

    def _fold(self) -> None:
        if self._evidence:
            rows = torch.cat([torch.isfinite(rows).all(dim=1) for rows in self._evidence])
            self._bad.append(rows.logical_not().sum())
            self._evidence = []

    def finish(self) -> None:
        """The generation is over: its console lines (reads the device's non-finite count, once)."""
        self._end_pass()
        self._call = None
        lines = []
        bad = 0
        if self._evidence or self._bad:  # the one read, at the end
            self._fold()
            bad = int(torch.stack(self._bad).sum())
        self._evidence, self._bad = [], []
        if bad:
            lines.append(f"{bad} image prediction(s) held NaN/inf values; those were left uncorrected (the model or "
                         "another extension produced them)")
        if self._missed:
            lines.append(f"{self._missed} model call(s) ended before their prediction reached LatentFix; those steps "
                         "were not corrected (the infotext says so)")
        if self.before_guidance and not self._corrected and self._failure is None:
            lines.append("nothing was corrected: this WebUI did not call the 'before guidance' hook")
        self._infotext = None
        for line in lines:
            self._report(line)

    def infotext(self) -> dict[str, str]:
        """What the infotext says now (computed once per change of state)."""
        unreached = self.unreached()
        state = (self._started, frozenset(self._corrected), self._failure, self._missed, unreached)
        if self._infotext is None or self._infotext[0] != state:
            failure = self._failure
            if failure is None and self._missed:
                failure = f"{self._missed} model call(s) could not be matched to their prediction"
            ran = self.settings.without(unreached) if unreached else self.settings  # exactly what ran
            if ran.correction_point == LATENT and LATENT not in self._corrected and AFTER_CFG in self._corrected:
                ran = replace(ran, correction_point=AFTER_CFG)  # every run fell back (its sampler's step is unknown)
            said = lf_infotext.report(ran, self.version, started=self._started,
                                      corrected=bool(self._corrected), failure=failure)
            self._infotext = (state, said)
        return self._infotext[1]


def skip_reason(settings: Settings, *, is_hr_pass: bool, inner_pass: bool) -> Optional[str]:
    """Why a generation (or pass) is not corrected, or None when it is."""
    if not settings.does_something():
        return "off"
    if inner_pass and settings.skip_inner_passes:
        return "inner pass of another extension"
    if is_hr_pass and not settings.apply_in_hires:
        return "hires fix pass"
    return None


__all__ = ["FILTER_SECTIONS", "HostTimesteps", "Job", "ModelCall", "correct", "latent_problem",
           "prediction_rows", "skip_reason"]
