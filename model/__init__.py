"""The Omni inference stack in pure torch: the MVL request, prompt enhancer, text encoder,
video VAE, Omni-Generator, super-resolution, flow matching, the pipeline and its backends.

Imports nothing from `app`, `studio_backend` or `training` (see DESIGN section 2).
"""
