"""Imitates modules/sd_samplers.py: create_sampler / find_sampler_config (A sd_samplers.py). Subset of samplers."""
from modules import sd_samplers_kdiffusion, sd_samplers_timesteps

all_samplers = [*sd_samplers_kdiffusion.samplers_data_k_diffusion, *sd_samplers_timesteps.samplers_data_timesteps]
all_samplers_map = {x.name: x for x in all_samplers}


def find_sampler_config(name):
    if name is None:
        return all_samplers[0]
    return all_samplers_map.get(name) or next((x for x in all_samplers if name in x.aliases), None)


def create_sampler(name, model):
    config = find_sampler_config(name)
    assert config is not None, f"bad sampler name: {name}"
    sampler = config.constructor(model)
    sampler.config = config
    return sampler
