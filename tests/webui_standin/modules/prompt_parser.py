"""Imitates modules/prompt_parser.py: AND composition (205-237), MulticondLearnedConditioning (240-267),
DictWithShape (270-277), reconstruct_cond_batch (280-304), reconstruct_multicond_batch (321-349).
Simplified: no prompt editing [a:b:step] / emphasis; each prompt has one schedule entry for all steps."""
import re
from collections import namedtuple

import torch

re_AND = re.compile(r"\bAND\b")
re_weight = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")

ScheduledPromptConditioning = namedtuple("ScheduledPromptConditioning", ["end_at_step", "cond"])


class ComposableScheduledPromptConditioning:
    def __init__(self, schedules, weight=1.0):
        self.schedules, self.weight = schedules, weight


class MulticondLearnedConditioning:
    def __init__(self, shape, batch):
        self.shape, self.batch = shape, batch


class DictWithShape(dict):
    def __init__(self, x, shape=None):
        super().__init__()
        self.update(x)

    @property
    def shape(self):
        return self["crossattn"].shape


def get_multicond_prompt_list(prompts):
    res_indexes, flat, index_of = [], [], {}
    for prompt in prompts:
        indexes = []
        for sub in re_AND.split(prompt):
            m = re_weight.search(sub)
            text, weight = m.groups() if m is not None else (sub, 1.0)
            weight = float(weight) if weight is not None else 1.0
            if text not in index_of:
                index_of[text] = len(flat)
                flat.append(text)
            indexes.append((index_of[text], weight))
        res_indexes.append(indexes)
    return res_indexes, flat, index_of


def get_learned_conditioning(model, prompts, steps, hires_steps=None):
    conds = model.get_learned_conditioning(list(prompts))
    out = []
    for i in range(len(prompts)):
        c = DictWithShape({k: v[i] for k, v in conds.items()}) if isinstance(conds, dict) else conds[i]
        out.append([ScheduledPromptConditioning(steps, c)])
    return out


def get_multicond_learned_conditioning(model, prompts, steps, hires_steps=None):
    res_indexes, flat, _ = get_multicond_prompt_list(prompts)
    learned = get_learned_conditioning(model, flat, steps)
    batch = [[ComposableScheduledPromptConditioning(learned[i], w) for i, w in idx] for idx in res_indexes]
    return MulticondLearnedConditioning(shape=(len(prompts),), batch=batch)


def _pick(schedules, step):
    return next((e.cond for e in schedules if step <= e.end_at_step), schedules[0].cond)


def reconstruct_cond_batch(c, current_step):
    conds = [_pick(s, current_step) for s in c]
    if isinstance(conds[0], dict):
        return DictWithShape({k: torch.stack([x[k] for x in conds]) for k in conds[0]})
    return torch.stack(conds)


def reconstruct_multicond_batch(c, current_step):
    tensors, conds_list = [], []
    for composable_prompts in c.batch:
        row = []
        for cp in composable_prompts:
            row.append((len(tensors), cp.weight))
            tensors.append(_pick(cp.schedules, current_step))
        conds_list.append(row)
    if isinstance(tensors[0], dict):
        return conds_list, DictWithShape({k: torch.stack([x[k] for x in tensors]) for k in tensors[0]})
    return conds_list, torch.stack(tensors)
