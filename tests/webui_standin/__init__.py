"""A small, faithful stand-in of the Stable Diffusion WebUI modules the latentfix glue imports.

It imitates AUTOMATIC1111 v1.10.1 (kklouzal/stable-diffusion-webui @ 44480451) and, selected by
`modules.shared.standin_host = "forge"`, Forge (lllyasviel/stable-diffusion-webui-forge @ dfdcbab6): the script
loader and hook order (scripts.py, processing.py), the CFG-denoiser callback order, row layout and
reassign/in-place semantics (sd_samplers_cfg_denoiser.py), the k-diffusion and DDIM sampling loops with the
lagging `state.sampling_step`, img2img/inpaint masks, hires fix and refiner switch, options, infotext writing
and pasting, and InputAccordion. Each module names the host functions it follows; the code is written here, none of
it is copied from the WebUIs.

Simplified (see each module's docstring): a cheap deterministic toy eps-UNet and toy text encoder, no VAE
(latents -> RGB with A's "Approx cheap" matrix at latent resolution; images are tensors), img2img starts from a
latent, a subset of samplers (Euler, Euler a, Heun, DPM++ 2M, DDIM) and schedulers (Automatic/uniform, Karras,
Exponential, Normal), no prompt scheduling/emphasis/extra networks, callbacks in registration order, no gradio
requirement. `harness.py` is the test entry point; `import modules` resolves here once harness is imported.
"""
